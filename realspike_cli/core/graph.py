"""The model's torch.fx graph and the one vocabulary of ops that spikes pass through (reparam, energy and the
NIR export are passes over it).

Tracing keeps neurons, Real Spike coefficients and the inference-form synapse modules as leaves. Between a
neuron and the layer that consumes its spikes there may be identities (eval-mode dropout), linear "path"
ops (average/max pooling, flatten(1)) and additions; `ModelGraph.spike_inputs` walks back over exactly these
to write a layer's input as a sum of spike terms path(a ⊙ o).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils import parametrize

from realspike_cli.core.errors import ConfigError, RealSpikeError
from realspike_cli.core.neuron import LIFNeuron, RealSpike
from realspike_cli.core.synapses import FactorizedSynapse, MaterializedSynapse, SharedSynapse, SynapticScale

NEURONS = (LIFNeuron,)  # every kind of spiking neuron; `is_spiking_neuron` is the one test for it
COEFFICIENTS = (RealSpike, SynapticScale)  # a·o on a neuron's spikes: training form, and inference shortcut
SYNAPSES = (SharedSynapse, FactorizedSynapse, MaterializedSynapse)  # inference-form layers reading spikes
LEAVES = (*NEURONS, *COEFFICIENTS, *SYNAPSES)
WEIGHTED = (nn.Conv2d, nn.Linear)
# Identities in eval mode (every conversion, count and export runs the model in eval mode).
IDENTITY_MODULES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
AVG_POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
MAX_POOLS = (nn.MaxPool2d, nn.AdaptiveMaxPool2d)  # max of spikes is a spike; max(a·s) = a·max(s) for a ≥ 0
POOLS = (*AVG_POOLS, *MAX_POOLS)
ADDS = (operator.add, torch.add)  # `x += y` traces as operator.add too
TIME_METHODS = ("repeat", "unflatten", "mean", "transpose")  # SpikingNetwork's folding of time into the batch


def is_spiking_neuron(module: Any) -> bool:
    """True for a module that emits spikes: a LIFNeuron (also the IF neuron, the MPBN neuron and the folded
    ThresholdLIF), whose alphabet is `.spike_values`: {0, 1}, or {−1, 0, 1} for ternary spikes."""
    return isinstance(module, NEURONS)


def is_add(node: fx.Node) -> bool:
    """x + y, torch.add(x, y) or x.add(y), without an `alpha` that would scale one side."""
    if node.kwargs or len(node.args) != 2:
        return False
    return (node.op == "call_function" and node.target in ADDS) or (node.op == "call_method" and node.target == "add")


def is_flatten(node: fx.Node, module: nn.Module | None = None) -> bool:
    """Flatten everything but the batch: nn.Flatten(1, -1), torch.flatten(x, 1) or x.flatten(1)."""
    if module is not None:
        return isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) == (1, -1)
    fn = (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    )
    if not fn:
        return False
    dims = (*node.args[1:], *(node.kwargs[k] for k in ("start_dim", "end_dim") if k in node.kwargs))
    return set(node.kwargs) <= {"start_dim", "end_dim"} and tuple(dims) in ((1,), (1, -1))


def is_time_plumbing(node: fx.Node) -> bool:
    """The reshapes SpikingNetwork folds time into the batch with: repeat, unflatten, mean, flatten(0, 1)."""
    if node.op != "call_method":
        return False
    return node.target in TIME_METHODS or (node.target == "flatten" and tuple(node.args[1:]) == (0, 1))


def is_training_form(model: nn.Module) -> bool:
    """True while there is something to fold: a Real Spike coefficient or a BatchNorm layer."""
    return any(isinstance(m, (RealSpike, nn.modules.batchnorm._BatchNorm)) for m in model.modules())


def weight_wrappers(model: nn.Module) -> list[tuple[str, str, bool]]:
    """(layer, what wraps its weights, hook-based) for layers whose weights are computed on every call:
    torch.nn.utils.parametrize (parametrizations.spectral_norm / weight_norm / any parametrization) or the
    old hook-based torch.nn.utils.weight_norm / spectral_norm (their copies cannot even be deep-copied)."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    found = []
    for name, m in model.named_modules():
        if parametrize.is_parametrized(m):
            kinds = {type(p).__name__ for plist in m.parametrizations.values() for p in plist}
            tensors = ", ".join(m.parametrizations)
            found.append((name, f"a parametrization ({', '.join(sorted(kinds))}) of {tensors}", False))
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, (WeightNorm, SpectralNorm)):
                old = "weight_norm" if isinstance(hook, WeightNorm) else "spectral_norm"
                found.append((name, f"torch.nn.utils.{old} (hook-based) of {hook.name}", True))
    return found


