"""The one definition of a model's size that every command prints (`train`, `reparam`, `list archs`).

`parameters` is what `model.parameters()` holds (trainable tensors: weights, biases, BatchNorm affine
weights, Real Spike coefficients); `buffers` counts the floating-point values stored beside them
(`model.buffers()`: BatchNorm running means and variances in the built-in architectures). Integer buffers
(BatchNorm's `num_batches_tracked`) are step counters, not values of the model, and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imports no torch: the CLI's cheap paths may import this module
    from torch import nn


@dataclass(frozen=True)
class ParameterCount:
    parameters: int
    buffers: int = 0

    def describe(self) -> str:
        """E.g. "61,698 parameters (+ 176 buffer values: BatchNorm statistics)"."""
        text = f"{self.parameters:,} parameters"
        return text + (f" (+ {self.buffers:,} buffer values: BatchNorm statistics)" if self.buffers else "")


def count_parameters(model: nn.Module) -> ParameterCount:
    """Elements of `model.parameters()` and of its floating-point buffers (works on the meta device too)."""
    return ParameterCount(
        parameters=sum(p.numel() for p in model.parameters()),
        buffers=sum(b.numel() for b in model.buffers() if b.is_floating_point()),
    )
