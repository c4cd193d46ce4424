"""Accuracy, loss and per-layer firing rates of a model (either form) over a data set.

Everything is accumulated as sums (correct, loss, spikes, neuron-steps) so ranks can add them up before
dividing: each test image counts exactly once however the set is sharded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from realspike_cli.core.neuron import LIFNeuron

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from realspike_cli.core.distributed import DistContext


@dataclass
class EvalResult:
    images: int
    top1: float
    top5: float | None
    loss: float
    firing_rates: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "firing_rates": self.firing_rates,
        }


class SpikeRecorder:
    """Forward hooks counting spikes and neuron-steps at every LIF neuron; a context manager."""

    def __init__(self, model: nn.Module) -> None:
        self.neurons = {name: m for name, m in model.named_modules() if isinstance(m, LIFNeuron)}
        self.spikes = {name: 0.0 for name in self.neurons}
        self.steps = {name: 0 for name in self.neurons}
        self.handles: list = []

    def __enter__(self) -> SpikeRecorder:
        for name, module in self.neurons.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()

    def _hook(self, name: str) -> Callable:
        def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self.spikes[name] += float(output.detach().abs().double().sum())  # |s|: ternary spikes count as events
            self.steps[name] += output.numel()

        return record

    def rates(self) -> dict[str, float]:
        return {n: self.spikes[n] / self.steps[n] for n in self.neurons if self.steps[n]}


@torch.no_grad()
def evaluate_sums(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Raw sums over `batches`: images, correct top-1/top-5, summed loss, per-neuron spikes and steps."""
    model.eval()
    images = correct1 = correct5 = 0
    loss_sum = 0.0
    num_classes = None
    with SpikeRecorder(model) as recorder:
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x).float()
            num_classes = logits.shape[1]
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            top = logits.topk(min(5, num_classes), dim=1).indices
            correct1 += int((top[:, 0] == y).sum())
            correct5 += int((top == y[:, None]).any(dim=1).sum())
            images += len(y)
    names = list(recorder.neurons)
    return {
        "counts": torch.tensor([images, correct1, correct5, num_classes or 0], dtype=torch.float64),
        "loss": torch.tensor([loss_sum], dtype=torch.float64),
        "spikes": torch.tensor([recorder.spikes[n] for n in names], dtype=torch.float64),
        "steps": torch.tensor([recorder.steps[n] for n in names], dtype=torch.float64),
        "names": names,  # type: ignore[dict-item]
    }


def summarize(sums: dict) -> EvalResult:
    images, correct1, correct5, num_classes = (float(v) for v in sums["counts"])
    n = max(images, 1.0)
    rates = {
        name: float(s / st) for name, s, st in zip(sums["names"], sums["spikes"], sums["steps"], strict=True) if st > 0
    }
    return EvalResult(
        images=int(images),
        top1=correct1 / n,
        top5=correct5 / n if num_classes >= 10 else None,
        loss=float(sums["loss"][0]) / n,
        firing_rates=rates,
    )


def evaluate(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str = "cpu"
) -> EvalResult:
    """Top-1, top-5 (when there are at least 10 classes), mean loss and firing rate of every neuron layer."""
    return summarize(evaluate_sums(model, batches, device))


def reduce_sums(sums: dict, ctx: DistContext) -> dict:
    """`evaluate_sums` results added up over ranks (the class count is a maximum: a rank may have no images)."""
    counts = sums["counts"]
    flat = torch.cat([counts[:3], sums["loss"], sums["spikes"], sums["steps"]])
    total = ctx.all_reduce(flat)
    n_spikes = len(sums["spikes"])
    return {
        "counts": torch.cat([total[:3], ctx.all_reduce(counts[3:], op="max")]),
        "loss": total[3:4],
        "spikes": total[4 : 4 + n_spikes],
        "steps": total[4 + n_spikes :],
        "names": sums["names"],
    }


def evaluate_sharded(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str = "cpu",
    ctx: DistContext | None = None,
    workers: int = 0,
) -> EvalResult:
    """Each rank evaluates its share of `dataset` and all get the totals: every image counts exactly once.

    Call it on every rank with identical weights (the unwrapped model, not the DDP wrapper).
    """
    from realspike_cli.core.datasets.loaders import BatchStream

    rank, world = (ctx.rank, ctx.world_size) if ctx is not None and ctx.enabled else (0, 1)
    stream = BatchStream(dataset, batch_size, shuffle=False, rank=rank, world_size=world, even=False, workers=workers)
    sums = evaluate_sums(model, stream, device)
    if world > 1:
        sums = reduce_sums(sums, ctx)  # type: ignore[arg-type]
    return summarize(sums)
