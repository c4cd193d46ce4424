"""Layer-by-layer NIR emission: each conv, linear, pool, flatten and neuron of the inference form becomes
one NIR node; additions become several edges into one node (NIR sums a node's inputs)."""

from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from realspike_cli.core.export.common import ExportError
from realspike_cli.core.export.nir_build import NIRBuilder, Term
from realspike_cli.core.graph import is_add, is_flatten, is_spiking_neuron, is_time_plumbing
from realspike_cli.core.synapses import OpSpec, SharedSynapse, SynapticScale


def conv_params(op: nn.Conv2d | OpSpec) -> tuple:
    return (op.stride, op.padding, op.dilation, op.groups)


def merged(terms: list[Term]) -> list[Term]:
    """One term per NIR node (NIR allows one edge between two nodes): k copies of a node's output, each
    written = gain × true, are the true value written at gain/k."""
    count: dict[str, int] = {}
    for t in terms:
        count[t.name] = count.get(t.name, 0) + 1
    gains = {t.name: t.gain for t in terms}
    return [Term(name, gains[name] / k) for name, k in count.items()]


class LayerEmitter:
    """Emits the whole fx graph node by node (the form every shared-kernel model takes)."""

    def __init__(self, b: NIRBuilder) -> None:
        self.b = b

    def run(self) -> None:
        for node in self.b.gm.graph.nodes:
            self.b.values[node] = self.emit(node)

    def emit(self, node: fx.Node) -> list[Term]:
        b = self.b
        if node.op == "placeholder":
            shape = b.shape(node)
            return [Term(b.add("input", b.nir.Input(input_type={"input": np.array(shape)}), []), 1.0)]
        if node.op == "output":
            return self.output(node)
        if is_time_plumbing(node):
            return b.values[node.args[0]]
        if is_add(node):
            return merged(b.values[node.args[0]] + b.values[node.args[1]])
        m = b.mod(node)
        if m is None and is_flatten(node):
            return b.path_module(node.name, nn.Flatten(), b.values[node.args[0]], b.shape(node.args[0]))
        if m is None:
            raise ExportError(f"NIR export: no NIR node for {node.op} {getattr(node.target, '__name__', node.target)}")
        return self.module(node, m)

    def output(self, node: fx.Node) -> list[Term]:
        b = self.b
        (value,) = node.args
        shape = b.shape(value)
        terms = [b.rescale(t, 1.0, shape, "output") for t in b.values[value]]
        b.add("output", b.nir.Output(output_type={"output": np.array(shape)}), terms)
        return []

    def module(self, node: fx.Node, m: nn.Module) -> list[Term]:
        b, name = self.b, str(node.target)
        if is_spiking_neuron(m):
            return b.neuron(name, b.values[node.args[0]], b.shape(node), node)
        gain = b.k if b.feeds_neurons(node) else 1.0
        if isinstance(m, SharedSynapse):
            return self.shared(node, m, gain)
        src = node.args[0]
        terms, shape = b.values[src], b.shape(src)
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise ExportError(f"NIR export: conv {name} pads with {m.padding_mode!r}; NIR convs pad with zeros")
            return b.weighted(name, conv_params(m), m.weight, m.bias, terms, shape, gain)
        if isinstance(m, nn.Linear):
            return b.weighted(name, None, m.weight, m.bias, terms, shape, gain)
        if isinstance(m, SynapticScale):
            return self.synaptic_scale(name, m, terms, shape, gain)
        return b.path_module(name, m, terms, shape)

    def shared(self, node: fx.Node, m: SharedSynapse, gain: float) -> list[Term]:
        """One conv/affine branch per spike source, each behind its own copy of the pooling path."""
        b, out = self.b, []
        conv = conv_params(m.op) if m.op.conv else None
        for i, (src, path, weight) in enumerate(zip(node.args, m.paths, m.weights, strict=True)):
            terms, shape = b.values[src], b.shape(src)
            for j, step in enumerate(path):
                terms = b.path_module(f"{node.target}.path{i}.{j}", step, terms, shape)
                shape = tuple(step(torch.zeros(1, *shape)).shape[1:])
            bias = m.bias if i == 0 else None
            out += b.weighted(f"{node.target}.src{i}", conv, weight, bias, terms, shape, gain)
        return out

    def synaptic_scale(self, name: str, m: SynapticScale, terms: list[Term], shape: tuple[int, ...],
                       gain: float) -> list[Term]:
        """Each spike adds a (per channel here) to the target: a depthwise 1×1 conv, or a diagonal Affine."""
        a = m.a.detach().double()
        if a.dim() > 1 and a[0].numel() > 1:  # element-wise: only the dense form carries it
            raise ExportError(f"NIR export: element-wise SynapticScale {name} needs the dense form")
        if len(shape) == 3:  # a diagonal 1×1 conv (groups=1: nir's type inference ignores groups)
            c = shape[0]
            weight = torch.diag(a.reshape(-1) * torch.ones(c, dtype=a.dtype)).reshape(c, c, 1, 1)
            return self.b.weighted(name, (1, 0, 1, 1), weight, None, terms, shape, gain)
        n = int(np.prod(shape))
        return self.b.weighted(name, None, torch.diag(a.reshape(-1) * torch.ones(n, dtype=a.dtype)), None, terms,
                               shape, gain)
