"""Training: `fit(model_or_spec, data, config)` returns the trained model; `train_events` yields its events.

The loop writes nothing: checkpoints, metrics files and resume state come from a `Checkpointer` callback
(core/checkpointer.py), which the CLI attaches. Every epoch's order and augmentation draws derive from
(seed, epoch), so a run resumed from a Checkpointer's resume point ends bit-identical to an uninterrupted one.
The caller's global RNG is restored when the run ends. Under torchrun (a `DistContext`) every rank takes every
step and must consume every event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from realspike_cli.core.counting import count_parameters
from realspike_cli.core.datasets import DataSplits
from realspike_cli.core.datasets.loaders import BatchStream
from realspike_cli.core.distributed import DistContext, check_sync_bn
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.evaluate import evaluate_sharded
from realspike_cli.core.events import (
    Callback,
    Compiled,
    EpochDone,
    EpochStarted,
    Event,
    FinalTest,
    Finished,
    RunStarted,
    StepDone,
    Stopped,
)
from realspike_cli.core.guards import check_step, check_weights, largest_weight, memory_guard
from realspike_cli.core.recipe_command import recipe_command
from realspike_cli.core.run_options import RunOptions, resolve_device, use_lif_backend
from realspike_cli.core.schedule import OPTIMIZERS, SCHEDULES, make_optimizer, make_scheduler
from realspike_cli.core.specs import ModelSpec, TrainConfig
from realspike_cli.core.stop_flag import StopFlag
from realspike_cli.core.validation import with_validation

# Rank r > 0 seeds its own augmentation draws at an offset, so ranks do not crop and flip in lockstep;
# rank 0 (and a single process) keeps the single-process seeds.
_RANK_SEED_STRIDE = 7_919_993

# Defined in their own modules, importable from here as before.
__all__ = ["OPTIMIZERS", "SCHEDULES", "RunOptions", "Trainer", "fit", "make_optimizer", "make_scheduler",
           "recipe_command", "resolve_device", "train_events", "use_lif_backend"]


def _as_splits(data: DataSplits | Sequence[Any]) -> DataSplits:
    """`load_dataset(...)`, or a user's (train, test) pair of datasets (its name in checkpoints: "custom")."""
    if isinstance(data, DataSplits):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return DataSplits(None, data[0], data[1])  # type: ignore[arg-type]
    raise ConfigError("data must be load_dataset(...) or a (train, test) pair of datasets")


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Trainer:
    """One run's state: model, optimizer, schedule, position and best result; `run()` is the event generator.

    With a validation split (`data.val`, or `cfg.val_split` carving one out of the training set) `best` is
    selected on it, the best weights are kept, and the test set is evaluated once, after the last epoch
    (FinalTest). Without one, `best` is selected on the test set, as in the authors' code."""

    def __init__(
        self,
        model_or_spec: nn.Module | ModelSpec,
        data: DataSplits | Sequence[Any],
        cfg: TrainConfig,
        opts: RunOptions,
        dist: DistContext | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        splits = _as_splits(data)
        self.class_names = [str(c) for c in (getattr(splits.train, "classes", None) or [])]
        # A `val` already there is the data set's own split, or this one carved by the caller with an
        # un-augmented `val_source` (as the CLI does).
        self.data = splits if splits.val is not None else with_validation(splits, cfg.val_split, cfg.seed)
        self.cfg, self.opts = cfg, opts
        self.selected_on = "validation" if self.data.val is not None else "test"
        self.callbacks = list(callbacks)
        self.dist = dist or DistContext()
        self.device = self.dist.device if self.dist.enabled else resolve_device(opts.device)
        check_sync_bn(opts.sync_bn, self.dist.enabled, self.device.type)
        self.spec, model = self._model(model_or_spec)
        self.model = model.to(self.device)
        use_lif_backend(self.model, opts.lif_backend)
        if opts.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if opts.sync_bn:  # same parameter and buffer names, so checkpoints stay single-process compatible
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.net = self.dist.wrap(self.model)  # forward/backward through DDP; state_dicts from self.model
        if opts.compile:  # state_dicts still come from self.model: no `_orig_mod.` prefixes in the files
            self.net = torch.compile(self.net)
        self._compile_pending = opts.compile
        self.steps_per_epoch = len(self._stream(0, 0))
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, cfg.epochs * self.steps_per_epoch)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.best_top1, self.best_epoch = -1.0, -1
        self.best_state: dict[str, torch.Tensor] | None = None  # kept with a validation split, for the test
        self.history: list[dict[str, Any]] = []
        self.test_record: dict[str, Any] | None = None
        # This epoch so far, carried through a resume: [train loss × images, correct, images] and seconds.
        self.epoch_sums = torch.zeros(3, dtype=torch.float64)
        self.epoch_seconds_before = 0.0
        self._epoch_clock = time.perf_counter()
        self.parent: dict[str, Any] | None = None  # set by InitFrom: the checkpoint the weights started from
        self.resumed = False
        self.rng_after_resume: torch.Tensor | None = None

    @property
    def dataset_name(self) -> str:
        return self.data.info.name if self.data.info is not None else "custom"

    def _model(self, model_or_spec: nn.Module | ModelSpec) -> tuple[ModelSpec | None, nn.Module]:
        """A spec is built with `cfg.seed` (the caller's RNG untouched); a module is trained as given."""
        if isinstance(model_or_spec, ModelSpec):
            from realspike_cli.core.models import build_model

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed)
                return model_or_spec, build_model(model_or_spec)
        if not isinstance(model_or_spec, nn.Module):
            raise ConfigError(f"fit needs an nn.Module or a ModelSpec, got {type(model_or_spec).__name__}")
        spec = getattr(model_or_spec, "spec", None)
        return (spec if isinstance(spec, ModelSpec) else None), model_or_spec

    def _stream(self, epoch: int, start: int) -> BatchStream:
        return BatchStream(
            self.data.train, self.cfg.batch_size, shuffle=True, seed=self.cfg.seed, epoch=epoch,
            rank=self.dist.rank, world_size=self.dist.world_size, start_batch=start, workers=self.opts.workers,
            pin_memory=self.device.type == "cuda",
        )

    def epoch_seconds(self) -> float:
        """Training time of the current epoch so far, including the part before an interruption."""
        return self.epoch_seconds_before + time.perf_counter() - self._epoch_clock

    # resume state ----------------------------------------------------------------------------------------
    def state_dict(self, rank_rng: list[torch.Tensor]) -> dict[str, Any]:
        """Everything an exact resume needs (tensors and JSON strings only: loadable with weights_only)."""
        state = {
            "spec": json.dumps(self.spec.to_dict() if self.spec else None),
            "config": json.dumps(self.cfg.to_dict()),
            "dataset": self.dataset_name,
            "selected_on": self.selected_on,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "position": [self.epoch, self.step, self.global_step],
            "best": [self.best_top1, self.best_epoch],
            "epoch_sums": self.epoch_sums.clone(),
            "epoch_seconds": self.epoch_seconds(),
            "torch_rng": rank_rng[0],
            "rank_rng": rank_rng,
            "world_size": self.dist.world_size,
            "history": json.dumps(self.history),
            "parent": json.dumps(self.parent),
        }
        if self.best_state is not None:
            state["best_model"] = self.best_state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.global_step = (int(v) for v in state["position"])
        self.best_top1, self.best_epoch = float(state["best"][0]), int(state["best"][1])
        self.best_state = state.get("best_model")
        self.history = json.loads(state["history"])
        self.epoch_sums = state.get("epoch_sums", torch.zeros(3, dtype=torch.float64)).double()
        self.epoch_seconds_before = float(state.get("epoch_seconds", 0.0))
        self.parent = json.loads(state.get("parent", "null"))
        self.resumed = True
        rank_rng = state.get("rank_rng")
        self.rng_after_resume = rank_rng[self.dist.rank] if rank_rng else state["torch_rng"]

    # one epoch -------------------------------------------------------------------------------------------
    def train_steps(self, stop: StopFlag) -> Iterator[Event]:
        self.net.train()
        for x, y in self._stream(self.epoch, self.step):
            started = time.perf_counter()
            with memory_guard(self.cfg.batch_size, "in a training step"):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                if self.opts.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                step = self._first_compiled_step if self._compile_pending else self._forward_backward
                loss, correct = step(x, y)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            self.global_step += 1
            mean_loss, images, signalled = self._agree(loss, correct, len(y), stop)
            if self._compile_pending:
                self._compile_pending = False
                yield Compiled(time.perf_counter() - started)
            yield StepDone(self.epoch, self.step, mean_loss, images)
            reason = signalled or self._max_steps_reached()
            if reason:
                self.dist.sync_buffers(self.model)
                yield Stopped(reason, self.epoch, self.step)
                return

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's loss and its number of correct top-1 predictions (in training mode, before the update)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            logits = self.net(x).float()
            loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        return loss, (logits.detach().argmax(1) == y).sum()

    def _first_compiled_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step that compiles: inductor needs a C++ compiler (CPU) or Triton (CUDA), so a machine without
        them gets one line naming the cause instead of a compiler traceback; no weight has changed yet."""
        try:
            return self._forward_backward(x, y)
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            cause = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
            raise ConfigError(f"--compile failed at the first step ({cause}); train without --compile") from exc

    def _agree(self, loss: torch.Tensor, correct: torch.Tensor, n: int, stop: StopFlag) -> tuple[float, int, str]:
        """One small all_reduce per step: the loss averaged over ranks, this step's training sums over all
        ranks (added to the epoch's), and the stop signal any rank got, so a signal that reached only some
        processes still stops every rank after the same step."""
        value = float(loss.detach())
        status = torch.tensor([value, value * n, float(correct), n, stop.reason == "interrupted",
                               stop.reason == "terminated", largest_weight(self.model)], dtype=torch.float64)
        total = self.dist.all_reduce(status)
        # Every rank sees the same sums: a non-finite loss or updated weight stops all of them, before any save.
        check_step(float(total[0]), float(total[6]), self.epoch + 1, self.step, self.cfg.lr)
        self.epoch_sums += total[1:4]
        reason = "terminated" if total[5] > 0 else "interrupted" if total[4] > 0 else ""
        return float(total[0]) / self.dist.world_size, int(total[3]), reason

    def _max_steps_reached(self) -> str:
        limit = self.opts.max_steps
        return "max_steps" if limit is not None and self.global_step >= limit else ""

    def _epoch_seed(self, epoch: int) -> int:
        return self.cfg.seed * 1_000_003 + epoch + self.dist.rank * _RANK_SEED_STRIDE

    def _evaluate(self, dataset: Any) -> Any:
        return evaluate_sharded(self.model, dataset, self.opts.eval_batch_size, self.device, self.dist,
                                self.opts.workers)

    def end_epoch(self) -> EpochDone:
        """Evaluate (every rank gets the totals, so `is_best` agrees), record, and move to the next epoch."""
        seconds = self.epoch_seconds()
        self.dist.sync_buffers(self.model)
        check_weights(self.model, self.epoch + 1, self.step, self.cfg.lr)  # never a non-finite best or last
        on_val = self.data.val is not None
        result = self._evaluate(self.data.val if on_val else self.data.test)
        prefix = "val" if on_val else "test"
        loss_sum, correct, images = (float(v) for v in self.epoch_sums)
        record = {
            "epoch": self.epoch + 1,
            "train_loss": loss_sum / max(images, 1.0),
            "train_top1": correct / max(images, 1.0),
            f"{prefix}_top1": result.top1,
            f"{prefix}_top5": result.top5,
            f"{prefix}_loss": result.loss,
            "mean_firing_rate": sum(result.firing_rates.values()) / max(1, len(result.firing_rates)),
            "firing_rates": dict(result.firing_rates),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 2),
        }
        is_best = result.top1 > self.best_top1
        if is_best:
            self.best_top1, self.best_epoch = result.top1, self.epoch
            if on_val:
                self.best_state = _state_copy(self.model)
        self.history.append(record)
        self.epoch, self.step = self.epoch + 1, 0
        self.epoch_sums, self.epoch_seconds_before = torch.zeros(3, dtype=torch.float64), 0.0
        torch.manual_seed(self._epoch_seed(self.epoch))
        return EpochDone(record["epoch"], record, is_best)

    def test_best(self) -> FinalTest:
        """The best-on-validation weights, evaluated once on the test set (the current weights are put back)."""
        current = _state_copy(self.model)
        self.model.load_state_dict(self.best_state)  # type: ignore[arg-type]
        try:
            result = self._evaluate(self.data.test)
        finally:
            self.model.load_state_dict(current)
        self.test_record = {"final": "test", "epoch": self.best_epoch + 1, "test_top1": result.top1,
                            "test_top5": result.top5, "test_loss": result.loss, "images": result.images}
        return FinalTest(self.best_epoch + 1, self.test_record)

    # the run ---------------------------------------------------------------------------------------------
    def _emit(self, event: Event) -> Event:
        for callback in self.callbacks:
            callback.on_event(event, self)
        return event

    def run(self) -> Iterator[Event]:
        """Callbacks' `on_start`, then the events; the caller's global RNG state is restored at the end."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            try:
                for callback in self.callbacks:
                    callback.on_start(self)
                yield from self._events()
            finally:
                for callback in self.callbacks:
                    callback.on_end(self, self.model)

    def _started(self) -> RunStarted:
        sizes = {"train": len(self.data.train), "test": len(self.data.test)}
        if self.data.val is not None:
            sizes["val"] = len(self.data.val)
        count = count_parameters(self.model)
        return RunStarted(str(self.device), count.parameters, self.epoch, self.step, self.cfg.epochs,
                          self.dist.world_size, self.dist.backend, sizes, self.selected_on,
                          (self.parent or {}).get("source"), count.buffers)

    def _events(self) -> Iterator[Event]:
        yield self._emit(self._started())
        if self.rng_after_resume is not None:
            torch.set_rng_state(self.rng_after_resume)
        elif self.epoch == 0 and self.step == 0:
            torch.manual_seed(self._epoch_seed(0))
        with StopFlag() as stop:
            while self.epoch < self.cfg.epochs:
                yield self._emit(EpochStarted(self.epoch + 1, self.steps_per_epoch, self.step))
                self._epoch_clock = time.perf_counter()
                for event in self.train_steps(stop):
                    yield self._emit(event)
                    if isinstance(event, Stopped):
                        return
                yield self._emit(self.end_epoch())
        if self.best_state is not None:
            yield self._emit(self.test_best())
        yield self._emit(Finished(self.best_top1, self.best_epoch + 1, self.history, self.selected_on,
                                  self.test_record))


def train_events(
    model_or_spec: nn.Module | ModelSpec,
    data: DataSplits | Sequence[Any],
    config: TrainConfig | None = None,
    *,
    options: RunOptions | None = None,
    callbacks: Sequence[Callback] = (),
    dist: DistContext | None = None,
) -> Iterator[Event]:
    """The training run as an event generator (RunStarted, EpochStarted, StepDone, EpochDone, then Finished
    or Stopped; Compiled once with `options.compile`; FinalTest before Finished with a validation split).
    A ModelSpec is built here, seeded by `config.seed`."""
    return Trainer(model_or_spec, data, config or TrainConfig(), options or RunOptions(), dist, callbacks).run()


def fit(
    model_or_spec: nn.Module | ModelSpec,
    data: DataSplits | Sequence[Any],
    config: TrainConfig | None = None,
    *,
    options: RunOptions | None = None,
    callbacks: Sequence[Callback] = (),
    dist: DistContext | None = None,
) -> nn.Module:
    """Train and return the model (the given module, trained in place, or the one built from the spec).

    Writes nothing unless a callback does: pass `Checkpointer(out_dir)` for best/last checkpoints,
    metrics.jsonl and an exact resume point (`TensorBoardLogger`, `InitFrom` are further callbacks). `data` is
    `load_dataset(...)` or a (train, test) pair of datasets yielding (image, label). With `config.val_split`
    (or a `data.val`), `best` is selected on validation and the test set is evaluated once, at the end."""
    trainer = Trainer(model_or_spec, data, config or TrainConfig(), options or RunOptions(), dist, callbacks)
    for _ in trainer.run():
        pass
    return trainer.model
