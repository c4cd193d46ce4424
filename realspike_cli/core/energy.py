"""Synaptic operation counts and energy of a spiking network from measured spike activity (`realspike energy`).

Spikes are counted by forward hooks on every neuron; what each spike reaches comes from the model's fx graph.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from realspike_cli.core.energy_profiles import EnergyProfile
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.graph import MAX_POOLS, SYNAPSES, ModelGraph, SpikeTerm, is_spiking_neuron, trace
from realspike_cli.core.neuron import RealSpike
from realspike_cli.core.spike_recorder import SpikeRecorder
from realspike_cli.core.synapses import FactorizedSynapse, MaterializedSynapse
from realspike_cli.core.synops import SynOp, fanout, op_of, path_shape

# --- results ------------------------------------------------------------------------------------------------


@dataclass
class NeuronCount:
    """One neuron layer, per image: spikes over all T steps; rate = spikes per neuron per step."""

    name: str
    neurons: int
    time_steps: int
    spikes: float
    rate: float


@dataclass
class LayerCount:
    """One synaptic layer, per image. `input`: spikes (each spike an AC per synapse), a·spikes (training form:
    a MAC per synapse), analog (dense MACs) or elements (BatchNorm, one MAC per element)."""

    name: str
    kind: str
    input: str
    events: float
    acs: float
    macs: float
    ann_macs: float
    ann_acs: float
    shared_weights: int
    unshared_weights: int
    unshared_needed: bool

    def energy_pj(self, p: EnergyProfile) -> float:
        return p.e_mac_pj * self.macs + p.e_ac_pj * self.acs


@dataclass
class FormCount:
    """Everything counted for one form of a model over `images` inputs; all numbers are per image."""

    form: str
    images: int
    parameters: int
    neurons: list[NeuronCount] = field(default_factory=list)
    layers: list[LayerCount] = field(default_factory=list)

    def total(self, attr: str) -> float:
        return float(sum(getattr(layer, attr) for layer in self.layers))

    def totals(self, p: EnergyProfile, ann_energy_pj: float) -> dict[str, float]:
        energy = sum(layer.energy_pj(p) for layer in self.layers)
        analog = sum(layer.macs for layer in self.layers if layer.input in ("analog", "elements"))
        # The training form multiplies a·o through shared kernels; binary spikes through fixed weights (the
        # inference form, however it is stored) need one weight per synapse where a varies by position.
        needed = sum(
            x.unshared_weights if x.unshared_needed and self.form != "train" else x.shared_weights
            for x in self.layers
        )
        return {
            "spikes": sum(n.spikes for n in self.neurons), "events": self.total("events"),
            "acs": self.total("acs"), "macs": self.total("macs"), "macs_on_analog_inputs": analog,
            "energy_pj": energy, "energy_uj": energy * 1e-6,
            "ann_ratio": energy / ann_energy_pj if ann_energy_pj else float("nan"),
            "parameters": self.parameters, "weights_shared": int(self.total("shared_weights")),
            "weights_unshared": int(self.total("unshared_weights")), "weights_needed": needed,
        }


@dataclass
class EnergyReport:
    """Counts of each form measured on the same inputs, the ANN baseline and the energy profile."""

    profile: EnergyProfile
    forms: list[FormCount]
    ann_macs: float
    ann_acs: float
    inputs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ann_energy_pj(self) -> float:
        return self.profile.e_mac_pj * self.ann_macs + self.profile.e_ac_pj * self.ann_acs

    def to_dict(self) -> dict[str, Any]:
        forms = {}
        for f in self.forms:
            layers = [{**asdict(x), "energy_pj": x.energy_pj(self.profile)} for x in f.layers]
            forms[f.form] = {"images": f.images, "totals": f.totals(self.profile, self.ann_energy_pj),
                             "neurons": [asdict(n) for n in f.neurons], "layers": layers}
        ann = {"macs": self.ann_macs, "acs": self.ann_acs, "energy_pj": self.ann_energy_pj}
        return {"profile": self.profile.to_dict(), "inputs": self.inputs, "ann": ann, "forms": forms,
                "notes": list(self.notes)}


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
                adds = math.prod(self.shape(node)[1:])  # an ANN adds the shortcut once per element
                c = _Consumer(f"{node.target} (identity)", "identity", "spikes", ann_acs=adds, shared=a, unshared=a)
                self.add_terms(c, terms, SynOp("identity"))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            self.consumers.append(_Consumer(str(node.target), "batchnorm", "elements",
                                            fixed_macs=math.prod(self.shape(node))))

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
        if analog or not terms:  # e.g. the stem on the image: every input is a multiply
            c.input, c.fixed_macs, c.unshared = "analog", dense * in_shape[0], c.shared
            self.consumers.append(c)
        else:
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


# --- measuring: spikes recorded by core.spike_recorder ---------------------------------------------------


def _form_count(form: str, model: nn.Module, graph: SynapseGraph, rec: SpikeRecorder, images: int) -> FormCount:
    n = max(images, 1)
    neurons = [NeuronCount(name, math.prod(rec.shapes.get(name, ())), m.time_steps, rec.spikes[name] / n,
                           rec.spikes[name] / max(rec.steps[name], 1)) for name, m in rec.neurons.items()]
    layers = []
    for c in graph.consumers:
        acs = macs = events = 0.0
        for t in c.terms:
            events_map = rec.maps[t.source].cpu() if t.source in rec.maps else torch.zeros(())
            ops = float((events_map * t.fanout).sum()) / n
            events += float(events_map.sum()) / n
            acs, macs = (acs, macs + ops) if t.multiply else (acs + ops, macs)
        layers.append(LayerCount(c.name, c.kind, c.input, events, acs, macs + c.fixed_macs, c.ann_macs, c.ann_acs,
                                 c.shared, c.unshared, c.needed))
    return FormCount(form, images, sum(p.numel() for p in model.parameters()), neurons, layers)


@torch.no_grad()
def count_forms(models: dict[str, nn.Module], batches: Iterable[torch.Tensor]) -> list[FormCount]:
    """Run every model (eval mode) on the same input batches and count spikes and operations per image."""
    graphs: dict[str, SynapseGraph] = {}
    recorders: dict[str, SpikeRecorder] = {}
    images = 0
    with contextlib.ExitStack() as hooks:
        for x in batches:
            for form, model in models.items():
                p = next(model.parameters())
                x_form = x.to(device=p.device, dtype=p.dtype)
                if form not in graphs:
                    graphs[form] = SynapseGraph(model.eval(), x_form)
                    recorder = SpikeRecorder(model, event_maps=graphs[form].event_sources())
                    recorders[form] = hooks.enter_context(recorder)
                model(x_form)
            images += len(x)
    if not images:
        raise ConfigError("no input batches to measure")
    return [_form_count(f, models[f], graphs[f], recorders[f], images) for f in models]


def ann_cost(model: nn.Module, example: torch.Tensor) -> tuple[float, float]:
    """(MACs, additions) per image of the same network as an ANN: ReLU for the neurons, one pass, BatchNorm
    folded; every synapse multiplies an analog activation, residual shortcuts add one value per element."""
    p = next(model.parameters())
    graph = SynapseGraph(model.eval(), example.to(device=p.device, dtype=p.dtype))
    return sum(c.ann_macs for c in graph.consumers), sum(c.ann_acs for c in graph.consumers)
