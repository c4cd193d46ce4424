"""Synaptic operation counts and energy of a spiking network from measured spike activity (`realspike energy`).

Spikes are counted by forward hooks on every neuron; what each spike reaches comes from the model's fx graph.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from realspike_cli.core.energy_counts import (  # noqa: F401  (EnergyReport: re-exported, its historical home)
    AnnLayer,
    EnergyReport,
    FormCount,
    LayerCount,
    NeuronCount,
    neuron_traits,
)
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.graph import MAX_POOLS, SYNAPSES, ModelGraph, SpikeTerm, is_spiking_neuron, trace
from realspike_cli.core.neuron import RealSpike
from realspike_cli.core.spike_recorder import SpikeRecorder
from realspike_cli.core.synapses import FactorizedSynapse, MaterializedSynapse, SharedSynapse
from realspike_cli.core.synops import SynOp, fanout, op_of, path_shape

# --- the graph: which spikes reach which synapses -----------------------------------------------------------


@dataclass
class _Term:
    """Spikes of one event source reaching a layer through `path`; `coeff` is the a they carry (None: binary),
    `multiply` whether the model as given multiplies each spike by it (training form: a·o)."""

    source: str
    path: tuple[nn.Module, ...] = ()
    coeff: torch.Tensor | None = None
    multiply: bool = False
    fanout: torch.Tensor | None = None


@dataclass
class _Consumer:
    name: str
    kind: str
    input: str
    terms: list[_Term] = field(default_factory=list)
    fixed_macs: float = 0.0  # analog input or BatchNorm: independent of the spikes
    ann_macs: float = 0.0
    ann_acs: float = 0.0
    shared: int = 0
    unshared: int = 0
    needed: bool = False
    rows: int = 1
    outputs: int = 0
    inputs: int = 0
    bias: int = 0
    coeffs: int = 0
    conv: bool = False
    taps: int = 0
    ann_inputs: int = 0
    ann_outputs: int = 0
    ann_bias: int = 0
    ann_weights: int = 0  # the ANN's kernel: one per layer (a SharedSynapse stores one per source)


def _varies(a: torch.Tensor | None) -> bool:
    """True for coefficients that change over positions (element-wise): folding them unshares the kernel."""
    return a is not None and a.dim() > 1 and a[0].numel() > 1


class SynapseGraph:
    """The synaptic structure of a model: event sources (neurons, max-pooled spikes) and every consumer."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        self.gm = trace(model, doing="count operations")  # shares the model's modules
        ShapeProp(self.gm).propagate(example[:1])  # one sample: every shape[0] is rows per image
        self.g = ModelGraph(self.gm)
        self.sources: dict[str, tuple[str, tuple[nn.Module, ...], tuple[int, ...]]] = {}
        self.consumers: list[_Consumer] = []
        for node in self.gm.graph.nodes:
            self.visit(node)

    def mod(self, node: Any) -> nn.Module | None:
        return self.g.module(node)

    @staticmethod
    def shape(node: fx.Node) -> tuple[int, ...]:
        return tuple(node.meta["tensor_meta"].shape)

    def source(self, neuron: str, prefix: tuple[nn.Module, ...], shape: tuple[int, ...]) -> str:
        """Register spikes (or max-pooled spikes, still binary) as an event source; returns its key."""
        key = " → ".join([neuron, *(f"{type(p).__name__}({p.extra_repr()})" for p in prefix)])
        self.sources[key] = (neuron, prefix, path_shape(shape, prefix) if prefix else shape)
        return key

    def event_sources(self) -> dict[str, tuple[str, tuple[nn.Module, ...]]]:
        return {key: (neuron, prefix) for key, (neuron, prefix, _) in self.sources.items()}

    def collect(self, arg: Any) -> tuple[list[_Term], bool]:
        """The spike terms a layer's input sums (core.graph's walk), and whether a non-spike value joins them."""
        found = self.g.spike_inputs(arg)
        return [self.term(t) for t in found.terms], bool(found.others)

    def term(self, t: SpikeTerm) -> _Term:
        """Max pooling of binary spikes is binary: the spikes after the last max pool are the events."""
        modules = tuple(self.g.path_module(p) for p in t.path)
        cut = max((i + 1 for i, m in enumerate(modules) if isinstance(m, MAX_POOLS)), default=0)
        key = self.source(str(t.source.target), modules[:cut], self.shape(t.source)[1:])
        scale = None if t.coeff is None else self.g.modules[t.coeff.target]
        coeff = None if scale is None else scale.a.detach()
        return _Term(key, modules[cut:], coeff, isinstance(scale, RealSpike))

    def visit(self, node: fx.Node) -> None:
        m = self.mod(node)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            self.weighted(node, m)
        elif isinstance(m, SYNAPSES):
            self.synapse(node, m)
        elif is_spiking_neuron(m):
            if m.norm is not None:  # MPBN, training form: its membrane BatchNorm, one MAC per element per step
                self.consumers.append(_Consumer(f"{node.target}.norm", "batchnorm", "elements",
                                                fixed_macs=math.prod(self.shape(node))))
            terms, _ = self.collect(node.args[0])
            if terms:  # spikes added straight into this neuron's input: an identity synapse each
                a = sum(t.coeff.numel() for t in terms if t.coeff is not None)
                c = _Consumer(f"{node.target} (identity)", "identity", "spikes", shared=a, unshared=a)
                self.place(c, node, node)
                c.ann_acs = c.ann_inputs  # an ANN adds the shortcut once per element
                c.coeffs = sum(t.coeff.numel() for t in terms if t.multiply)
                self.add_terms(c, terms, SynOp("identity"))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = _Consumer(str(node.target), "batchnorm", "elements", fixed_macs=math.prod(self.shape(node)))
            self.place(c, node, node)
            c.bias = m.num_features  # its folded scale and shift: two parameters per channel
            self.consumers.append(c)

    def place(self, c: _Consumer, node: fx.Node, source: Any) -> None:
        """Rows per image, output and input elements per row of a layer (its ANN twin: the same, once)."""
        out = self.shape(node)
        c.rows, c.outputs = out[0], math.prod(out[1:])
        c.inputs = math.prod(self.shape(source)[1:]) if isinstance(source, fx.Node) else c.outputs
        c.ann_inputs, c.ann_outputs = c.inputs, c.outputs

    def folded_bias(self, node: fx.Node, m: nn.Module) -> int:
        """The bias a deployed ANN adds after this layer: its own, or a BatchNorm's folded into it."""
        bn = [u for u in node.users if isinstance(self.mod(u), nn.modules.batchnorm._BatchNorm)]
        return self.mod(bn[0]).num_features if bn else (0 if m.bias is None else m.bias.numel())

    def add_terms(self, c: _Consumer, terms: list[_Term], op: SynOp | list[SynOp]) -> None:
        ops = op if isinstance(op, list) else [op] * len(terms)
        for t, o in zip(terms, ops, strict=True):
            t.fanout = fanout(self.sources[t.source][2], t.path, o)
            c.unshared += int(t.fanout.sum()) if o.kind != "identity" else 0
            c.needed = c.needed or _varies(t.coeff)
        c.terms = terms
        if any(t.multiply for t in terms):
            c.input = "a·spikes"
        self.consumers.append(c)

    def weighted(self, node: fx.Node, m: nn.Module) -> None:
        terms, analog = self.collect(node.args[0])
        in_shape, op = self.shape(node.args[0]), op_of(m)
        dense = float(fanout(in_shape[1:], [], op).sum())
        kind = "conv" if op.kind == "conv" else "linear"
        c = _Consumer(str(node.target), kind, "spikes", ann_macs=dense, shared=m.weight.numel())
        self.place(c, node, node.args[0])
        c.bias, c.ann_bias, c.conv = 0 if m.bias is None else m.bias.numel(), self.folded_bias(node, m), kind == "conv"
        c.taps = m.out_channels * math.prod(m.kernel_size) if isinstance(m, nn.Conv2d) else 0
        c.ann_weights = c.shared
        if analog or not terms:  # e.g. the stem on the image: every input is a multiply
            c.input, c.fixed_macs, c.unshared = "analog", dense * in_shape[0], c.shared
            self.consumers.append(c)
        else:
            c.coeffs = sum(t.coeff.numel() for t in terms if t.multiply)
            self.add_terms(c, terms, op)

    def synapse(self, node: fx.Node, m: nn.Module) -> None:
        """Inference-form synapse modules: one binary spike source per argument, each with its own path."""
        terms, ops = [], []
        for i, arg in enumerate(node.args):
            found, analog = self.collect(arg)
            if analog or len(found) != 1:
                raise ConfigError(f"cannot count {node.target}: its input {i} is not one neuron's spikes")
            t = found[0]
            path: tuple[nn.Module, ...] = () if isinstance(m, MaterializedSynapse) else tuple(m.paths[i])
            cut = max((j + 1 for j, p in enumerate(path) if isinstance(p, MAX_POOLS)), default=0)
            if cut:  # max pooling inside the synapse: its (binary) output is the event source
                neuron, prefix, shape = self.sources[t.source]
                t.source = self.source(neuron, (*prefix, *path[:cut]), shape)
            t.path = path[cut:]
            if isinstance(m, FactorizedSynapse):
                t.coeff = m.coeffs[i].detach()
            terms.append(t)
            ops.append(op_of(m.branches[i] if isinstance(m, MaterializedSynapse) else m, i))
        stored = sum(p.numel() for n, p in m.named_parameters() if "weight" in n)
        kind = "conv" if ops[0].kind == "conv" else "linear"
        storage = type(m).__name__.removesuffix("Synapse").lower()
        c = _Consumer(str(node.target), f"{kind} ({storage})", "spikes", shared=stored)
        self.add_terms(c, terms, ops)
        c.needed = c.needed or isinstance(m, MaterializedSynapse)
        first = terms[0]
        ann_in = path_shape(self.sources[first.source][2], first.path)  # the ANN runs the shared op once
        c.ann_macs = float(fanout(ann_in, [], ops[0]).sum()) if ops[0].kind != "dense" else float(first.fanout.sum())
        self.place(c, node, None)
        c.inputs = c.ann_inputs = math.prod(ann_in)
        bias = getattr(m, "bias", None)
        c.bias = c.ann_bias = 0 if bias is None else bias.numel()
        c.coeffs = sum(a.numel() for a in m.coeffs) if isinstance(m, FactorizedSynapse) else 0
        c.conv = kind == "conv"
        c.ann_weights = m.weights[0].numel() if isinstance(m, SharedSynapse) else stored