def refuse_weight_wrappers(model: nn.Module, error: type[RealSpikeError], doing: str, *, hooks_only: bool) -> None:
    """Raise `error` naming the first wrapped layer (only hook-based ones if `hooks_only`)."""
    for name, what, hook in weight_wrappers(model):
        if hook or not hooks_only:
            undo = "torch.nn.utils.remove_weight_norm / remove_spectral_norm" if hook else (
                "torch.nn.utils.parametrize.remove_parametrizations(layer, 'weight')")
            raise error(
                f"cannot {doing}: layer {name or type(model).__name__} computes its weights through {what}; "
                f"bake them in first with {undo}"
            )


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, *, error: type[RealSpikeError] = ConfigError, doing: str = "",
          class_name: str | None = None) -> fx.GraphModule:
    """A GraphModule over `model`'s own submodules (not copies), neurons/coefficients/synapses as leaves."""
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types; the user needs the first line only
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        purpose = f" to {doing}" if doing else ""
        raise error(f"cannot trace {type(model).__name__} with torch.fx{purpose}: {msg}") from None
    return fx.GraphModule(model, graph, class_name=class_name or type(model).__name__)


@dataclass(frozen=True)
class SpikeTerm:
    """One summand path(a ⊙ o) of a layer's input: a neuron's spikes o, the coefficient node that scales them
    (RealSpike or SynapticScale; None: binary), and the path ops from there to the layer, in order."""

    source: fx.Node
    coeff: fx.Node | None
    path: tuple[fx.Node, ...]


@dataclass
class SpikeInputs:
    """A layer's input as Σ terms + others; `mixed_max_pools`: max pools met over a sum (not spike terms)."""

    terms: list[SpikeTerm] = field(default_factory=list)
    others: list[Any] = field(default_factory=list)
    mixed_max_pools: list[fx.Node] = field(default_factory=list)

    def __add__(self, other: SpikeInputs) -> SpikeInputs:
        return SpikeInputs(self.terms + other.terms, self.others + other.others,
                           self.mixed_max_pools + other.mixed_max_pools)


class ModelGraph:
    """A traced model with its modules by name: the op vocabulary and the walk back to spike sources."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())

    def module(self, node: Any) -> nn.Module | None:
        if isinstance(node, fx.Node) and node.op == "call_module":
            return self.modules[node.target]
        return None

    def nodes_of(self, kinds: type | tuple[type, ...]) -> list[fx.Node]:
        return [n for n in self.gm.graph.nodes if isinstance(self.module(n), kinds)]

    def pass_kind(self, node: fx.Node) -> str | None:
        """'identity', 'path' (pooling and flatten(1): linear ops spikes can be carried through), or None."""
        m = self.module(node)
        if isinstance(m, IDENTITY_MODULES):
            return "identity"
        if isinstance(m, POOLS) or is_flatten(node, m):
            return "path"
        return None

    def path_module(self, node: fx.Node) -> nn.Module:
        """The module of a path node; the only function a path can hold is flatten(1)."""
        m = self.module(node)
        return m if m is not None else nn.Flatten()

    def describe(self, node: fx.Node) -> str:
        """A node in words for error messages: 'Conv2d body.3', 'mul (node mul in squash)', 'the model output'."""
        if node.op == "output":
            return "the model output"
        m = self.module(node)
        if m is not None:
            return f"{type(m).__name__} {node.target}"
        name = getattr(node.target, "__name__", str(node.target))
        where = list((node.meta.get("nn_module_stack") or {}).values())
        inside = f" in {where[-1][0]}" if where else ""
        return f"{name} (node {node.name}{inside})"

    def spike_source(self, arg: Any) -> fx.Node | None:
        """The neuron whose spikes `arg` is (through identities), or None."""
        while isinstance(arg, fx.Node) and self.pass_kind(arg) == "identity":
            arg = arg.args[0]
        return arg if is_spiking_neuron(self.module(arg)) else None

    def spike_inputs(self, arg: Any, path: tuple[fx.Node, ...] = ()) -> SpikeInputs:
        """Walk back from a layer's input through identities, path ops and additions to the spike terms."""
        if not isinstance(arg, fx.Node):
            return SpikeInputs(others=[] if isinstance(arg, (int, float)) and arg == 0 else [arg])
        m = self.module(arg)
        if is_spiking_neuron(m):
            return SpikeInputs([SpikeTerm(arg, None, path)])
        if isinstance(m, COEFFICIENTS):
            source = self.spike_source(arg.args[0])
            return SpikeInputs([SpikeTerm(source, arg, path)]) if source is not None else SpikeInputs(others=[arg])
        if is_add(arg):
            return self.spike_inputs(arg.args[0], path) + self.spike_inputs(arg.args[1], path)
        kind = self.pass_kind(arg)
        if kind is None:
            return SpikeInputs(others=[arg])
        inner = self.spike_inputs(arg.args[0], path if kind == "identity" else (arg, *path))
        if isinstance(m, MAX_POOLS) and inner.terms and (len(inner.terms) > 1 or inner.others):
            return SpikeInputs(others=[arg], mixed_max_pools=[*inner.mixed_max_pools, arg])  # no Σ through max
        return inner

    def coefficient(self, term: SpikeTerm) -> torch.Tensor | None:
        return None if term.coeff is None else self.modules[term.coeff.target].a.detach()
