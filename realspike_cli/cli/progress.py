"""Renders the training event stream: a progress bar per epoch and one summary line per epoch (rank 0 only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from realspike_cli.cli.render import console, percent


def render_training(
    events: Iterable[Any], spec: Any, cfg: Any, dataset: str, files: Any, recipe: Any = None
) -> Any:
    """Show the run and return its last event (Finished or Stopped). `recipe` (a core.recipes.Recipe, from
    --recipe): its paper number is printed before the first step and again beside the measured result."""
    from realspike_cli.core import events as T

    progress = Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = ev = None
    with progress:
        for ev in events:
            if isinstance(ev, T.RunStarted):
                console.print(_run_header(ev, spec, cfg, dataset, files.out))
                if recipe is not None:
                    console.print(_recipe_header(recipe, spec, cfg), markup=False, highlight=False)
            elif isinstance(ev, T.EpochStarted):
                if task is not None:
                    progress.remove_task(task)
                task = progress.add_task("train", total=ev.steps, completed=ev.done,
                                         epoch=f"{ev.epoch}/{cfg.epochs}", loss=0.0)
            elif isinstance(ev, T.Compiled):
                console.print(f"torch.compile: first step {ev.seconds:.1f}s, compilation included")
            elif isinstance(ev, T.StepDone):
                progress.update(task, advance=1, loss=ev.loss)
            elif isinstance(ev, T.EpochDone):
                r = ev.record
                mark = " [green]best[/]" if ev.is_best else ""
                console.print(
                    f"epoch {r['epoch']:>3}/{cfg.epochs}: test top-1 {percent(r['test_top1'])}, "
                    f"loss {r['test_loss']:.4f}, firing rate {r['mean_firing_rate']:.3f}, {r['seconds']:.1f}s{mark}"
                )
            elif isinstance(ev, T.Stopped):
                console.print(f"[yellow]stopped ({ev.reason}) at epoch {ev.epoch + 1}, step {ev.step}[/]; "
                              f"continue with the same command plus --resume ({files.resume_path})")
            elif isinstance(ev, T.Finished):
                console.print(f"[bold green]done[/]: best test top-1 {percent(ev.best_top1)} at epoch {ev.best_epoch} "
                              f"→ {files.best_path}")
                if recipe is not None:
                    console.print(_beside_paper(ev, recipe), markup=False, highlight=False)
    return ev


def _run_header(ev: Any, spec: Any, cfg: Any, dataset: str, out_dir: Any) -> str:
    resuming = ev.start_epoch or ev.start_step
    where = f"resuming at epoch {ev.start_epoch + 1}, step {ev.start_step}" if resuming else "new run"
    device = f"device {ev.device}"
    if ev.world_size > 1:  # the loss shown is the mean over ranks; the bar counts each rank's steps
        device += (f" ×{ev.world_size} processes ({ev.backend}), global batch "
                   f"{ev.world_size} × {cfg.batch_size} = {ev.world_size * cfg.batch_size}")
    return (f"[bold]{spec.arch}[/] on {dataset}: T={spec.time_steps}, spike={spec.spike.value}, "
            f"neuron={spec.neuron.kind}, {ev.parameters:,} parameters, {device}, {where} → {out_dir}")


def _recipe_header(recipe: Any, spec: Any, cfg: Any) -> str:
    changed = recipe.departures(spec, cfg)
    note = f" (this run departs from it: {', '.join(changed)})" if changed else ""
    return f"recipe {recipe.name} aims for {recipe.target()}{note}"


def _beside_paper(ev: Any, recipe: Any) -> str:
    """The measured number next to the paper's: best on the test set (the paper's code selects it so) and last."""
    last = ev.history[-1]["test_top1"] if ev.history else None
    return (f"{recipe.target()}; measured here: {percent(ev.best_top1)} (best test top-1, epoch {ev.best_epoch}, "
            f"selected on the test set as the paper's code does), last epoch {percent(last)}")
