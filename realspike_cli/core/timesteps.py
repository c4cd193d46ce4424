"""Evaluating a checkpoint at other numbers of time steps than it was trained with (accuracy vs T).

No weight depends on T: convolutions, BatchNorm and Real Spike coefficients (per layer, channel or position)
are shared over time, so the structure is rebuilt with the new T and the same weights are loaded strictly.
Either form works. Where a structure's weights did depend on T, the strict load refuses it, naming the tensor.
Event-frame data sets must be read with T frames: pass a function T -> test set instead of one test set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from realspike_cli.core.checkpoint import CheckpointMeta, build_from_meta, load_checkpoint, read_meta
from realspike_cli.core.errors import CheckpointError, ConfigError
from realspike_cli.core.evaluate import evaluate
from realspike_cli.core.limits import MAX_TIME_STEPS  # beyond it a T is a typo (the activations would not fit)


@dataclass(frozen=True)
class TimeStepResult:
    time_steps: int
    images: int
    top1: float
    top5: float | None
    loss: float
    mean_firing_rate: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_time_steps(text: str) -> list[int]:
    """'1,2,4,8' -> [1, 2, 4, 8]: positive integers up to MAX_TIME_STEPS, each once, in the given order."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= MAX_TIME_STEPS:
            raise ConfigError(f"--t takes time steps from 1 to {MAX_TIME_STEPS} separated by commas "
                              f"(e.g. 1,2,4,8), got {text!r}")
        if int(part) not in values:
            values.append(int(part))
    return values


def model_at_time_steps(checkpoint: str | Path, time_steps: int, device: str | torch.device = "cpu"
                        ) -> tuple[nn.Module, CheckpointMeta]:
    """The checkpoint's model (its form) rebuilt to run `time_steps` steps, with its own weights; eval mode."""
    if not 1 <= time_steps <= MAX_TIME_STEPS:
        raise ConfigError(f"time steps must be from 1 to {MAX_TIME_STEPS}, got {time_steps}")
    meta = read_meta(checkpoint)
    meta = dataclasses.replace(meta, spec=dataclasses.replace(meta.spec, time_steps=time_steps))
    try:
        return load_checkpoint(checkpoint, device, model=build_from_meta(meta))
    except CheckpointError as exc:
        raise CheckpointError(f"cannot evaluate at T={time_steps}: {exc}") from None


def sweep_time_steps(
    checkpoint: str | Path,
    time_steps: Sequence[int],
    test_set: Dataset | Callable[[int], Dataset],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    workers: int = 0,
    wrap: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> list[TimeStepResult]:
    """Top-1, top-5, loss and mean firing rate at each T over the whole test set.

    `wrap(batches, T)` may wrap each T's batch stream (a progress display, for instance)."""
    from realspike_cli.core.datasets.loaders import BatchStream

    results = []
    for steps in time_steps:
        model, _ = model_at_time_steps(checkpoint, steps, device)
        data = test_set(steps) if callable(test_set) and not isinstance(test_set, Dataset) else test_set
        batches: Iterable[Any] = BatchStream(data, batch_size, shuffle=False, workers=workers)
        if wrap is not None:
            batches = wrap(batches, steps)
        r = evaluate(model, batches, device)
        rate = sum(r.firing_rates.values()) / max(1, len(r.firing_rates))
        results.append(TimeStepResult(steps, r.images, r.top1, r.top5, r.loss, rate))
    return results