# --- measuring: spikes recorded by core.spike_recorder ---------------------------------------------------


def _form_count(form: str, model: nn.Module, graph: SynapseGraph, rec: SpikeRecorder, images: int) -> FormCount:
    n = max(images, 1)
    neurons = []
    for name, m in rec.neurons.items():
        traits = neuron_traits(m)
        neurons.append(NeuronCount(name, math.prod(rec.shapes.get(name, ())), m.time_steps, rec.spikes[name] / n,
                                   rec.spikes[name] / max(rec.steps[name], 1), traits.spike_values,
                                   traits.state_words, traits.leaky))
    return FormCount(form, images, sum(p.numel() for p in model.parameters()), neurons,
                     [_layer_count(c, rec, n) for c in graph.consumers])


def _layer_count(c: _Consumer, rec: SpikeRecorder, n: int) -> LayerCount:
    acs = macs = events = coeff_events = coeff_synops = 0.0
    for t in c.terms:
        events_map = rec.maps[t.source].cpu() if t.source in rec.maps else torch.zeros(())
        ops = float((events_map * t.fanout).sum()) / n
        arrived = float(events_map.sum()) / n
        events += arrived
        acs, macs = (acs, macs + ops) if t.multiply else (acs + ops, macs)
        if t.coeff is not None:
            coeff_events, coeff_synops = coeff_events + arrived, coeff_synops + ops
    return LayerCount(
        c.name, c.kind, c.input, events, acs, macs + c.fixed_macs, c.ann_macs, c.ann_acs, c.shared, c.unshared,
        c.needed, rows=c.rows, outputs=c.outputs, inputs=c.inputs, bias=c.bias, coeffs=c.coeffs,
        coeff_events=coeff_events, coeff_synops=coeff_synops, synops=acs + macs, conv=c.conv, taps=c.taps,
        ann_inputs=c.ann_inputs, ann_outputs=c.ann_outputs, ann_bias=c.ann_bias,
    )


