"""The inference form as a NIR graph: one NIR node per layer, or dense Affine maps for unshared synapses.

Neurons map onto NIR's LIF/IF (docs/export.md has the table); every value keeps a gain (what was written
÷ the true value) so a neuron's 1/(1−λ) input scale and a sum pool's window size land in the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from realspike_cli.core.export.common import Dynamics, ExportError
from realspike_cli.core.graph import (
    AVG_POOLS,
    IDENTITY_MODULES,
    MAX_POOLS,
    ModelGraph,
    is_add,
    is_spiking_neuron,
    is_time_plumbing,
)
from realspike_cli.core.synapses import FactorizedSynapse, MaterializedSynapse

UNSHARED = (FactorizedSynapse, MaterializedSynapse)
# float64 arrays: the 1/(1−λ) input scale then adds ~1e-16 of rounding instead of float32's ~1e-7, which would
# flip the rare spike whose membrane sits that close to the threshold. Simulators cast to their own dtype.
DTYPE = np.float64


@dataclass
class Term:
    """One NIR node's output that is part of a value: written = gain × true contribution."""

    name: str
    gain: float


def neuron_input_scale(spec: Dynamics) -> float:
    """1/(1−λ) for LIF (NIR's LIF integrates (1−λ)·input per step); 1 for IF (decay 1)."""
    decay = spec.neuron.decay
    return 1.0 if decay >= 1.0 else 1.0 / (1.0 - decay)


class NIRBuilder:
    """Walks the inference form's fx graph in order and emits NIR nodes and edges."""

    def __init__(self, gm: fx.GraphModule, spec: Dynamics, sample: torch.Tensor, dt: float, pooling: str) -> None:
        import nir

        self.nir, self.gm, self.spec, self.dt, self.pooling = nir, gm, spec, dt, pooling
        self.graph = ModelGraph(gm)
        self.modules = self.graph.modules
        ShapeProp(gm).propagate(sample)  # per-node shapes, read from node.meta
        self.k = neuron_input_scale(spec)
        self.nodes: dict[str, object] = {}
        self.edges: list[tuple[str, str]] = []
        self.values: dict[fx.Node, list[Term]] = {}

    # --- helpers -------------------------------------------------------------------------------------

    def mod(self, node: fx.Node) -> nn.Module | None:
        return self.graph.module(node)

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        """Per-sample shape; placeholders of frame data carry [B, T, ...], time-folded values [T·B, ...]."""
        full = tuple(node.meta["tensor_meta"].shape)
        return full[2:] if node.op == "placeholder" and self.spec.encoding.value == "frames" else full[1:]

    def add(self, name: str, node: object, inputs: list[Term]) -> str:
        name = self.unique(name)
        self.nodes[name] = node
        self.edges += [(t.name, name) for t in inputs]
        return name

    def unique(self, name: str) -> str:
        base, i = name, 1
        while name in self.nodes:
            name, i = f"{base}.{i}", i + 1
        return name

    def common_gain(self, terms: list[Term], shape: tuple[int, ...], where: str) -> tuple[list[Term], float]:
        """Terms summed at one node's input must share a gain; rescale the odd ones to gain 1."""
        gains = {t.gain for t in terms}
        if len(gains) == 1:
            return terms, gains.pop()
        return [self.rescale(t, 1.0, shape, where) for t in terms], 1.0

    def rescale(self, term: Term, gain: float, shape: tuple[int, ...], where: str) -> Term:
        """A depthwise 1×1 conv (or a diagonal Affine on vectors) multiplying `term` to the wanted gain."""
        if math.isclose(term.gain, gain, rel_tol=1e-12):
            return term
        factor = gain / term.gain
        name = f"{where}.scale"
        if len(shape) == 3:  # groups=1 with a diagonal kernel: nir's type inference ignores groups
            c = shape[0]
            w = (np.eye(c, dtype=DTYPE) * factor).reshape(c, c, 1, 1)
            node = self.nir.Conv2d(shape[1:], w, 1, 0, 1, 1, np.zeros(c, DTYPE))
        else:
            n = int(np.prod(shape))
            node = self.nir.Affine(np.eye(n, dtype=DTYPE) * factor, np.zeros(n, DTYPE))
        return Term(self.add(name, node, [term]), gain)

    def feeds_neurons(self, node: fx.Node) -> bool:
        """True if every use of `node` (through additions only) is a neuron's input."""
        users = list(node.users)
        if not users:
            return False
        for user in users:
            if is_spiking_neuron(self.mod(user)):
                continue
            passes = is_time_plumbing(user) or is_add(user)
            if passes and self.feeds_neurons(user):
                continue
            return False
        return True

    # --- nodes ---------------------------------------------------------------------------------------

    def neuron(self, name: str, terms: list[Term], shape: tuple[int, ...], node: fx.Node) -> list[Term]:
        """A LIF/IF node of `shape` for neuron `node`: its thresholds per neuron (a folded MPBN neuron's are
        per channel, broadcast over its features [C, H, W] and laid out as `shape`, flat in dense mode)."""
        terms = [self.rescale(t, self.k, shape, f"{name}.in") for t in terms]
        ones, zeros = np.ones(shape, DTYPE), np.zeros(shape, DTYPE)
        upper = self.mod(node).firing_rule().upper
        upper = upper.detach().double().cpu().numpy() if isinstance(upper, torch.Tensor) else float(upper)
        threshold = np.broadcast_to(np.asarray(upper, DTYPE), self.shape(node)).reshape(shape).copy()
        if self.k == 1.0:
            written = self.nir.IF(r=ones, v_threshold=threshold, v_reset=zeros)
        else:
            tau = np.full(shape, self.dt * self.k, DTYPE)  # dt/(1−λ)
            written = self.nir.LIF(tau=tau, r=ones, v_leak=zeros, v_threshold=threshold, v_reset=zeros)
        return [Term(self.add(name, written, terms), 1.0)]

    def weighted(self, name: str, conv: tuple | None, weight: torch.Tensor, bias: torch.Tensor | None,
                 terms: list[Term], shape: tuple[int, ...], out_gain: float) -> list[Term]:
        """A conv (`conv` = stride, padding, dilation, groups) or affine layer reading `terms`; the weights
        carry out_gain/(input gain), the bias out_gain."""
        terms, gain = self.common_gain(terms, shape, name)
        w = (weight.detach().double() * (out_gain / gain)).numpy()
        out = weight.shape[0]
        b = np.zeros(out, DTYPE) if bias is None else (bias.detach().double() * out_gain).numpy()
        if conv is not None:
            stride, padding, dilation, groups = conv
            if isinstance(padding, str):
                raise ExportError(f"NIR export: conv {name} uses padding={padding!r}; only numeric padding maps")
            if groups > 1:  # nir's type inference ignores groups: write the same map as one block-diagonal conv
                w, groups = block_diagonal(w, groups), 1
            node = self.nir.Conv2d(shape[1:], w, stride, padding, dilation, groups, b)
        else:
            node = self.nir.Affine(w, b)
        return [Term(self.add(name, node, terms), out_gain)]

    def path_module(self, name: str, m: nn.Module, terms: list[Term], shape: tuple[int, ...]) -> list[Term]:
        """Pooling, flatten and identities between spikes and a layer."""
        if isinstance(m, IDENTITY_MODULES):
            return terms
        if isinstance(m, nn.Flatten):
            if (m.start_dim, m.end_dim) != (1, -1):
                raise ExportError(f"NIR export: Flatten {name} has dims ({m.start_dim}, {m.end_dim}); only (1, -1)")
            terms, gain = self.common_gain(terms, shape, name)
            node = self.nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            return [Term(self.add(name, node, terms), gain)]
        if isinstance(m, AVG_POOLS):
            return self.pool(name, m, terms, shape)
        if isinstance(m, MAX_POOLS):
            raise ExportError(f"NIR has no max-pooling node, so {name} ({type(m).__name__}) cannot be exported to NIR")
        raise ExportError(f"NIR export: no NIR node for {type(m).__name__} {name}")

    def pool(self, name: str, m: nn.Module, terms: list[Term], shape: tuple[int, ...]) -> list[Term]:
        kernel, stride = pool_window(name, m, shape)
        terms, gain = self.common_gain(terms, shape, name)
        args = (np.array(kernel), np.array(stride), np.array([0, 0]))
        if self.pooling == "sum":  # the next weighted layer divides by the window size
            return [Term(self.add(name, self.nir.SumPool2d(*args), terms), gain * kernel[0] * kernel[1])]
        return [Term(self.add(name, self.nir.AvgPool2d(*args), terms), gain)]


