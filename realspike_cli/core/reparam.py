"""The inference form (paper Sec. 3.3, Eq. 9–13): fold BatchNorm and every Real Spike coefficient a into the
weights of the layers that consume the spikes, so every neuron emits plain spikes again — {0, 1}, or
{−1, 0, 1} for ternary spikes — and outputs are unchanged. An MPBN neuron's membrane BatchNorm becomes
per-channel thresholds of a plain LIF neuron (`threshold_neuron.ThresholdLIF`).

`core.reparam_plan` decides what folds where (a pass over `core.graph`); this module rewrites a copy.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from realspike_cli.core.errors import ReparamError
from realspike_cli.core.graph import ModelGraph, refuse_weight_wrappers, trace
from realspike_cli.core.membrane_plan import MembraneFold
from realspike_cli.core.neuron import RealSpike
from realspike_cli.core.reparam_plan import Consumer, Fold, Planner
from realspike_cli.core.spike_recorder import SpikeRecorder
from realspike_cli.core.synapses import (
    FactorizedSynapse,
    MaterializedSynapse,
    SharedSynapse,
    SynapticScale,
    fold_batchnorm,
    materialize_conv,
    materialize_linear,
    scale_inputs,
    set_weight,
)

RULES = {
    "batchnorm": "BatchNorm (running statistics) folded into the weights and bias",
    "binary": "spikes without a coefficient (binary or ternary) in: unchanged",
    "scale-inputs": "coefficients folded into the input channels/columns of the shared weights",
    "per-source-shared": "one rescaled shared kernel per spike source, summed",
    "factorized": "unshared synapses a[pos]·K stored as (K, a); computes op(Σ path(a ⊙ o))",
    "materialized": "unshared synapses stored explicitly, one kernel per output position",
    "synaptic-scale": "identity connection into a neuron: each spike adds the constant a",
    "membrane-threshold": "MPBN's membrane BatchNorm as per-channel thresholds; channels with γ < 0 negate "
    "their inputs, γ = 0 ones are constant",
}

__all__ = ["RULES", "EquivalenceReport", "Fold", "check_equivalence", "plan_folds", "to_inference", "weight_layout"]


@dataclass
class EquivalenceReport:
    """Training form vs inference form on the same inputs, both run in float64.

    `spikes_in_alphabet`: every neuron emitted only values of its own alphabet ({0, 1}, or {−1, 0, 1} for
    ternary spikes) and no Real Spike coefficient was left; `outside_alphabet_layers` names the others.
    `spikes_binary` / `non_binary_layers` say the same of {0, 1} literally (False for a correct ternary net).
    """

    max_abs_diff: float
    logit_scale: float
    relative_diff: float
    agreement: float
    spikes_binary: bool
    non_binary_layers: list[str] = field(default_factory=list)
    spikes_in_alphabet: bool = True
    outside_alphabet_layers: list[str] = field(default_factory=list)
    spike_alphabets: list[list[float]] = field(default_factory=list)  # the distinct alphabets of its neurons

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Converter:
    """The plan on an fx graph of a deep copy, then the rewrite (`convert`) of that copy."""

    def __init__(self, model: nn.Module, materialize: bool, check_values: bool) -> None:
        refuse_weight_wrappers(model, ReparamError, "re-parameterize", hooks_only=False)
        root = copy.deepcopy(model).eval()
        self.gm = trace(root, error=ReparamError, class_name=f"{type(model).__name__}Inference")
        for attr in ("spec", "time_steps"):  # plain metadata of SpikingNetwork, kept for callers
            if hasattr(root, attr) and not isinstance(getattr(root, attr), (nn.Module, torch.Tensor)):
                setattr(self.gm, attr, getattr(root, attr))
        self.g = ModelGraph(self.gm)
        self.modules = self.g.modules
        self.planner = Planner(self.g, materialize, check_values)

    def convert(self) -> fx.GraphModule:
        plan = self.planner.plan()
        bns, consumers, kept = plan.batchnorms, plan.consumers, plan.kept
        graph = self.gm.graph
        for layer_node, bn_node in bns:
            fold_batchnorm(self.modules[layer_node.target], self.modules[bn_node.target])
            bn_node.replace_all_uses_with(layer_node)
            graph.erase_node(bn_node)
        scale_signs = {}  # kept RealSpike -> the channel signs of the MPBN neuron it feeds
        for mf in plan.membranes:  # before the consumers are rewritten: they read these layers' weights
            for leaf in mf.inputs:
                if leaf.kind == "weighted":
                    sign_outputs(self.g.module(leaf.node), mf.sign)
                elif leaf.kind == "scale":
                    scale_signs[leaf.node] = mf.sign_view()
        for c in consumers:
            if c.rule == "scale-inputs":
                self.rewrite_scaled(c)
            elif c.rule != "binary":
                self.rewrite_synapse(c)
        graph.eliminate_dead_code()
        for node in graph.nodes:
            if isinstance(self.g.module(node), RealSpike):
                assert node in kept, node  # every other RealSpike output was consumed by a rewritten layer
                a = self.modules[node.target].a.detach()
                if node in scale_signs:
                    a = (a.double() * scale_signs[node].to(a.device)).to(a.dtype)
                self.gm.add_submodule(str(node.target), SynapticScale(a))
        for mf in plan.membranes:
            self.rewrite_membrane(mf)
        graph.eliminate_dead_code()  # a pooling whose only user now reads the replayed one
        self.gm.delete_all_unused_submodules()
        graph.lint()
        self.gm.recompile()
        return self.gm

    def rewrite_membrane(self, mf: MembraneFold) -> None:
        """The MPBN neuron becomes its ThresholdLIF; spikes entering it without a coefficient are scaled by
        a SynapticScale(sign) on their own edge (the pooling on that edge replayed after it)."""
        graph, target = self.gm.graph, str(mf.neuron.target)
        edges = list(dict.fromkeys((leaf.node, leaf.user, leaf.path) for leaf in mf.inputs if leaf.kind == "spikes"))
        for i, (source, user, path) in enumerate(edges):
            name = f"{target}_input_sign{i if len(edges) > 1 else ''}"
            self.gm.add_submodule(name, SynapticScale(mf.sign_view().to(mf.folded.upper)))
            with graph.inserting_before(user):
                x = graph.call_module(name, (source,))
                for p in path:
                    x = graph.create_node(p.op, p.target, (x, *p.args[1:]), dict(p.kwargs))
            user.replace_input_with(path[-1] if path else source, x)
        self.gm.add_submodule(target, mf.folded)

    def rewrite_scaled(self, c: Consumer) -> None:
        """Single source, a constant over the shared positions: rescale the layer's inputs, keep the path."""
        layer, (term,) = self.g.module(c.node), c.terms
        set_weight(layer, scale_inputs(layer, self.planner.shared_scale(c.node, term)))
        x = term.source
        with self.gm.graph.inserting_before(c.node):
            for p in term.path:  # replay the pooling/flatten on the binary spikes
                x = self.gm.graph.create_node(p.op, p.target, (x, *p.args[1:]), dict(p.kwargs), name=p.name)
        c.node.args = (x,)

    def rewrite_synapse(self, c: Consumer) -> None:
        layer = self.g.module(c.node)
        paths = [[copy.deepcopy(self.g.path_module(p)) for p in t.path] for t in c.terms]
        weight = layer.weight.detach().double()
        bias = None if layer.bias is None else layer.bias.detach().double()
        if c.rule == "per-source-shared":
            weights = [scale_inputs(layer, self.planner.shared_scale(c.node, t)) for t in c.terms]
            new: nn.Module = SharedSynapse(layer, weights, bias, paths)
        elif c.rule == "factorized":
            one = weight.new_ones(())  # a binary source among real-valued ones (user models)
            coeffs = [one if self.g.coefficient(t) is None else self.g.coefficient(t) for t in c.terms]
            new = FactorizedSynapse(layer, weight, bias, [a.double() for a in coeffs], paths)
        else:
            branches = []
            for t, path in zip(c.terms, paths, strict=True):
                a = self.g.coefficient(t).double()
                if isinstance(layer, nn.Conv2d):
                    branches.append(materialize_conv(layer, weight, a, path[0] if path else None))
                else:
                    branches.append(materialize_linear(weight, a, nn.Sequential(*path)))
            new = MaterializedSynapse(branches, bias)
        self.gm.add_submodule(str(c.node.target), new.to(layer.weight.dtype))
        c.node.args = tuple(t.source for t in c.terms)


