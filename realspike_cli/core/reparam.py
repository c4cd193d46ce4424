"""The inference form (paper Sec. 3.3, Eq. 9–13): fold BatchNorm and every Real Spike coefficient a into the
weights of the layers that consume the spikes, so every neuron emits binary spikes and outputs are unchanged.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from realspike_cli.core.errors import ReparamError
from realspike_cli.core.neuron import LIFNeuron, RealSpike, fold_support
from realspike_cli.core.synapses import (
    FactorizedSynapse,
    MaterializedSynapse,
    SharedSynapse,
    SynapticScale,
    disjoint_avgpool,
    fold_batchnorm,
    materialize_conv,
    materialize_linear,
    scale_inputs,
    set_weight,
)

POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d)
PATH_MODULES = (*POOLS, nn.Flatten)
IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)  # identities in eval mode
WEIGHTED = (nn.Conv2d, nn.Linear)
LEAVES = (LIFNeuron, RealSpike, SynapticScale, SharedSynapse, FactorizedSynapse, MaterializedSynapse)

RULES = {
    "batchnorm": "BatchNorm (running statistics) folded into the weights and bias",
    "binary": "binary spikes in: unchanged",
    "scale-inputs": "coefficients folded into the input channels/columns of the shared weights",
    "per-source-shared": "one rescaled shared kernel per spike source, summed",
    "factorized": "unshared synapses a[pos]·K stored as (K, a); computes op(Σ path(a ⊙ o))",
    "materialized": "unshared synapses stored explicitly, one kernel per output position",
    "synaptic-scale": "identity connection into a neuron: each spike adds the constant a",
}


@dataclass(frozen=True)
class Fold:
    """One step of the conversion: `layer`'s weights absorb `sources` (through the ops in `via`) by `rule`."""

    layer: str
    rule: str
    sources: tuple[str, ...] = ()
    via: tuple[str, ...] = ()

    def __str__(self) -> str:
        sources = f" <- {', '.join(self.sources)}" if self.sources else ""
        via = f" via {', '.join(self.via)}" if self.via else ""
        return f"{self.layer}: {self.rule}{sources}{via}"


@dataclass
class EquivalenceReport:
    """Training form vs inference form on the same inputs, both run in float64."""

    max_abs_diff: float
    logit_scale: float
    relative_diff: float
    agreement: float
    spikes_binary: bool
    non_binary_layers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Term:
    """One summand path(a ⊙ o) of a layer's input: a neuron, its RealSpike (None: a ≡ 1), the ops between."""

    source: fx.Node
    coeff: fx.Node | None
    path: tuple[fx.Node, ...]


@dataclass
class _Consumer:
    node: fx.Node
    terms: list[_Term]
    rule: str


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


def _is_add(node: fx.Node) -> bool:
    if node.kwargs or len(node.args) != 2:
        return False
    return (node.op == "call_function" and node.target in (operator.add, torch.add)) or (
        node.op == "call_method" and node.target == "add"
    )


def _uniform(a: torch.Tensor) -> bool:
    """True for layer ([]), channel ([C, 1, 1]) and 1-D ([C]) coefficients: constant over positions."""
    return a.dim() == 0 or a[0].numel() == 1


