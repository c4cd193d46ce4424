"""Dense NIR emission for unshared (element-wise) synapses: NIR has no locally connected node, so every
neuron population's input is written as one Affine per spike source, its matrix the exact Jacobian."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.fx as fx

from realspike_cli.core.export.common import ExportError
from realspike_cli.core.export.nir_build import NIRBuilder, Term
from realspike_cli.core.export.nir_layers import LayerEmitter
from realspike_cli.core.graph import is_spiking_neuron, is_time_plumbing

CHUNK = 2048  # basis vectors pushed through a layer at once while taking a Jacobian


class DenseEmitter(LayerEmitter):
    """The stem (before the first neurons) layer by layer, then flat neurons and dense Affine synapses."""

    def __init__(self, b: NIRBuilder, max_weights: int) -> None:
        super().__init__(b)
        self.max_weights = max_weights
        self.modules64 = dict(copy.deepcopy(b.gm).double().named_modules())  # Jacobians taken in float64
        graph = list(b.gm.graph.nodes)
        self.neurons = [n for n in graph if is_spiking_neuron(b.mod(n))]
        self.output_node = next(n for n in graph if n.op == "output")
        self.stem_memo: dict[fx.Node, bool] = {}

    def run(self) -> None:
        b = self.b
        targets = [(n, n.args[0]) for n in self.neurons] + [(self.output_node, self.readout(self.output_node))]
        plans = {t: self.sources(inp) for t, inp in targets}
        self.check_size(targets, plans)
        stem = [n for n in b.gm.graph.nodes if n.op == "placeholder" or self.before_neurons(n)]
        for node in stem:
            b.values[node] = self.emit(node)
        for target, inp in targets:
            sources = plans[target]
            if sources is None:  # a first-layer neuron: its input was emitted layer by layer, then flattened
                b.values[target] = self.first_neuron(target, inp)
            else:
                self.dense_target(target, inp, sources)

    # --- analysis --------------------------------------------------------------------------------------

    def readout(self, node: fx.Node) -> fx.Node:
        value = node.args[0]
        while is_time_plumbing(value):
            value = value.args[0]
        return value

    def before_neurons(self, node: fx.Node) -> bool:
        """Nodes computed from the input without crossing a neuron (the stem)."""
        if node not in self.stem_memo:
            if node.op == "placeholder":
                self.stem_memo[node] = True
            elif node.op == "output" or is_spiking_neuron(self.b.mod(node)):
                self.stem_memo[node] = False
            else:
                inputs = node.all_input_nodes
                self.stem_memo[node] = bool(inputs) and all(self.before_neurons(i) for i in inputs)
        return self.stem_memo[node]

    def sources(self, inp: fx.Node) -> list[fx.Node] | None:
        """The neurons whose spikes `inp` is a function of; None when it is computed from the input image."""
        if self.before_neurons(inp):
            return None
        found: list[fx.Node] = []
        stack, seen = [inp], set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if is_spiking_neuron(self.b.mod(node)):
                found.append(node)
            elif node.op == "placeholder":
                raise ExportError(f"NIR export: {inp.name} mixes the input image with spikes")
            else:
                stack += node.all_input_nodes
        order = {n: i for i, n in enumerate(self.b.gm.graph.nodes)}
        return sorted(found, key=order.__getitem__)

    def check_size(self, targets: list, plans: dict) -> None:
        size = lambda n: int(np.prod(self.b.shape(n)))  # noqa: E731
        total = sum(size(inp) * size(s) for t, inp in targets for s in (plans[t] or []))
        if total > self.max_weights:
            raise ExportError(
                f"NIR has no node for unshared (element-wise) synapses, and this model's dense Affine form needs "
                f"{total:,} weights, above the limit of {self.max_weights:,} (--max-dense-weights); export a "
                "layer/channel model, a narrower model or smaller inputs"
            )

    # --- emission --------------------------------------------------------------------------------------

    def first_neuron(self, target: fx.Node, inp: fx.Node) -> list[Term]:
        b = self.b
        shape = b.shape(inp)
        terms = [b.rescale(t, b.k, shape, f"{target.target}.in") for t in b.values[inp]]
        if len(shape) > 1:
            flat = b.nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            terms = [Term(b.add(f"{target.target}.flatten", flat, terms), b.k)]
        return b.neuron(str(target.target), terms, (int(np.prod(shape)),), target)

    def dense_target(self, target: fx.Node, inp: fx.Node, sources: list[fx.Node]) -> None:
        b = self.b
        is_output = target.op == "output"
        gain = 1.0 if is_output else b.k
        bias = self.evaluate(inp, {s: torch.zeros(1, *b.shape(s), dtype=torch.float64) for s in sources})
        bias = bias.reshape(-1)
        terms = []
        name = "output" if is_output else str(target.target)
        for i, src in enumerate(sources):
            weight = self.jacobian(inp, src, sources, bias)
            b_i = bias if i == 0 else None
            terms += b.weighted(f"{name}.syn{i}", None, weight, b_i, b.values[src], (weight.shape[1],), gain)
        m = bias.numel()
        if is_output:
            b.add("output", b.nir.Output(output_type={"output": np.array([m])}), terms)
        else:
            b.values[target] = b.neuron(str(target.target), terms, (m,), target)

    def jacobian(self, inp: fx.Node, src: fx.Node, sources: list[fx.Node], bias: torch.Tensor) -> torch.Tensor:
        """[outputs, inputs] matrix of the (affine) map from `src`'s spikes to `inp`, the others held at 0."""
        shape = self.b.shape(src)
        n = int(np.prod(shape))
        columns = []
        for start in range(0, n, CHUNK):
            rows = min(CHUNK, n - start)
            basis = torch.zeros(rows, n, dtype=torch.float64)
            basis[torch.arange(rows), start + torch.arange(rows)] = 1.0
            env = {s: torch.zeros(rows, *self.b.shape(s), dtype=torch.float64) for s in sources}
            env[src] = basis.view(rows, *shape)
            columns.append(self.evaluate(inp, env).reshape(rows, -1) - bias)
        return torch.cat(columns).T

    def evaluate(self, target: fx.Node, env: dict[fx.Node, torch.Tensor]) -> torch.Tensor:
        """Run the graph from the given node values up to `target` (float64 copies of the layers)."""
        env = dict(env)

        def run(node: fx.Node) -> torch.Tensor:
            if node not in env:
                args = fx.node.map_arg(node.args, run)
                kwargs = fx.node.map_arg(node.kwargs, run)
                if node.op == "call_module":
                    env[node] = self.modules64[node.target](*args, **kwargs)
                elif node.op == "call_function":
                    env[node] = node.target(*args, **kwargs)
                elif node.op == "call_method":
                    env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
                else:
                    raise ExportError(f"NIR export: cannot evaluate {node.op} {node.name}")
            return env[node]

        with torch.no_grad():
            return run(target)
