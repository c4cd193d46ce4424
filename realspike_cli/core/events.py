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
    sizes: dict[str, int] = field(default_factory=dict)  # images per split: train, test and val if any
    selected_on: str = "test"  # where `best` is chosen: "test" (the authors' convention) or "validation"
    init_from: str | None = None  # the checkpoint the weights started from (InitFrom), if any
    buffers: int = 0  # floating-point buffer values (BatchNorm statistics) beside `parameters` (core.counting)


@dataclass
class EpochStarted:
    epoch: int
    steps: int
    done: int


@dataclass
class StepDone:
    """A training step ended: `loss` is its mean over ranks, `images` the images it took on all ranks."""

    epoch: int
    step: int
    loss: float
    images: int = 0


@dataclass
class Compiled:
    """`compile=True`: the first step of this process is done; it included compiling the model."""

    seconds: float


@dataclass
class EpochDone:
    """An epoch ended and was evaluated; `record` is its metrics.jsonl line, `is_best` whether it leads.

    `record`: epoch, train_loss and train_top1 (over the epoch's steps, in training mode, on all ranks), the
    selection set's metrics (test_top1/top5/loss, or val_top1/top5/loss with a validation split),
    mean_firing_rate and firing_rates per layer (on that set), lr, and seconds (the epoch's training time,
    also across an interruption)."""

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
class FinalTest:
    """With a validation split only: after the last epoch, the selected (best-on-validation) model evaluated
    once on the test set. `record`: {"final": "test", "epoch", "test_top1", "test_top5", "test_loss", "images"}."""

    epoch: int
    record: dict[str, Any]


@dataclass
class Finished:
    """The run trained all its epochs. `best_top1` is on the selection set (`selected_on`: "test" or
    "validation"); `test` is FinalTest's record with a validation split, else None."""

    best_top1: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    selected_on: str = "test"
    test: dict[str, Any] | None = None


Event = RunStarted | EpochStarted | StepDone | Compiled | EpochDone | Stopped | FinalTest | Finished


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