def sign_outputs(layer: nn.Module, sign: torch.Tensor) -> None:
    """Multiply a conv/linear layer's output channel c (weights and bias, created if missing) by sign[c]."""
    w = layer.weight.detach().double()
    s = sign.to(device=w.device, dtype=w.dtype)
    bias = torch.zeros_like(s) if layer.bias is None else layer.bias.detach().double()
    set_weight(layer, w * s.view(-1, *([1] * (w.dim() - 1))), bias * s)


def to_inference(model: nn.Module, *, materialize: bool = False, check_values: bool = True) -> nn.Module:
    """A new module computing the same outputs as `model` in eval mode with plain spikes only (Eq. 9–13):
    {0, 1}, or {−1, 0, 1} from ternary neurons; MPBN neurons become `ThresholdLIF`s.

    `model` is left untouched. The structure depends only on the architecture, the spike setting and
    `materialize`; `check_values=False` skips the value-dependent checks (coefficient signs before a max
    pool, MPBN channel signs that an input cannot carry), for rebuilding the structure that a saved
    inference state_dict is loaded into.
    """
    with torch.inference_mode(False):  # materializing takes a VJP, which inference mode would forbid
        return _Converter(model, materialize, check_values).convert()


def plan_folds(model: nn.Module, *, materialize: bool = False) -> list[Fold]:
    """What `to_inference` would fold, in graph order; raises ReparamError for what it would refuse."""
    return _Converter(model, materialize, check_values=True).planner.plan().folds