class _Converter:
    """Analysis (`plan`) on an fx graph of a deep copy, then the rewrite (`convert`)."""

    def __init__(self, model: nn.Module, materialize: bool, check_values: bool) -> None:
        if why := fold_support(model):
            raise ReparamError(f"cannot re-parameterize this model yet: {why}")
        root = copy.deepcopy(model).eval()
        try:
            graph = _Tracer().trace(root)
        except Exception as exc:  # fx raises many types; the user needs the first line only
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ReparamError(f"cannot trace {type(model).__name__} with torch.fx: {msg}") from None
        self.gm = fx.GraphModule(root, graph, class_name=f"{type(model).__name__}Inference")
        for attr in ("spec", "time_steps"):  # plain metadata of SpikingNetwork, kept for callers
            if hasattr(root, attr) and not isinstance(getattr(root, attr), (nn.Module, torch.Tensor)):
                setattr(self.gm, attr, getattr(root, attr))
        self.modules = dict(self.gm.named_modules())
        self.materialize, self.check_values = materialize, check_values

    # --- graph vocabulary ------------------------------------------------------------------------------

    def mod(self, node: Any) -> nn.Module | None:
        if isinstance(node, fx.Node) and node.op == "call_module":
            return self.modules[node.target]
        return None

    def pass_kind(self, node: fx.Node) -> str | None:
        """'path' for linear(-ish) ops a coefficient can be carried through, 'identity', or None."""
        m = self.mod(node)
        if isinstance(m, IDENTITY_MODULES):
            return "identity"
        if isinstance(m, nn.Flatten):
            return "path" if (m.start_dim, m.end_dim) == (1, -1) else None
        if isinstance(m, PATH_MODULES):
            return "path"
        is_flatten = (node.op == "call_function" and node.target is torch.flatten) or (
            node.op == "call_method" and node.target == "flatten"
        )
        if is_flatten and not node.kwargs and tuple(node.args[1:]) in ((1,), (1, -1)):
            return "path"
        return None

    def describe(self, node: fx.Node) -> str:
        if node.op == "output":
            return "the model output"
        m = self.mod(node)
        if m is not None:
            return f"{type(m).__name__} {node.target}"
        name = getattr(node.target, "__name__", str(node.target))
        where = list((node.meta.get("nn_module_stack") or {}).values())
        inside = f" in {where[-1][0]}" if where else ""
        return f"{name} (node {node.name}{inside})"

    def coeff(self, term: _Term) -> torch.Tensor | None:
        return None if term.coeff is None else self.modules[term.coeff.target].a.detach()

    def coeff_name(self, node: fx.Node) -> str:
        return f"{node.target} ({self.modules[node.target].setting.value})"

    # --- analysis --------------------------------------------------------------------------------------

    def bn_folds(self) -> list[tuple[fx.Node, fx.Node]]:
        pairs = []
        for node in self.gm.graph.nodes:
            bn = self.mod(node)
            if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
                continue
            prev = node.args[0] if node.args else None
            layer = self.mod(prev)
            kind = nn.Conv2d if isinstance(bn, nn.BatchNorm2d) else nn.Linear
            if bn.running_mean is None or bn.running_var is None:
                raise ReparamError(f"cannot fold BatchNorm {node.target}: it keeps no running statistics")
            if not isinstance(layer, kind):
                what = self.describe(prev) if isinstance(prev, fx.Node) else repr(prev)
                msg = f"cannot fold BatchNorm {node.target}: it follows {what}, not {kind.__name__}"
                raise ReparamError(msg)
            if len(prev.users) != 1:
                raise ReparamError(
                    f"cannot fold BatchNorm {node.target} into {prev.target}: the layer's output is also "
                    f"used without the BatchNorm ({', '.join(u.name for u in prev.users if u is not node)})"
                )
            pairs.append((prev, node))
        return pairs

    def collect(self, arg: Any, path: tuple[fx.Node, ...]) -> tuple[list[_Term], list[Any]]:
        """Walk back from a layer's input: (spike terms, non-spike values) whose sum/pool it is."""
        if not isinstance(arg, fx.Node):
            return [], ([] if isinstance(arg, (int, float)) and arg == 0 else [arg])
        m = self.mod(arg)
        if isinstance(m, LIFNeuron):
            return [_Term(arg, None, path)], []
        if isinstance(m, RealSpike):
            src = arg.args[0]
            if not isinstance(self.mod(src), LIFNeuron):
                raise ReparamError(f"cannot fold RealSpike {arg.target}: its input is not a neuron's spikes")
            return [_Term(src, arg, path)], []
        if _is_add(arg):
            t1, v1 = self.collect(arg.args[0], path)
            t2, v2 = self.collect(arg.args[1], path)
            return t1 + t2, v1 + v2
        kind = self.pass_kind(arg)
        if kind is None:
            return [], [arg]
        terms, values = self.collect(arg.args[0], path if kind == "identity" else (arg, *path))
        if isinstance(m, nn.MaxPool2d) and terms:
            self.check_maxpool(arg, terms, values)
        return terms, values

    def check_maxpool(self, node: fx.Node, terms: list[_Term], values: list[Any]) -> None:
        """max(a·o) = a·max(o) needs one source and a ≥ 0 constant over positions."""
        if len(terms) > 1 or values:
            raise ReparamError(
                f"cannot fold through MaxPool2d {node.target}: it pools a sum of several inputs, and max "
                "pooling does not distribute over sums"
            )
        a, rs = self.coeff(terms[0]), terms[0].coeff
        if a is None:
            return
        if not _uniform(a):
            raise ReparamError(
                f"cannot fold {self.coeff_name(rs)} through MaxPool2d {node.target}: max pooling does not "
                "commute with per-position coefficients"
            )
        negative = int((a < 0).sum()) if self.check_values else 0
        if negative:
            raise ReparamError(
                f"cannot fold {self.coeff_name(rs)} through MaxPool2d {node.target}: {negative} of its "
                f"{a.numel()} coefficient(s) are negative, and max(a·o) = a·max(o) holds only for a ≥ 0"
            )

    def consumers(self) -> list[_Consumer]:
        found = []
        for node in self.gm.graph.nodes:
            if not isinstance(self.mod(node), WEIGHTED) or len(node.args) != 1 or node.kwargs:
                continue
            terms, values = self.collect(node.args[0], ())
            if terms and values:
                value = values[0]
                what = self.describe(value) if isinstance(value, fx.Node) else repr(value)
                raise ReparamError(
                    f"cannot fold into {node.target}: its input adds spikes from "
                    f"{', '.join(self.term_names(terms))} to the non-spike value {what}, which is not a "
                    "weighted sum of spikes"
                )
            if terms:
                found.append(_Consumer(node, terms, self.rule(node, terms)))
        return found

    def term_names(self, terms: list[_Term]) -> list[str]:
        return [str(t.coeff.target if t.coeff is not None else t.source.target) for t in terms]

    def rule(self, node: fx.Node, terms: list[_Term]) -> str:
        """Depends on the architecture and setting only (shapes, never values), so the structure rebuilds."""
        if all(t.coeff is None for t in terms):
            return "binary"
        if all(self.shared_scale(node, t) is not None for t in terms):
            return "scale-inputs" if len(terms) == 1 else "per-source-shared"
        layer = self.mod(node)
        if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
            mode = layer.padding_mode
            raise ReparamError(f"cannot fold into {node.target}: padding mode {mode!r} is unsupported")
        if self.materialize:
            for t in terms:
                self.check_materializable(node, t)
            return "materialized"
        return "factorized"

    def shared_scale(self, node: fx.Node, term: _Term) -> torch.Tensor | None:
        """Per-input-channel (conv) or per-column (linear) factor equal to the term's a, or None if a varies
        over positions the weights are shared across (or pooled over, for linear)."""
        layer, a = self.mod(node), self.coeff(term)
        width = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
        if a is None or a.dim() == 0:
            return torch.ones(width, dtype=torch.float64) * (1.0 if a is None else a.double())
        if isinstance(layer, nn.Conv2d):
            return a.double().reshape(-1) if _uniform(a) and a.shape[0] == width else None
        pooled = sum(isinstance(self.mod(p), POOLS) for p in term.path)
        if len(term.path) == pooled and a.dim() > 1:  # no flatten(1): the columns are not the channels
            return None
        if _uniform(a) and width % a.shape[0] == 0:  # flatten(1) is channel-major
            return a.double().reshape(-1).repeat_interleave(width // a.shape[0])
        if not pooled and a.numel() == width:
            return a.double().reshape(-1)
        return None

    def check_materializable(self, node: fx.Node, term: _Term) -> None:
        layer, a = self.mod(node), self.coeff(term)
        reason = ""
        if a is None or _uniform(a) or a.dim() != 3:
            reason = "materialized storage needs element-wise [C, H, W] coefficients on every source"
        elif isinstance(layer, nn.Linear):
            if not any(self.pass_kind(p) == "path" and not isinstance(self.mod(p), POOLS) for p in term.path):
                reason = "a materialized linear layer needs its spikes flattened before it"
        else:
            pools = [self.mod(p) for p in term.path]
            one = len(pools) == 1
            simple_pool = one and isinstance(pools[0], nn.AvgPool2d) and disjoint_avgpool(pools[0])
            if layer.groups != 1 or layer.dilation != (1, 1) or isinstance(layer.padding, str):
                reason = "materialized convs need groups 1, dilation 1 and numeric padding"
            elif pools and not simple_pool:
                via = ", ".join(self.describe(p) for p in term.path)
                reason = f"only one AvgPool2d (kernel = stride, no padding) composes with a conv, not {via}"
        if reason:
            source = self.term_names([term])[0]
            raise ReparamError(f"cannot materialize {node.target} (source {source}): {reason}")

    def kept_scales(self, consumers: list[_Consumer]) -> list[fx.Node]:
        """RealSpikes whose output still flows somewhere once the consumers are rewritten: allowed only into
        a neuron's input (the identity shortcut), else refused."""
        folded = {c.node for c in consumers}
        kept = []
        for node in self.gm.graph.nodes:
            if isinstance(self.mod(node), RealSpike) and self.reaches_neuron(node, node, folded, set()):
                kept.append(node)
        return kept

    def reaches_neuron(self, rs: fx.Node, node: fx.Node, folded: set[fx.Node], seen: set[fx.Node]) -> bool:
        reached = False
        for user in node.users:
            if user in seen or user in folded:
                continue
            seen.add(user)
            if isinstance(self.mod(user), LIFNeuron):
                reached = True
            elif _is_add(user) or self.pass_kind(user) is not None:
                reached = self.reaches_neuron(rs, user, folded, seen) or reached
            else:
                raise ReparamError(
                    f"cannot fold {self.coeff_name(rs)}: its real-valued spikes reach {self.describe(user)}; "
                    "only conv/linear layers (through pooling, flatten and additions) or a neuron's input "
                    "may receive them"
                )
        return reached

    def plan(self) -> tuple[list[tuple[fx.Node, fx.Node]], list[_Consumer], list[fx.Node], list[Fold]]:
        bns, consumers = self.bn_folds(), self.consumers()
        kept = self.kept_scales(consumers)
        folds = [Fold(str(layer.target), "batchnorm", (str(bn.target),)) for layer, bn in bns]
        for c in consumers:
            names = (str(p.target) if p.op == "call_module" else p.name for t in c.terms for p in t.path)
            via = dict.fromkeys(names)
            folds.append(Fold(str(c.node.target), c.rule, tuple(self.term_names(c.terms)), tuple(via)))
        folds += [Fold(str(n.target), "synaptic-scale") for n in kept]
        return bns, consumers, kept, folds

    # --- rewrite ---------------------------------------------------------------------------------------

    def convert(self) -> fx.GraphModule:
        bns, consumers, kept, _ = self.plan()
        graph = self.gm.graph
        for layer_node, bn_node in bns:
            fold_batchnorm(self.modules[layer_node.target], self.modules[bn_node.target])
            bn_node.replace_all_uses_with(layer_node)
            graph.erase_node(bn_node)
        for c in consumers:
            if c.rule == "scale-inputs":
                self.rewrite_scaled(c)
            elif c.rule != "binary":
                self.rewrite_synapse(c)
        graph.eliminate_dead_code()
        for node in graph.nodes:
            if isinstance(self.mod(node), RealSpike):
                assert node in kept, node  # every other RealSpike output was consumed by a rewritten layer
                self.gm.add_submodule(str(node.target), SynapticScale(self.modules[node.target].a))
        self.gm.delete_all_unused_submodules()
        graph.lint()
        self.gm.recompile()
        return self.gm

    def rewrite_scaled(self, c: _Consumer) -> None:
        """Single source, a constant over the shared positions: rescale the layer's inputs, keep the path."""
        layer, (term,) = self.mod(c.node), c.terms
        set_weight(layer, scale_inputs(layer, self.shared_scale(c.node, term)))
        x = term.source
        with self.gm.graph.inserting_before(c.node):
            for p in term.path:  # replay the pooling/flatten on the binary spikes
                x = self.gm.graph.create_node(p.op, p.target, (x, *p.args[1:]), dict(p.kwargs), name=p.name)
        c.node.args = (x,)

    def rewrite_synapse(self, c: _Consumer) -> None:
        layer = self.mod(c.node)
        paths = [[_path_module(self, p) for p in t.path] for t in c.terms]
        weight = layer.weight.detach().double()
        bias = None if layer.bias is None else layer.bias.detach().double()
        if c.rule == "per-source-shared":
            weights = [scale_inputs(layer, self.shared_scale(c.node, t)) for t in c.terms]
            new: nn.Module = SharedSynapse(layer, weights, bias, paths)
        elif c.rule == "factorized":
            one = weight.new_ones(())  # a binary source among real-valued ones (user models)
            coeffs = [one if self.coeff(t) is None else self.coeff(t) for t in c.terms]
            new = FactorizedSynapse(layer, weight, bias, [a.double() for a in coeffs], paths)
        else:
            branches = []
            for t, path in zip(c.terms, paths, strict=True):
                a = self.coeff(t).double()
                if isinstance(layer, nn.Conv2d):
                    branches.append(materialize_conv(layer, weight, a, path[0] if path else None))
                else:
                    branches.append(materialize_linear(weight, a, nn.Sequential(*path)))
            new = MaterializedSynapse(branches, bias)
        self.gm.add_submodule(str(c.node.target), new.to(layer.weight.dtype))
        c.node.args = tuple(t.source for t in c.terms)


def _path_module(conv: _Converter, node: fx.Node) -> nn.Module:
    m = conv.mod(node)
    return copy.deepcopy(m) if m is not None else nn.Flatten()  # the only function in a path is flatten(1)


def to_inference(model: nn.Module, *, materialize: bool = False, check_values: bool = True) -> nn.Module:
    """A new module computing the same outputs as `model` in eval mode with binary spikes only (Eq. 9–13).

    `model` is left untouched. The structure depends only on the architecture, the spike setting and
    `materialize`; `check_values=False` skips the value-dependent checks (coefficient signs before a max
    pool), for rebuilding the structure that a saved inference state_dict is loaded into.
    """
    with torch.inference_mode(False):  # materializing takes a VJP, which inference mode would forbid
        return _Converter(model, materialize, check_values).convert()


def plan_folds(model: nn.Module, *, materialize: bool = False) -> list[Fold]:
    """What `to_inference` would fold, in graph order; raises ReparamError for what it would refuse."""
    return _Converter(model, materialize, check_values=True).plan()[3]


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
    emitted spikes are not in {0, 1} (neurons, and any RealSpike left in `inference_model`)."""
    ref = copy.deepcopy(train_model).double().eval()
    inf = copy.deepcopy(inference_model).double().eval()
    device = next((p.device for p in inf.parameters()), torch.device("cpu"))
    x = inputs.to(device=device, dtype=torch.float64)
    bad: list[str] = []

    def watch(name: str):
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            if name not in bad and not ((out == 0) | (out == 1)).all():
                bad.append(name)

        return hook

    emitters = [(n, m) for n, m in inf.named_modules() if isinstance(m, (LIFNeuron, RealSpike))]
    handles = [m.register_forward_hook(watch(n)) for n, m in emitters]
    try:
        with torch.no_grad():
            want, got = ref(x), inf(x)
    finally:
        for h in handles:
            h.remove()
    diff, scale = float((want - got).abs().max()), float(want.abs().max())
    agreement = float((want.argmax(-1) == got.argmax(-1)).double().mean())
    return EquivalenceReport(diff, scale, diff / max(scale, 1e-300), agreement, not bad, bad)