def block_diagonal(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv kernel [out, in/groups, kh, kw] as the equal ungrouped one [out, in, kh, kw]."""
    out, per_group = weight.shape[:2]
    full = np.zeros((out, per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    step = out // groups
    for g in range(groups):
        full[g * step:(g + 1) * step, g * per_group:(g + 1) * per_group] = weight[g * step:(g + 1) * step]
    return full


def pool_window(name: str, m: nn.Module, shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, stride) of an average pool NIR can express: no padding, no divisor, no ceil-mode overhang."""
    _, h, w = shape
    if isinstance(m, nn.AdaptiveAvgPool2d):
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
        oh, ow = (h if out[0] is None else out[0]), (w if out[1] is None else out[1])
        if h % oh or w % ow:
            raise ExportError(f"NIR export: AdaptiveAvgPool2d {name} maps {h}x{w} to {oh}x{ow}, not a whole window")
        return (h // oh, w // ow), (h // oh, w // ow)
    pair = lambda v: (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))  # noqa: E731
    kernel = pair(m.kernel_size)
    stride = kernel if m.stride is None else pair(m.stride)
    if pair(m.padding) != (0, 0) or m.divisor_override is not None:
        raise ExportError(f"NIR export: AvgPool2d {name} pads or overrides its divisor; NIR pools do neither")
    if m.ceil_mode and any((n - k) % s for n, k, s in zip((h, w), kernel, stride, strict=True)):
        raise ExportError(
            f"NIR export: AvgPool2d {name} uses ceil_mode on a {h}x{w} map, so its last window overhangs; NIR "
            "pools have no ceil mode (choose an input size the pools divide)"
        )
    return kernel, stride
