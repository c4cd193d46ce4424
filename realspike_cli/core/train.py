"""Training: `fit(model_or_spec, data, config)` returns the trained model; `train_events` yields its events.

The loop writes nothing: checkpoints, metrics files and resume state come from a `Checkpointer` callback
(core/checkpointer.py), which the CLI attaches. Every epoch's order and augmentation draws derive from
(seed, epoch), so a run resumed from a Checkpointer's resume point ends bit-identical to an uninterrupted one.
The caller's global RNG is restored when the run ends. Under torchrun (a `DistContext`) every rank takes every
step and must consume every event.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
    Finished,
    RunStarted,
    StepDone,
    Stopped,
)
from realspike_cli.core.neuron import LIFNeuron, RealSpike
from realspike_cli.core.specs import ModelSpec, TrainConfig

# Rank r > 0 seeds its own augmentation draws at an offset, so ranks do not crop and flip in lockstep;
# rank 0 (and a single process) keeps the single-process seeds.
_RANK_SEED_STRIDE = 7_919_993


@dataclass(frozen=True)
class RunOptions:
    """How the loop runs (none of it changes the recipe)."""

    device: str = "auto"
    workers: int = 0
    max_steps: int | None = None  # stop (with a Stopped event) after this many steps in total
    eval_batch_size: int = 256  # per process
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA under torchrun only)
    lif_backend: str | None = None  # None: $REALSPIKE_LIF_BACKEND or "eager"; "compiled": fused inductor kernels
    channels_last: bool = False  # NHWC convs: faster on CPU and tensor cores; rounding differs slightly
    compile: bool = False  # torch.compile the training graph (minutes on CPU at the first step; eval stays eager)


# Factories: names map to constructors, so recipes stay plain data --------------------------------------
OPTIMIZERS = {
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.lr),
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr),
}

SCHEDULES = {
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "step": lambda progress: 0.1 ** sum(progress >= m for m in (0.5, 0.75)),
    "constant": lambda progress: 1.0,
}


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights only; BN, biases and Real Spike coefficients are not decayed."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.optimizer!r} (choose from: {', '.join(OPTIMIZERS)})")
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            weighted = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            (decay if weighted and not isinstance(module, RealSpike) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return OPTIMIZERS[cfg.optimizer](groups, cfg)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Stepped every iteration; linear warm-up over `warmup_epochs`, then the named shape."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.schedule!r} (choose from: {', '.join(SCHEDULES)})")
    shape = SCHEDULES[cfg.schedule]
    warmup = int(total_steps * cfg.warmup_epochs / cfg.epochs)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return shape((step - warmup) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def use_lif_backend(model: nn.Module, name: str | None) -> None:
    """Set on this model's neurons only: a process-wide default would leak into every later model."""
    if name is None:
        return
    from realspike_cli.core import kernels

    try:
        backend = kernels.check_backend(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for module in model.modules():
        if isinstance(module, LIFNeuron):
            module.backend = backend


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r} (choose from: auto, cpu, cuda, cuda:N)")
    return torch.device(name)


def recipe_command(dataset: str, spec: ModelSpec, cfg: TrainConfig) -> str:
    """The canonical `realspike train` line that reproduces a run (no local paths)."""
    parts = [
        f"realspike train {dataset} --arch {spec.arch} --t {spec.time_steps} --spike {spec.spike.value}",
        f"--neuron {spec.neuron.kind} --decay {spec.neuron.decay} --v-th {spec.neuron.v_th}",
        f"--epochs {cfg.epochs} --batch-size {cfg.batch_size} --optimizer {cfg.optimizer} --lr {cfg.lr}",
        f"--momentum {cfg.momentum} --weight-decay {cfg.weight_decay} --schedule {cfg.schedule}",
        f"--warmup-epochs {cfg.warmup_epochs} --augment {cfg.augment} --seed {cfg.seed}",
    ]
    if spec.arch_kwargs.get("width", 1.0) != 1.0:
        parts.append(f"--width {spec.arch_kwargs['width']}")
    return " ".join(parts)


class _StopFlag:
    """The first SIGINT (Ctrl-C) or SIGTERM (what SLURM and Kubernetes send) asks the loop to stop after the
    current step, saving an exact resume point; a second one stops at once (KeyboardInterrupt)."""

    SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
    def __init__(self) -> None:
        self.reason = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.reason:  # a second signal means "now"
            raise KeyboardInterrupt
        self.reason = self.SIGNALS.get(signum, "interrupted")

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _as_splits(data: DataSplits | Sequence[Any]) -> DataSplits:
    """`load_dataset(...)`, or a user's (train, test) pair of datasets (its name in checkpoints: "custom")."""
    if isinstance(data, DataSplits):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return DataSplits(None, data[0], data[1])  # type: ignore[arg-type]
    raise ConfigError("data must be load_dataset(...) or a (train, test) pair of datasets")


