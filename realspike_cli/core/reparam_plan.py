"""What the inference form folds where (paper Sec. 3.3, Eq. 9–13), decided on the model's fx graph.

A pass over `core.graph`: every BatchNorm into the conv/linear before it; every MPBN neuron's membrane
BatchNorm into per-channel thresholds, with the contributions to its input that a channel sign multiplies
(`core.membrane_plan`); every conv/linear whose input is a sum of spike terms path(a ⊙ s) gets a rule from
the shapes alone; what no exact rule covers is refused, naming the layer. `core.reparam` performs the
rewrite. Spikes s are binary or ternary: every rule is linear in s, so both fold alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from realspike_cli.core.errors import ReparamError
from realspike_cli.core.graph import (
    MAX_POOLS,
    POOLS,
    WEIGHTED,
    ModelGraph,
    SpikeInputs,
    SpikeTerm,
    is_add,
    is_spiking_neuron,
)
from realspike_cli.core.membrane_plan import MembraneFold, MembranePlanner
from realspike_cli.core.neuron import RealSpike
from realspike_cli.core.synapses import disjoint_avgpool


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
class Consumer:
    """A conv/linear layer reading spike terms, and the rule it is folded by."""

    node: fx.Node
    terms: list[SpikeTerm]
    rule: str


@dataclass
class Plan:
    batchnorms: list[tuple[fx.Node, fx.Node]]  # (layer, BatchNorm after it)
    consumers: list[Consumer]
    kept: list[fx.Node]  # RealSpikes into a neuron's input: become SynapticScale
    folds: list[Fold]
    membranes: list[MembraneFold]  # MPBN neurons: thresholds, and the inputs their channel signs multiply


def uniform(a: torch.Tensor) -> bool:
    """True for layer ([]), channel ([C, 1, 1]) and 1-D ([C]) coefficients: constant over positions."""
    return a.dim() == 0 or a[0].numel() == 1


class Planner:
    """The analysis half of the conversion, on a traced (copied) model."""

    def __init__(self, graph: ModelGraph, materialize: bool, check_values: bool) -> None:
        self.g, self.materialize, self.check_values = graph, materialize, check_values

    def coeff_name(self, node: fx.Node) -> str:
        setting = getattr(self.g.modules[node.target], "setting", None)
        return f"{node.target} ({setting.value})" if setting is not None else str(node.target)

    def term_names(self, terms: list[SpikeTerm]) -> list[str]:
        return [str(t.coeff.target if t.coeff is not None else t.source.target) for t in terms]

    def plan(self) -> Plan:
        bns, consumers = self.bn_folds(), self.consumers()
        reach = self.kept_scales(consumers)
        membranes = MembranePlanner(self.g, self.check_values).plan(reach)
        folds = [Fold(str(layer.target), "batchnorm", (str(bn.target),)) for layer, bn in bns]
        for mf in membranes:
            inputs = tuple(str(i.node.target) for i in mf.inputs)
            folds.append(Fold(str(mf.neuron.target), "membrane-threshold", (f"{mf.neuron.target}.norm",), inputs))
        for c in consumers:
            names = (str(p.target) if p.op == "call_module" else p.name for t in c.terms for p in t.path)
            via = dict.fromkeys(names)
            folds.append(Fold(str(c.node.target), c.rule, tuple(self.term_names(c.terms)), tuple(via)))
        folds += [Fold(str(n.target), "synaptic-scale") for n in reach]
        return Plan(bns, consumers, list(reach), folds, membranes)

    def bn_folds(self) -> list[tuple[fx.Node, fx.Node]]:
        pairs = []
        for node in self.g.nodes_of(nn.modules.batchnorm._BatchNorm):
            bn = self.g.module(node)
            prev = node.args[0] if node.args else None
            layer = self.g.module(prev)
            kind = nn.Conv2d if isinstance(bn, nn.BatchNorm2d) else nn.Linear
            if bn.running_mean is None or bn.running_var is None:
                raise ReparamError(f"cannot fold BatchNorm {node.target}: it keeps no running statistics")
            if not isinstance(layer, kind):
                what = self.g.describe(prev) if isinstance(prev, fx.Node) else repr(prev)
                raise ReparamError(f"cannot fold BatchNorm {node.target}: it follows {what}, not {kind.__name__}")
            if len(prev.users) != 1:
                raise ReparamError(
                    f"cannot fold BatchNorm {node.target} into {prev.target}: the layer's output is also "
                    f"used without the BatchNorm ({', '.join(u.name for u in prev.users if u is not node)})"
                )
            pairs.append((prev, node))
        return pairs

    def spike_inputs(self, arg: fx.Node) -> SpikeInputs:
        """The walk back from a layer's input, with the checks only a fold needs (max pools, coefficients)."""
        found = self.g.spike_inputs(arg)
        if found.mixed_max_pools:
            node = found.mixed_max_pools[0]
            raise ReparamError(
                f"cannot fold through {type(self.g.module(node)).__name__} {node.target}: it pools a sum of "
                "several inputs, and max pooling does not distribute over sums"
            )
        for value in found.others:
            if isinstance(self.g.module(value), RealSpike):
                raise ReparamError(f"cannot fold RealSpike {value.target}: its input is not a neuron's spikes")
        for term in found.terms:
            for p in term.path:
                if isinstance(self.g.module(p), MAX_POOLS):
                    self.check_maxpool(p, term)
        return found

    def check_maxpool(self, node: fx.Node, term: SpikeTerm) -> None:
        """max(a·o) = a·max(o) needs a ≥ 0 constant over positions."""
        a, what = self.g.coefficient(term), f"{type(self.g.module(node)).__name__} {node.target}"
        if a is None:
            return
        if not uniform(a):
            raise ReparamError(
                f"cannot fold {self.coeff_name(term.coeff)} through {what}: max pooling does not commute with "
                "per-position coefficients"
            )
        negative = int((a < 0).sum()) if self.check_values else 0
        if negative:
            raise ReparamError(
                f"cannot fold {self.coeff_name(term.coeff)} through {what}: {negative} of its {a.numel()} "
                "coefficient(s) are negative, and max(a·o) = a·max(o) holds only for a ≥ 0"
            )

    def consumers(self) -> list[Consumer]:
        found = []
        for node in self.g.nodes_of(WEIGHTED):
            if len(node.args) != 1 or node.kwargs:
                continue
            inputs = self.spike_inputs(node.args[0])
            terms = inputs.terms
            if terms and inputs.others:
                value = inputs.others[0]
                what = self.g.describe(value) if isinstance(value, fx.Node) else repr(value)
                raise ReparamError(
                    f"cannot fold into {node.target}: its input adds spikes from "
                    f"{', '.join(self.term_names(terms))} to the non-spike value {what}, which is not a "
                    "weighted sum of spikes"
                )
            if terms:
                found.append(Consumer(node, terms, self.rule(node, terms)))
        return found

    def rule(self, node: fx.Node, terms: list[SpikeTerm]) -> str:
        """Depends on the architecture and setting only (shapes, never values), so the structure rebuilds."""
        if all(t.coeff is None for t in terms):
            return "binary"
        if all(self.shared_scale(node, t) is not None for t in terms):
            return "scale-inputs" if len(terms) == 1 else "per-source-shared"
        layer = self.g.module(node)
        if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
            mode = layer.padding_mode
            raise ReparamError(f"cannot fold into {node.target}: padding mode {mode!r} is unsupported")
        if self.materialize:
            for t in terms:
                self.check_materializable(node, t)
            return "materialized"
        return "factorized"

    def shared_scale(self, node: fx.Node, term: SpikeTerm) -> torch.Tensor | None:
        """Per-input-channel (conv) or per-column (linear) factor equal to the term's a, or None if a varies
        over positions the weights are shared across (or pooled over, for linear)."""
        layer, a = self.g.module(node), self.g.coefficient(term)
        width = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
        if a is None or a.dim() == 0:
            return torch.ones(width, dtype=torch.float64) * (1.0 if a is None else a.double())
        if isinstance(layer, nn.Conv2d):
            return a.double().reshape(-1) if uniform(a) and a.shape[0] == width else None
        pooled = sum(isinstance(self.g.module(p), POOLS) for p in term.path)
        if len(term.path) == pooled and a.dim() > 1:  # no flatten(1): the columns are not the channels
            return None
        if uniform(a) and width % a.shape[0] == 0:  # flatten(1) is channel-major
            return a.double().reshape(-1).repeat_interleave(width // a.shape[0])
        if not pooled and a.numel() == width:
            return a.double().reshape(-1)
        return None

    def check_materializable(self, node: fx.Node, term: SpikeTerm) -> None:
        layer, a = self.g.module(node), self.g.coefficient(term)
        reason = ""
        if a is None or uniform(a) or a.dim() != 3:
            reason = "materialized storage needs element-wise [C, H, W] coefficients on every source"
        elif isinstance(layer, nn.Linear):
            flattened = any(not isinstance(self.g.module(p), POOLS) for p in term.path)
            if not flattened:
                reason = "a materialized linear layer needs its spikes flattened before it"
        else:
            pools = [self.g.module(p) for p in term.path]
            one = len(pools) == 1
            simple_pool = one and isinstance(pools[0], nn.AvgPool2d) and disjoint_avgpool(pools[0])
            if layer.groups != 1 or layer.dilation != (1, 1) or isinstance(layer.padding, str):
                reason = "materialized convs need groups 1, dilation 1 and numeric padding"
            elif pools and not simple_pool:
                via = ", ".join(self.g.describe(p) for p in term.path)
                reason = f"only one AvgPool2d (kernel = stride, no padding) composes with a conv, not {via}"
        if reason:
            source = self.term_names([term])[0]
            raise ReparamError(f"cannot materialize {node.target} (source {source}): {reason}")

    def kept_scales(self, consumers: list[Consumer]) -> dict[fx.Node, set[fx.Node]]:
        """RealSpikes whose output still flows somewhere once the consumers are rewritten, with the neurons
        it reaches: allowed only into a neuron's input (the identity shortcut), else refused."""
        folded, kept = {c.node for c in consumers}, {}
        for node in self.g.nodes_of(RealSpike):
            reached: set[fx.Node] = set()
            self.reaches_neuron(node, node, folded, set(), reached)
            if reached:
                kept[node] = reached
        return kept

    def reaches_neuron(self, rs: fx.Node, node: fx.Node, folded: set[fx.Node], seen: set[fx.Node],
                       reached: set[fx.Node]) -> None:
        for user in node.users:
            if user in seen or user in folded:
                continue
            seen.add(user)
            if is_spiking_neuron(self.g.module(user)):
                reached.add(user)
            elif is_add(user) or self.g.pass_kind(user) is not None:
                self.reaches_neuron(rs, user, folded, seen, reached)
            else:
                raise ReparamError(
                    f"cannot fold {self.coeff_name(rs)}: its real-valued spikes reach {self.g.describe(user)}; "
                    "only conv/linear layers (through pooling, flatten and additions) or a neuron's input "
                    "may receive them"
                )
