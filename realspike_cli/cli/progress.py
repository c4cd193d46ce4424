"""Renders the training event stream (rank 0 only), and progress over any batch stream (eval).

In a terminal: a rich progress bar per epoch. Outside one (SLURM, nohup, a pipe) bars would only redraw into
the log, so a plain line is printed instead every N steps or every few seconds, whichever comes first:
`epoch 1/3 step 120/125 loss 0.4312 412.3 img/s eta 0:00:05`. The per-epoch summary lines are the same in both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from realspike_cli.cli.render import console, errors, percent
from realspike_cli.core.counting import ParameterCount


class Throttle:
    """Says when a plain progress line is due: every `every` items or `seconds` seconds, whichever is first."""

    def __init__(self, every: int | None, seconds: float) -> None:
        self.every, self.seconds = every, seconds
        self.reset(0)

    def reset(self, done: int) -> None:
        self.started = self.last_time = time.perf_counter()
        self.first = self.last_done = done
        self.images = 0

    def due(self, done: int) -> bool:
        now = time.perf_counter()
        by_count = self.every is not None and done - self.last_done >= self.every
        return by_count or now - self.last_time >= self.seconds

    def line(self, done: int, total: int) -> str:
        """'step 12/125 ... img/s eta ...' since the last line; starts the next interval."""
        now = time.perf_counter()
        rate = self.images / max(now - self.last_time, 1e-9)
        per_item = (now - self.started) / max(done - self.first, 1)
        eta = timedelta(seconds=round(per_item * max(total - done, 0)))
        self.last_time, self.last_done, self.images = now, done, 0
        return f"{rate:.1f} img/s eta {eta}"


def render_training(events: Iterable[Any], spec: Any, cfg: Any, dataset: str, files: Any, *,
                    log_every: int | None = None, log_seconds: float = 30.0, recipe: Any = None) -> Any:
    """Show the run; returns its last event (Finished or Stopped). `log_every`/`log_seconds` pace the plain
    lines outside a terminal (default: a tenth of an epoch, or 30 s). `recipe` (a core.recipes.Recipe, from
    --recipe): its paper number is printed before the first step and again beside the measured result."""
    view = _TrainingView(spec, cfg, dataset, files, log_every, log_seconds)
    view.recipe = recipe
    ev = None
    with view.bar or nullcontext():
        for ev in events:
            handler = getattr(view, type(ev).__name__, None)
            if handler is not None:
                handler(ev)
    return ev


class _TrainingView:
    """One method per event type, named after it."""

    def __init__(self, spec: Any, cfg: Any, dataset: str, files: Any, log_every: int | None,
                 log_seconds: float) -> None:
        self.spec, self.cfg, self.dataset, self.files = spec, cfg, dataset, files
        self.bar = _bar(console) if console.is_terminal else None
        self.log_every, self.throttle = log_every, Throttle(log_every, log_seconds)
        self.task: Any = None
        self.steps, self.epoch = 0, ""
        self.recipe: Any = None

    def RunStarted(self, ev: Any) -> None:  # noqa: N802
        say(_run_header(ev, self.spec, self.cfg, self.dataset, self.files.out))
        if self.recipe is not None:
            console.print(_recipe_header(self.recipe, self.spec, self.cfg), markup=False, highlight=False,
                          soft_wrap=True)

    def EpochStarted(self, ev: Any) -> None:  # noqa: N802
        self.steps, self.epoch = ev.steps, f"{ev.epoch}/{self.cfg.epochs}"
        self.throttle.every = self.log_every or max(1, ev.steps // 10)
        self.throttle.reset(ev.done)
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task("train", total=ev.steps, completed=ev.done, epoch=self.epoch, loss=0.0)

    def Compiled(self, ev: Any) -> None:  # noqa: N802
        say(f"torch.compile: first step {ev.seconds:.1f}s, compilation included")

    def StepDone(self, ev: Any) -> None:  # noqa: N802
        self.throttle.images += ev.images
        if self.bar is not None:
            self.bar.update(self.task, advance=1, loss=ev.loss)
        elif self.throttle.due(ev.step):
            say(f"epoch {self.epoch} step {ev.step}/{self.steps} loss {ev.loss:.4f} "
                f"{self.throttle.line(ev.step, self.steps)}")

    def EpochDone(self, ev: Any) -> None:  # noqa: N802
        r = ev.record
        on = "val" if "val_top1" in r else "test"
        mark = " [green]best[/]" if ev.is_best else ""
        say(f"epoch {r['epoch']:>3}/{self.cfg.epochs}: train loss {r['train_loss']:.4f}, top-1 "
            f"{percent(r['train_top1'])} | {on} top-1 {percent(r[f'{on}_top1'])}, loss {r[f'{on}_loss']:.4f}, "
            f"firing rate {r['mean_firing_rate']:.3f}, {r['seconds']:.1f}s{mark}")

    def FinalTest(self, ev: Any) -> None:  # noqa: N802
        r = ev.record
        say(f"test set, model of epoch {ev.epoch} (selected on validation): top-1 {percent(r['test_top1'])}, "
            f"loss {r['test_loss']:.4f} ({r['images']:,} images)")

    def Stopped(self, ev: Any) -> None:  # noqa: N802
        say(f"[yellow]stopped ({ev.reason}) at epoch {ev.epoch + 1}, step {ev.step}[/]; "
            f"continue with the same command plus --resume ({self.files.resume_path})")

    def Finished(self, ev: Any) -> None:  # noqa: N802
        tested = f", test top-1 {percent(ev.test['test_top1'])}" if ev.test else ""
        say(f"[bold green]done[/]: best {ev.selected_on} top-1 {percent(ev.best_top1)} at epoch {ev.best_epoch}"
            f"{tested} → {self.files.best_path}")
        if self.recipe is not None:
            console.print(_beside_paper(ev, self.recipe), markup=False, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """One line on stdout; never wrapped by rich (a log line stays one line for grep)."""
    console.print(text, highlight=False, soft_wrap=True)


def _bar(where: Console) -> Progress:
    return Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=where,
        transient=True,
    )


def _run_header(ev: Any, spec: Any, cfg: Any, dataset: str, out_dir: Any) -> str:
    resuming = ev.start_epoch or ev.start_step
    where = f"resuming at epoch {ev.start_epoch + 1}, step {ev.start_step}" if resuming else "new run"
    device = f"device {ev.device}"
    if ev.world_size > 1:  # the loss shown is the mean over ranks; the bar counts each rank's steps
        device += (f" ×{ev.world_size} processes ({ev.backend}), global batch "
                   f"{ev.world_size} × {cfg.batch_size} = {ev.world_size * cfg.batch_size}")
    header = (f"[bold]{spec.arch}[/] on {dataset}: T={spec.time_steps}, spike={spec.spike.value}, "
              f"neuron={spec.neuron.kind}, {ParameterCount(ev.parameters, ev.buffers).describe()}, {device}, "
              f"{where} → {out_dir}")
    if ev.sizes.get("val"):
        header += (f"\n  best selected on a validation split: {ev.sizes['val']:,} images held out of the training "
                   f"set ({ev.sizes['train']:,} left); test set ({ev.sizes['test']:,}) evaluated once, at the end")
    if ev.init_from:
        header += f"\n  weights start from {ev.init_from} (new optimizer and schedule)"
    return header


def _recipe_header(recipe: Any, spec: Any, cfg: Any) -> str:
    changed = recipe.departures(spec, cfg)
    note = f" (this run departs from it: {', '.join(changed)})" if changed else ""
    return f"recipe {recipe.name} aims for {recipe.target()}{note}"


def _beside_paper(ev: Any, recipe: Any) -> str:
    """The measured number next to the paper's: best on the test set (the paper's code selects it so) and last."""
    last = ev.history[-1].get("test_top1") if ev.history else None
    if ev.selected_on == "test":
        how = "best test top-1, selected on the test set as the paper's code does"
        return (f"{recipe.target()}; measured here: {percent(ev.best_top1)} ({how}, epoch {ev.best_epoch}), "
                f"last epoch {percent(last)}")
    tested = percent(ev.test["test_top1"]) if ev.test else "–"
    return (f"{recipe.target()}; measured here: {tested} test top-1 of the model selected on validation "
            f"(epoch {ev.best_epoch})")


def track(batches: Iterable[Any], total: int, label: str, *, log_seconds: float = 10.0) -> Iterator[Any]:
    """`batches`, with progress on stderr (so --json output stays clean): a transient bar in a terminal,
    else a plain line every `log_seconds` (short inputs print nothing)."""
    if errors.is_terminal:
        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=errors, transient=True) as bar:
            yield from bar.track(batches, total=total)
        return
    throttle = Throttle(None, log_seconds)
    for done, batch in enumerate(batches, 1):
        throttle.images += len(batch[1])
        yield batch
        if throttle.due(done) and done < total:
            errors.print(f"{label}: batch {done}/{total} {throttle.line(done, total)}", highlight=False,
                         soft_wrap=True)