class Trainer:
    """One run's state: model, optimizer, schedule, position and best result; `run()` is the event generator."""

    def __init__(
        self,
        model_or_spec: nn.Module | ModelSpec,
        data: DataSplits | Sequence[Any],
        cfg: TrainConfig,
        opts: RunOptions,
        dist: DistContext | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.data, self.cfg, self.opts = _as_splits(data), cfg, opts
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
        self.history: list[dict[str, Any]] = []
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

    # resume state ----------------------------------------------------------------------------------------
    def state_dict(self, rank_rng: list[torch.Tensor]) -> dict[str, Any]:
        """Everything an exact resume needs (tensors and JSON strings only: loadable with weights_only)."""
        return {
            "spec": json.dumps(self.spec.to_dict() if self.spec else None),
            "config": json.dumps(self.cfg.to_dict()),
            "dataset": self.dataset_name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "position": [self.epoch, self.step, self.global_step],
            "best": [self.best_top1, self.best_epoch],
            "torch_rng": rank_rng[0],
            "rank_rng": rank_rng,
            "world_size": self.dist.world_size,
            "history": json.dumps(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.global_step = (int(v) for v in state["position"])
        self.best_top1, self.best_epoch = float(state["best"][0]), int(state["best"][1])
        self.history = json.loads(state["history"])
        rank_rng = state.get("rank_rng")
        self.rng_after_resume = rank_rng[self.dist.rank] if rank_rng else state["torch_rng"]

    # one epoch -------------------------------------------------------------------------------------------
    def train_steps(self, stop: _StopFlag) -> Iterator[Event]:
        self.net.train()
        for x, y in self._stream(self.epoch, self.step):
            started = time.perf_counter()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.opts.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = self._first_compiled_step(x, y) if self._compile_pending else self._forward_backward(x, y)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            self.global_step += 1
            mean_loss, signalled = self._agree(loss, stop)
            if self._compile_pending:
                self._compile_pending = False
                yield Compiled(time.perf_counter() - started)
            yield StepDone(self.epoch, self.step, mean_loss)
            reason = signalled or self._max_steps_reached()
            if reason:
                self.dist.sync_buffers(self.model)
                yield Stopped(reason, self.epoch, self.step)
                return

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            loss = F.cross_entropy(self.net(x).float(), y, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        return loss

    def _first_compiled_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The step that compiles: inductor needs a C++ compiler (CPU) or Triton (CUDA), so a machine without
        them gets one line naming the cause instead of a compiler traceback; no weight has changed yet."""
        try:
            return self._forward_backward(x, y)
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            cause = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
            raise ConfigError(f"--compile failed at the first step ({cause}); train without --compile") from exc

    def _agree(self, loss: torch.Tensor, stop: _StopFlag) -> tuple[float, str]:
        """The loss averaged over ranks and the stop signal any rank got: one small all_reduce per step, so a
        signal that reached only some processes still stops every rank after the same step."""
        status = torch.tensor([float(loss.detach()), stop.reason == "interrupted", stop.reason == "terminated"],
                              dtype=torch.float64)
        total = self.dist.all_reduce(status)
        reason = "terminated" if total[2] > 0 else "interrupted" if total[1] > 0 else ""
        return float(total[0]) / self.dist.world_size, reason

    def _max_steps_reached(self) -> str:
        limit = self.opts.max_steps
        return "max_steps" if limit is not None and self.global_step >= limit else ""

    def _epoch_seed(self, epoch: int) -> int:
        return self.cfg.seed * 1_000_003 + epoch + self.dist.rank * _RANK_SEED_STRIDE

    def end_epoch(self, seconds: float) -> EpochDone:
        """Evaluate (every rank gets the totals, so `is_best` agrees), record, and move to the next epoch."""
        self.dist.sync_buffers(self.model)
        result = evaluate_sharded(
            self.model, self.data.test, self.opts.eval_batch_size, self.device, self.dist, self.opts.workers
        )
        record = {
            "epoch": self.epoch + 1,
            "test_top1": result.top1,
            "test_top5": result.top5,
            "test_loss": result.loss,
            "mean_firing_rate": sum(result.firing_rates.values()) / max(1, len(result.firing_rates)),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 2),
        }
        is_best = result.top1 > self.best_top1
        if is_best:
            self.best_top1, self.best_epoch = result.top1, self.epoch
        self.history.append(record)
        self.epoch, self.step = self.epoch + 1, 0
        torch.manual_seed(self._epoch_seed(self.epoch))
        return EpochDone(record["epoch"], record, is_best)

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

    def _events(self) -> Iterator[Event]:
        params = sum(p.numel() for p in self.model.parameters())
        yield self._emit(RunStarted(str(self.device), params, self.epoch, self.step, self.cfg.epochs,
                                    self.dist.world_size, self.dist.backend))
        if self.rng_after_resume is not None:
            torch.set_rng_state(self.rng_after_resume)
        elif self.epoch == 0 and self.step == 0:
            torch.manual_seed(self._epoch_seed(0))
        with _StopFlag() as stop:
            while self.epoch < self.cfg.epochs:
                yield self._emit(EpochStarted(self.epoch + 1, self.steps_per_epoch, self.step))
                started = time.perf_counter()
                for event in self.train_steps(stop):
                    yield self._emit(event)
                    if isinstance(event, Stopped):
                        return
                yield self._emit(self.end_epoch(time.perf_counter() - started))
        yield self._emit(Finished(self.best_top1, self.best_epoch + 1, self.history))


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
    or Stopped; Compiled once with `options.compile`). A ModelSpec is built here, seeded by `config.seed`."""
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
    metrics.jsonl and an exact resume point. `data` is `load_dataset(...)` or a (train, test) pair of datasets
    yielding (image, label)."""
    trainer = Trainer(model_or_spec, data, config or TrainConfig(), options or RunOptions(), dist, callbacks)
    for _ in trainer.run():
        pass
    return trainer.model
