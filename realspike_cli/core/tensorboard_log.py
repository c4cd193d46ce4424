"""TensorBoard logging of a training run, as a callback (extra `realspike[tensorboard]`).

Tags: per step `train/loss` and `train/lr` (x axis: the global step); per epoch `epoch/<key>` for every number
of the epoch's metrics.jsonl record (x axis: the epoch), `firing_rate/<layer>`, and for every Real Spike
coefficient `coefficient/<layer>/mean|min|max` plus a histogram `coefficient/<layer>`; with a validation split
`test_of_selected/top1|top5|loss` once at the end. Only rank 0 writes. A resumed run first discards what a
crashed attempt logged after the resume point (`purge_step`), so the curves do not double back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from realspike_cli.core.errors import ConfigError
from realspike_cli.core.events import Callback, EpochDone, Event, FinalTest, StepDone
from realspike_cli.core.neuron import RealSpike

if TYPE_CHECKING:
    from torch import nn

    from realspike_cli.core.train import Trainer

INSTALL_HINT = "pip install 'realspike[tensorboard]'"


def summary_writer_class() -> type:
    """torch's SummaryWriter, or one ConfigError line when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard imports the tensorboard package, an optional extra
        raise ConfigError(f"--tensorboard needs the tensorboard package: {INSTALL_HINT}") from None
    return SummaryWriter


def coefficient_stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """mean, min and max of every Real Spike coefficient, by the coefficient module's name."""
    stats = {}
    for name, module in model.named_modules():
        if isinstance(module, RealSpike):
            a = module.a.detach().float()
            stats[name] = {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}
    return stats


class TensorBoardLogger(Callback):
    """Writes TensorBoard event files into `log_dir`; `every` logs the step scalars every N steps.

    Place it after a Checkpointer, so that it knows whether the run resumed (and where)."""

    def __init__(self, log_dir: str | Path, every: int = 1) -> None:
        if every < 1:
            raise ConfigError(f"TensorBoard logging needs every >= 1 step, got {every}")
        self.writer_class = summary_writer_class()  # fails here, before any training, when it is missing
        self.log_dir, self.every = Path(log_dir), every
        self.writer: Any = None

    def on_start(self, trainer: Trainer) -> None:
        if not trainer.dist.is_main:
            return
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the TensorBoard folder {self.log_dir}: {exc.strerror}") from None
        purge = trainer.global_step + 1 if trainer.resumed else None  # the resume point's own step stays
        self.writer = self.writer_class(str(self.log_dir), purge_step=purge)

    def on_event(self, event: Event, trainer: Trainer) -> None:
        w = self.writer
        if w is None:
            return
        if isinstance(event, StepDone) and trainer.global_step % self.every == 0:
            w.add_scalar("train/loss", event.loss, trainer.global_step)
            w.add_scalar("train/lr", trainer.optimizer.param_groups[0]["lr"], trainer.global_step)
        elif isinstance(event, EpochDone):
            self._epoch(event, trainer)
        elif isinstance(event, FinalTest):
            for key in ("top1", "top5", "loss"):
                if event.record.get(f"test_{key}") is not None:
                    w.add_scalar(f"test_of_selected/{key}", event.record[f"test_{key}"], event.epoch)

    def _epoch(self, event: EpochDone, trainer: Trainer) -> None:
        w, epoch = self.writer, event.epoch
        for key, value in event.record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                w.add_scalar(f"epoch/{key}", value, epoch)
        for layer, rate in event.record.get("firing_rates", {}).items():
            w.add_scalar(f"firing_rate/{layer}", rate, epoch)
        for layer, stats in coefficient_stats(trainer.model).items():
            for key, value in stats.items():
                w.add_scalar(f"coefficient/{layer}/{key}", value, epoch)
        for name, module in trainer.model.named_modules():
            if isinstance(module, RealSpike):
                w.add_histogram(f"coefficient/{name}", module.a.detach().float().cpu(), epoch)
        w.flush()

    def on_end(self, trainer: Trainer, model: nn.Module) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