def weight_layout(model: nn.Module) -> str:
    """'materialized' or 'factorized' if any layer stores unshared synapses that way, else 'shared'."""
    kinds = {type(m) for m in model.modules()}
    if MaterializedSynapse in kinds:
        return "materialized"
    return "factorized" if FactorizedSynapse in kinds else "shared"


def check_equivalence(
    train_model: nn.Module, inference_model: nn.Module, inputs: torch.Tensor
) -> EquivalenceReport:
    """Run both on `inputs` as float64 copies (eval mode) and compare logits; record every layer whose
    emitted spikes are outside its alphabet (neurons: {0, 1} or, ternary, {−1, 0, 1}; any RealSpike left in
    `inference_model` emits a·s) and, literally, every layer not in {0, 1}."""
    ref = copy.deepcopy(train_model).double().eval()
    inf = copy.deepcopy(inference_model).double().eval()
    device = next((p.device for p in inf.parameters()), torch.device("cpu"))
    x = inputs.to(device=device, dtype=torch.float64)
    with torch.no_grad(), SpikeRecorder(inf, check_alphabet=True) as recorder:
        want, got = ref(x), inf(x)
    non_binary, outside = recorder.non_binary, recorder.outside_alphabet
    alphabets = sorted({m.spike_values for m in recorder.neurons.values()})
    diff, scale = float((want - got).abs().max()), float(want.abs().max())
    agreement = float((want.argmax(-1) == got.argmax(-1)).double().mean())
    return EquivalenceReport(diff, scale, diff / max(scale, 1e-300), agreement, not non_binary, non_binary,
                             not outside, outside, [list(a) for a in alphabets])
