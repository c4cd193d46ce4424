"""What a training run reports: events that `train.train_events` yields and that callbacks observe.

The loop itself writes nothing. Checkpoints, metrics files and progress displays are callbacks (or
consumers of the yielded events), so a library user gets a plain loop and attaches only what they want.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from realspike_cli.core.train import Trainer


@dataclass
class RunStarted:
    device: str
    parameters: int
    start_epoch: int
    start_step: int
    epochs: int
    world_size: int = 1
    backend: str = ""


@dataclass
class EpochStarted:
    epoch: int
    steps: int
    done: int


@dataclass
class StepDone:
    epoch: int
    step: int
    loss: float


@dataclass
class Compiled:
    """`compile=True`: the first step of this process is done; it included compiling the model."""

    seconds: float


@dataclass
class EpochDone:
    """An epoch ended and was evaluated; `record` is its metrics.jsonl line, `is_best` whether it leads."""

    epoch: int
    record: dict[str, Any]
    is_best: bool


@dataclass
class Stopped:
    """The run stopped before its last epoch (`reason`: "interrupted" or "max_steps"), after `step` steps
    of epoch index `epoch`; a Checkpointer has saved an exact resume point by the time this is yielded."""

    reason: str
    epoch: int
    step: int


@dataclass
class Finished:
    best_top1: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


Event = RunStarted | EpochStarted | StepDone | Compiled | EpochDone | Stopped | Finished


class Callback:
    """Observer of a training run. Every method is optional; all run on every rank under torchrun.

    `on_start` runs before the first step and may restore state (a Checkpointer resumes there);
    `on_event` sees every event before the caller does; `on_end` runs however the run ends.
    """

    def on_start(self, trainer: Trainer) -> None:
        """Before the first step (after the model, optimizer and schedule exist)."""

    def on_event(self, event: Event, trainer: Trainer) -> None:
        """Every event, in order, before it is yielded."""

    def on_end(self, trainer: Trainer, model: nn.Module) -> None:
        """After the last event, also when the run failed or was stopped."""
