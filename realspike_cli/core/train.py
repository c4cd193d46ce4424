"""Training: `fit(...)` yields events (the CLI renders them) and leaves checkpoints, metrics and resume state.

Every epoch's order and augmentation draws derive from (seed, epoch), and the resume file holds model,
optimizer, schedule, position and RNG state, so a resumed run ends bit-identical to an uninterrupted one.
Under torchrun (a `DistContext`) every rank takes every step; only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from realspike_cli.core.checkpoint import CheckpointMeta, atomic_write, save_checkpoint
from realspike_cli.core.datasets import DataSplits
from realspike_cli.core.datasets.loaders import BatchStream
from realspike_cli.core.distributed import DistContext, check_sync_bn
from realspike_cli.core.errors import CheckpointError, ConfigError
from realspike_cli.core.evaluate import EvalResult, evaluate_sharded
from realspike_cli.core.events import (
    Compiled,
    EpochDone,
    EpochStarted,
    Finished,
    RunStarted,
    StepDone,
    Stopped,
)
from realspike_cli.core.neuron import RealSpike
from realspike_cli.core.registry import build_model
from realspike_cli.core.specs import ModelSpec, TrainConfig

RESUME_FILE = "resume.pt"
# Rank r > 0 seeds its own augmentation draws at an offset, so ranks do not crop and flip in lockstep;
# rank 0 (and a single process) keeps the single-process seeds.
_RANK_SEED_STRIDE = 7_919_993
RUN_FILES = ("best.safetensors", "last.safetensors", "metrics.jsonl", RESUME_FILE)


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    device: str = "auto"
    workers: int = 0
    resume: bool = False
    overwrite: bool = False
    max_steps: int | None = None
    save_every: int = 0
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


def _use_lif_backend(model: nn.Module, name: str | None) -> None:
    """Set on this model's neurons only: a process-wide default would leak into every later model."""
    if name is None:
        return
    from realspike_cli.core import kernels
    from realspike_cli.core.neuron import LIFNeuron

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
    """First Ctrl-C asks the loop to stop after the current step (saving an exact resume point)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_: object) -> None:
        if self.requested:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# The loop -----------------------------------------------------------------------------------------------
class _Trainer:
    """Holds one run's state; `run()` is the event generator behind `fit`."""

    def __init__(
        self, spec: ModelSpec, data: DataSplits, cfg: TrainConfig, opts: RunOptions, dist: DistContext | None = None
    ) -> None:
        self.spec, self.data, self.cfg, self.opts = spec, data, cfg, opts
        self.dist = dist or DistContext()
        self.device = self.dist.device if self.dist.enabled else resolve_device(opts.device)
        check_sync_bn(opts.sync_bn, self.dist.enabled, self.device.type)
        self.out = Path(opts.out_dir)
        torch.manual_seed(cfg.seed)
        self.model = build_model(spec).to(self.device)
        _use_lif_backend(self.model, opts.lif_backend)
        if opts.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if opts.sync_bn:  # same parameter and buffer names, so checkpoints stay single-process compatible
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.net = self.dist.wrap(self.model)  # forward/backward through DDP; state_dicts from self.model
        if opts.compile:  # checkpoints still come from self.model: no `_orig_mod.` prefixes in the files
            self.net = torch.compile(self.net)
        self._compile_pending = opts.compile
        self.steps_per_epoch = len(self._stream(0, 0))
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, cfg.epochs * self.steps_per_epoch)
        use_amp = cfg.amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.use_amp = use_amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp and self.amp_dtype == torch.float16)
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.best_top1, self.best_epoch = -1.0, -1
        self.history: list[dict[str, Any]] = []

    def _stream(self, epoch: int, start: int) -> BatchStream:
        return BatchStream(
            self.data.train,
            self.cfg.batch_size,
            shuffle=True,
            seed=self.cfg.seed,
            epoch=epoch,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start_batch=start,
            workers=self.opts.workers,
            pin_memory=self.device.type == "cuda",
        )

    # run directory and resume state --------------------------------------------------------------------
    def prepare_dir(self) -> None:
        """Rank 0 checks the run directory and reads the resume file; every rank then loads that same state."""
        state = self.dist.from_main(self._claim_dir)
        if state is not None:
            self._apply_resume(state)
            if self.dist.is_main:
                self._rewrite_metrics()

    def _claim_dir(self) -> dict[str, Any] | None:
        existing = [f for f in RUN_FILES if (self.out / f).exists()]
        state = None
        if self.opts.resume:
            if not (self.out / RESUME_FILE).exists():
                raise CheckpointError(f"nothing to resume: {self.out / RESUME_FILE} does not exist")
            state = self._read_resume()
        elif existing and not self.opts.overwrite:
            raise ConfigError(
                f"run directory {self.out} already holds a run ({', '.join(existing)}); "
                "pass --resume to continue it, --overwrite to start again, or choose another --out"
            )
        elif existing:
            for f in existing:
                (self.out / f).unlink()
        self.out.mkdir(parents=True, exist_ok=True)
        return state

    def _resume_state(self, rank_rng: list[torch.Tensor]) -> dict[str, Any]:
        return {
            "spec": json.dumps(self.spec.to_dict()),
            "config": json.dumps(self.cfg.to_dict()),
            "dataset": self.data.info.name,
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

    def save_resume(self) -> Path:
        """Called on every rank (each one's RNG state is gathered); only rank 0 writes."""
        path = self.out / RESUME_FILE
        rank_rng = self.dist.gather(torch.get_rng_state())
        if self.dist.is_main:
            state = self._resume_state(rank_rng)
            atomic_write(path, lambda tmp: torch.save(state, tmp), overwrite=True)
        return path

    def _read_resume(self) -> dict[str, Any]:
        path = self.out / RESUME_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__})") from None
        if json.loads(state["spec"]) != self.spec.to_dict() or state["dataset"] != self.data.info.name:
            raise ConfigError(f"{path} was made for a different model or data set; resume with the same options")
        if json.loads(state["config"]) != self.cfg.to_dict():
            raise ConfigError(f"{path} was made with a different training recipe; resume with the same options")
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size:
            # Another process count changes the global batch, the shards and the steps per epoch (the schedule).
            raise ConfigError(
                f"{path} was written by a run of {saved_world} process(es); resume it with the same "
                f"number (this run has {self.dist.world_size})"
            )
        return state

    def _apply_resume(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.global_step = (int(v) for v in state["position"])
        self.best_top1, self.best_epoch = float(state["best"][0]), int(state["best"][1])
        self.history = json.loads(state["history"])
        rank_rng = state.get("rank_rng")
        self._rng_after_resume = rank_rng[self.dist.rank] if rank_rng else state["torch_rng"]

    def _rewrite_metrics(self) -> None:
        """Keep metrics.jsonl consistent with the resume point (a crash may have left a later line)."""
        text = "".join(json.dumps(r) + "\n" for r in self.history)
        atomic_write(self.out / "metrics.jsonl", lambda tmp: tmp.write_text(text), overwrite=True)

    # one epoch -----------------------------------------------------------------------------------------
    def train_steps(self, stop: _StopFlag) -> Iterator[Compiled | StepDone | Stopped]:
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
            mean_loss, interrupted = self._agree(loss, stop)
            if self._compile_pending:
                self._compile_pending = False
                yield Compiled(time.perf_counter() - started)
            yield StepDone(self.epoch, self.step, mean_loss)
            reason = self._stop_reason(interrupted)
            if reason:
                self.dist.sync_buffers(self.model)
                yield Stopped(reason, self.epoch, self.step, self.save_resume())
                return
            if self.opts.save_every and self.global_step % self.opts.save_every == 0:
                self.save_resume()

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

    def _agree(self, loss: torch.Tensor, stop: _StopFlag) -> tuple[float, bool]:
        """The loss averaged over ranks and whether any rank was interrupted: one small all_reduce per step,
        so a Ctrl-C that reached only some processes still stops every rank after the same step."""
        status = torch.tensor([float(loss.detach()), float(stop.requested)], dtype=torch.float64)
        status = self.dist.all_reduce(status)
        return float(status[0]) / self.dist.world_size, bool(status[1] > 0)

    def _stop_reason(self, interrupted: bool) -> str:
        if interrupted:
            return "interrupted"
        if self.opts.max_steps is not None and self.global_step >= self.opts.max_steps:
            return "max_steps"
        return ""

    def _epoch_seed(self, epoch: int) -> int:
        return self.cfg.seed * 1_000_003 + epoch + self.dist.rank * _RANK_SEED_STRIDE

    def end_epoch(self, seconds: float) -> EpochDone:
        self.dist.sync_buffers(self.model)
        result = evaluate_sharded(
            self.model, self.data.test, self.opts.eval_batch_size, self.device, self.dist, self.opts.workers
        )  # every rank gets the totals, so `is_best` agrees
        record = self._record(result, seconds)
        is_best = result.top1 > self.best_top1
        if is_best:
            self.best_top1, self.best_epoch = result.top1, self.epoch
        self.history.append(record)
        if self.dist.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            self._save_weights("last.safetensors", result)
            if is_best:
                self._save_weights("best.safetensors", result)
        self.epoch, self.step = self.epoch + 1, 0
        torch.manual_seed(self._epoch_seed(self.epoch))
        self.save_resume()
        return EpochDone(record["epoch"], record, is_best)

    def _record(self, result: EvalResult, seconds: float) -> dict[str, Any]:
        return {
            "epoch": self.epoch + 1,
            "test_top1": result.top1,
            "test_top5": result.top5,
            "test_loss": result.loss,
            "mean_firing_rate": sum(result.firing_rates.values()) / max(1, len(result.firing_rates)),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 2),
        }

    def _save_weights(self, name: str, result: EvalResult) -> None:
        recipe = {
            "command": recipe_command(self.data.info.name, self.spec, self.cfg),
            "train": self.cfg.to_dict(),
            "epochs_completed": self.epoch + 1,
        }
        if self.dist.world_size > 1:  # batch_size is per process: the global batch needs the process count
            recipe["command"] = recipe["command"].replace(
                "realspike train", f"torchrun --nproc-per-node {self.dist.world_size} -m realspike_cli train", 1
            )
            recipe["world_size"] = self.dist.world_size
            recipe["global_batch_size"] = self.dist.world_size * self.cfg.batch_size
        meta = CheckpointMeta(
            spec=self.spec,
            dataset=self.data.info.name,
            class_names=list(getattr(self.data.train, "classes", []) or []),
            metrics={
                "test_top1": result.top1,
                "test_top5": result.top5,
                "test_loss": result.loss,
                "epoch": self.epoch + 1,
            },
            recipe=recipe,
        )
        save_checkpoint(self.out / name, self.model, meta, overwrite=True)

    def run(self) -> Iterator[Any]:
        self.prepare_dir()
        params = sum(p.numel() for p in self.model.parameters())
        yield RunStarted(
            self.out,
            str(self.device),
            params,
            self.epoch,
            self.step,
            self.cfg.epochs,
            self.dist.world_size,
            self.dist.backend,
        )
        if getattr(self, "_rng_after_resume", None) is not None:
            torch.set_rng_state(self._rng_after_resume)
        elif self.epoch == 0 and self.step == 0:
            torch.manual_seed(self._epoch_seed(0))
        with _StopFlag() as stop:
            while self.epoch < self.cfg.epochs:
                yield EpochStarted(self.epoch + 1, self.steps_per_epoch, self.step)
                started = time.perf_counter()
                for event in self.train_steps(stop):
                    yield event
                    if isinstance(event, Stopped):
                        return
                yield self.end_epoch(time.perf_counter() - started)
        out = self.out
        yield Finished(
            self.best_top1, self.best_epoch + 1, out / "best.safetensors", out / "last.safetensors", self.history
        )


def fit(
    spec: ModelSpec, data: DataSplits, cfg: TrainConfig, opts: RunOptions, dist: DistContext | None = None
) -> Iterator[Any]:
    """Train `spec` on `data` with `cfg`, yielding RunStarted, EpochStarted, StepDone, EpochDone, then
    Finished (or Stopped, after saving an exact resume point, on Ctrl-C or `max_steps`); with
    `opts.compile`, also Compiled once, after the first step.

    With `dist` (from `core.distributed`, under torchrun) every rank must call this and consume every
    event; `cfg.batch_size` is then per process and only rank 0 writes files."""
    return _Trainer(spec, data, cfg, opts, dist).run()
