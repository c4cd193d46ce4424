"""Which synapses each input element of a layer reaches: the one place with the per-layer-type formulas.

Used by `core.energy` to turn measured spikes into synaptic operations and to count unshared weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from realspike_cli.core.graph import POOLS
from realspike_cli.core.synapses import DenseSynapse, FactorizedSynapse, LocallyConnected2d, SharedSynapse


@dataclass(frozen=True)
class SynOp:
    """A synaptic operation without its values: 'conv' (window + outputs per input channel), 'linear' (out
    features), 'identity' (one neuron) or 'dense' (explicit matrix: its non-zero entries are the synapses)."""

    kind: str
    per_channel: int = 1
    window: Any = None  # nn.Conv2d, LocallyConnected2d, or _ConvGeometry
    dense: torch.Tensor | None = None


@dataclass(frozen=True)
class _ConvGeometry:
    """The conv of a synapse module (its OpSpec plus the kernel size of its weight)."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Any
    dilation: tuple[int, ...]


def _pair(v: Any) -> tuple[Any, Any]:
    return (v, v) if not isinstance(v, (tuple, list)) else (v[0], v[1])


def _relation(n: int, idx: torch.Tensor) -> torch.Tensor:
    """Bool [n inputs, m outputs] from the input indices each output reads, idx [m, taps] (out of range: padding)."""
    rel = torch.zeros(n, idx.shape[0], dtype=torch.bool)
    cols = torch.arange(idx.shape[0])[:, None].expand_as(idx)
    ok = (idx >= 0) & (idx < n)
    rel[idx[ok], cols[ok]] = True
    return rel


def _axis_relation(m: Any, n: int, axis: int) -> torch.Tensor:
    """Which outputs along one axis read which inputs, for a pool or a conv-like window over n positions."""
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size = _pair(m.output_size)[axis] or n
        return torch.stack([(torch.arange(n) >= (o * n) // size) & (torch.arange(n) < -(-(o + 1) * n // size))
                            for o in range(size)], dim=1)
    ceil, out = False, None
    if isinstance(m, LocallyConnected2d):
        left, right, top, bottom = m.pad
        k, s, d, (lo, hi), out = m.kernel[axis], m.stride[axis], 1, ((top, bottom), (left, right))[axis], m.out[axis]
    elif isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
        k, p = _pair(m.kernel_size)[axis], _pair(m.padding)[axis]
        s, d = _pair(m.stride or m.kernel_size)[axis], _pair(getattr(m, "dilation", 1))[axis]
        lo, hi, ceil = p, p, m.ceil_mode
    else:  # a convolution
        k, s, d = m.kernel_size[axis], m.stride[axis], m.dilation[axis]
        total = (0 if m.padding == "valid" else d * (k - 1)) if isinstance(m.padding, str) else 2 * m.padding[axis]
        lo, hi = total // 2, total - total // 2
    if out is None:
        span = n + lo + hi - d * (k - 1) - 1
        out = (-(-span // s) if ceil else span // s) + 1
        out -= int(ceil and (out - 1) * s >= n + lo)  # PyTorch drops a last window that starts in the padding
    idx = (torch.arange(out) * s - lo)[:, None] + torch.arange(k) * d
    return _relation(n, idx)


def _compose(rel: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    return (rel.double() @ step.double()) > 0


def fanout(shape: Sequence[int], path: Sequence[nn.Module], op: SynOp) -> torch.Tensor:
    """Synapses each element of one sample's input (shape [C, H, W] or [F]) reaches through `path`, then `op`.

    Distinct targets are counted, so zero padding and pooling windows are exact: every pool and window is
    separable over H and W, so (y, x) reaches |R_h(y)|·|R_w(x)| positions, times the output channels an input
    channel feeds (out_channels/groups for a conv, all out_features for a linear layer, 1 for an identity).
    """
    shape = tuple(int(s) for s in shape)
    if op.kind == "dense":
        return (op.dense != 0).sum(0).double().reshape(shape).cpu()
    if isinstance(op.window, LocallyConnected2d) and not any(isinstance(m, POOLS) for m in path):
        return _local_fanout(op.window, shape)
    if len(shape) != 3:
        return torch.full(shape, float(op.per_channel), dtype=torch.float64)
    rh, rw = torch.eye(shape[1], dtype=torch.bool), torch.eye(shape[2], dtype=torch.bool)
    for m in path:
        if isinstance(m, POOLS):
            rh, rw = _compose(rh, _axis_relation(m, rh.shape[1], 0)), _compose(rw, _axis_relation(m, rw.shape[1], 1))
    if op.kind == "conv":
        rh = _compose(rh, _axis_relation(op.window, rh.shape[1], 0))
        rw = _compose(rw, _axis_relation(op.window, rw.shape[1], 1))
    if op.kind == "linear":  # every reached feature feeds all outputs
        reach = torch.outer(rh.any(1).double(), rw.any(1).double())
    else:
        reach = torch.outer(rh.sum(1).double(), rw.sum(1).double())
    return (reach * op.per_channel).expand(shape).clone()


def _local_fanout(m: LocallyConnected2d, shape: tuple[int, ...]) -> torch.Tensor:
    """Non-zero weights each input element feeds in a locally connected layer: its explicit synapses, like a
    dense one's. Its window geometry alone would over-count: a composed floor-mode pooling leaves zero taps on
    the rows and columns it drops, which lie inside the windows but reach nothing."""
    channels, height, width = shape
    left, right, top, bottom = m.pad
    per_tap = (m.weight.detach() != 0).sum(-1).double().T.unsqueeze(0).cpu()  # [1, C·kh·kw, positions]
    padded = (height + top + bottom, width + left + right)
    counts = torch.nn.functional.fold(per_tap, padded, m.kernel, stride=m.stride)[0]  # [C, H + pads, W + pads]
    out = torch.zeros(shape, dtype=torch.float64)
    y0, y1 = max(0, -top), min(height, padded[0] - top)  # rows outside these are cropped: never read
    x0, x1 = max(0, -left), min(width, padded[1] - left)
    out[:, y0:y1, x0:x1] = counts[:, y0 + top:y1 + top, x0 + left:x1 + left]
    return out


def path_shape(shape: Sequence[int], path: Sequence[nn.Module]) -> tuple[int, ...]:
    """One sample's shape after a path of pools and flatten."""
    x = torch.zeros(1, *shape, device="meta")
    for m in path:
        x = m(x)
    return tuple(x.shape[1:])


def op_of(module: nn.Module, index: int = 0) -> SynOp:
    """The synaptic operation of a layer (for a synapse module: the one applied to its `index`-th source)."""
    if isinstance(module, nn.Conv2d):
        return SynOp("conv", module.out_channels // module.groups, module)
    if isinstance(module, nn.Linear):
        return SynOp("linear", module.out_features)
    if isinstance(module, LocallyConnected2d):
        return SynOp("conv", module.weight.shape[2], module)
    if isinstance(module, DenseSynapse):
        return SynOp("dense", dense=module.weight.detach())
    if isinstance(module, (SharedSynapse, FactorizedSynapse)):
        w = module.weights[index] if isinstance(module, SharedSynapse) else module.weight
        if not module.op.conv:
            return SynOp("linear", w.shape[0])
        geometry = _ConvGeometry(tuple(w.shape[2:]), module.op.stride, module.op.padding, module.op.dilation)
        return SynOp("conv", w.shape[0] // module.op.groups, geometry)
    raise TypeError(f"no synaptic operation for {type(module).__name__}")