Progress = Callable[[int, int], None]  # (batches done, batches in all), called after every batch


@torch.no_grad()
def count_forms(models: dict[str, nn.Module], batches: Iterable[torch.Tensor], *,
                progress: Progress | None = None) -> list[FormCount]:
    """Run every model (eval mode) on the same input batches and count spikes and operations per image."""
    graphs: dict[str, SynapseGraph] = {}
    recorders: dict[str, SpikeRecorder] = {}
    images = 0
    batches = list(batches)
    with contextlib.ExitStack() as hooks:
        for done, x in enumerate(batches, 1):
            for form, model in models.items():
                p = next(model.parameters())
                x_form = x.to(device=p.device, dtype=p.dtype)
                if form not in graphs:
                    graphs[form] = SynapseGraph(model.eval(), x_form)
                    recorder = SpikeRecorder(model, event_maps=graphs[form].event_sources())
                    recorders[form] = hooks.enter_context(recorder)
                model(x_form)
            images += len(x)
            if progress is not None:
                progress(done, len(batches))
    if not images:
        raise ConfigError("no input batches to measure")
    return [_form_count(f, models[f], graphs[f], recorders[f], images) for f in models]


def ann_layers(model: nn.Module, example: torch.Tensor) -> list[AnnLayer]:
    """The layers of the same network as an ANN: every synapse multiplies an analog activation, residual
    shortcuts add one value per element; BatchNorm is folded into the layer before it."""
    p = next(model.parameters())
    graph = SynapseGraph(model.eval(), example.to(device=p.device, dtype=p.dtype))
    return [AnnLayer(c.name, c.kind.split(" ")[0], c.input == "analog", c.ann_macs, c.ann_acs, c.ann_inputs,
                     c.ann_outputs, c.ann_weights, c.ann_bias, c.taps)
            for c in graph.consumers if c.kind != "batchnorm"]


def ann_cost(model: nn.Module, example: torch.Tensor) -> tuple[float, float]:
    """(MACs, additions) per image of the same network as an ANN (`ann_layers`)."""
    layers = ann_layers(model, example)
    return sum(x.macs for x in layers), sum(x.adds for x in layers)
