"""Events that `train.fit` yields: the CLI renders them, a library user can log or ignore them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunStarted:
    out_dir: Path
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
    """`--compile`: the first step of this process is done; it included compiling the model."""

    seconds: float


@dataclass
class EpochDone:
    epoch: int
    record: dict[str, Any]
    is_best: bool


@dataclass
class Stopped:
    reason: str
    epoch: int
    step: int
    resume_path: Path


@dataclass
class Finished:
    best_top1: float
    best_epoch: int
    best_path: Path
    last_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
