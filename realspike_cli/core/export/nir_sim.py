"""A small reference simulator for the NIR nodes realspike writes, read exactly as the NIR spec defines them
(forward Euler at the graph's dt, spike on v > v_threshold, reset to v_reset); the export self-check."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from realspike_cli.core.export.common import ExportError


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def _ints(v) -> tuple[int, ...] | int:
    arr = np.atleast_1d(np.asarray(v)).astype(int)
    return int(arr[0]) if arr.size == 1 else tuple(int(i) for i in arr)


def _stateless(nir, node) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if isinstance(node, (nir.Input, nir.Output)):
        return lambda x: x
    if isinstance(node, nir.Conv2d):
        w, b = _t(node.weight), _t(node.bias)
        args = (_ints(node.stride), _ints(node.padding), _ints(node.dilation), int(node.groups))
        return lambda x: F.conv2d(x, w, b, *args)
    if isinstance(node, nir.Affine):
        w, b = _t(node.weight), _t(node.bias)
        return lambda x: F.linear(x, w, b)
    if isinstance(node, nir.Linear):
        w = _t(node.weight)
        return lambda x: F.linear(x, w)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, p = _ints(node.kernel_size), _ints(node.stride), _ints(node.padding)
        size = float(np.prod(np.broadcast_to(np.asarray(node.kernel_size), (2,))))
        scale = size if isinstance(node, nir.SumPool2d) else 1.0
        return lambda x: F.avg_pool2d(x, k, s, p) * scale
    if isinstance(node, nir.Flatten):  # NIR dims exclude the batch
        start, end = int(node.start_dim), int(node.end_dim)
        return lambda x: x.flatten(start + 1, end if end < 0 else end + 1)
    if isinstance(node, nir.Scale):
        s = _t(node.scale)
        return lambda x: x * s
    return None


class _Neuron:
    """LIF: v ← v + dt/τ·(v_leak − v + R·I); IF: v ← v + R·I (one input per step); then fire and reset."""

    def __init__(self, nir, node, dt: float) -> None:
        self.leaky = isinstance(node, nir.LIF)
        self.r, self.th, self.reset = _t(node.r), _t(node.v_threshold), _t(node.v_reset)
        if self.leaky:
            self.rate, self.v_leak = dt / _t(node.tau), _t(node.v_leak)
        self.v: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x) if self.v is None else self.v
        v = v + self.rate * (self.v_leak - v + self.r * x) if self.leaky else v + self.r * x
        z = v > self.th
        self.v = torch.where(z, self.reset, v)
        return z.to(x.dtype)


def simulate(graph, steps: torch.Tensor, dt: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run `graph` on [T, B, ...] inputs; returns the Output node's [T, B, ...] and each neuron's spike
    count per sample [B] (summed over time and neurons)."""
    import nir

    ops: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    neurons = set()
    for name, node in graph.nodes.items():
        op = _stateless(nir, node)
        if op is None and isinstance(node, (nir.LIF, nir.IF)):
            op = _Neuron(nir, node, dt)
            neurons.add(name)
        if op is None:
            raise ExportError(f"the reference NIR simulator has no rule for {type(node).__name__} {name}")
        ops[name] = op
    order, preds = _order(graph)
    source = next(n for n, node in graph.nodes.items() if isinstance(node, nir.Input))
    sink = next(n for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    outputs, counts = [], defaultdict(float)
    for x_t in steps.double().unbind(0):
        out = {source: x_t}
        for name in order:
            if name != source:
                out[name] = ops[name](sum(out[p] for p in preds[name]))
            if name in neurons:
                counts[name] = counts[name] + out[name].flatten(1).sum(1)
        outputs.append(out[sink])
    return torch.stack(outputs), dict(counts)


def _order(graph) -> tuple[list[str], dict[str, list[str]]]:
    preds: dict[str, list[str]] = defaultdict(list)
    for a, b in graph.edges:
        preds[b].append(a)
    order, done = [], set()
    pending = list(graph.nodes)
    while pending:
        ready = [n for n in pending if all(p in done for p in preds[n])]
        if not ready:
            raise ExportError("the NIR graph has a cycle; realspike writes feed-forward graphs only")
        for n in ready:
            order.append(n)
            done.add(n)
        pending = [n for n in pending if n not in done]
    return order, preds
