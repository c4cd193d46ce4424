"""The MPBN part of the fold plan: each MPBN neuron's membrane BatchNorm becomes per-channel thresholds
(`threshold_neuron.fold_membrane_norm`), and every contribution to the neuron's input is multiplied by the
channel sign sign(γ) (negated where γ < 0, zeroed where γ = 0), which keeps the fold exact.

The walk back from the neuron's input passes additions, eval-mode identities, SpikingNetwork's time
plumbing, average pooling (per channel, so it commutes with a per-channel sign) and foldable BatchNorms.
Its leaves are conv/linear layers (their output rows and bias carry the sign), Real Spike coefficients that
reach the neuron directly (kept as a SynapticScale whose a carries the sign) and spikes added without a
coefficient (a SynapticScale(sign) is inserted after the neuron, and the pooling between it and the
addition is replayed on the scaled spikes for this edge only). The structure depends on the architecture
and the settings only; a leaf whose sign cannot be changed (anything else, or a layer whose output is also
used elsewhere) is refused only when some channel actually needs a sign other than +1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from realspike_cli.core.errors import ConfigError, ReparamError
from realspike_cli.core.graph import AVG_POOLS, WEIGHTED, ModelGraph, is_add, is_spiking_neuron, is_time_plumbing
from realspike_cli.core.neuron import RealSpike
from realspike_cli.core.threshold_neuron import ThresholdLIF, fold_membrane_norm


@dataclass
class MembraneInput:
    """One contribution the channel sign multiplies: 'weighted' (a conv/linear node), 'scale' (a RealSpike
    node, kept as a SynapticScale) or 'spikes' (a neuron node whose spikes enter `user` unscaled, through
    the identities and average pools of `path`, in order from the neuron)."""

    kind: str
    node: fx.Node
    user: fx.Node | None = None
    path: tuple[fx.Node, ...] = ()


@dataclass
class MembraneFold:
    """An MPBN neuron, its folded ThresholdLIF, the channel signs (float64 [C]) and what they multiply."""

    neuron: fx.Node
    folded: ThresholdLIF
    sign: torch.Tensor
    inputs: list[MembraneInput] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # contributions whose sign cannot change, in words

    def sign_view(self) -> torch.Tensor:
        """The signs shaped to broadcast over one sample's features, like the thresholds."""
        return self.sign.reshape(self.folded.upper.shape)


class MembranePlanner:
    """Finds every MPBN neuron of a traced model and what its fold rewrites."""

    def __init__(self, graph: ModelGraph, check_values: bool) -> None:
        self.g, self.check_values = graph, check_values

    def plan(self, kept_reach: dict[fx.Node, set[fx.Node]]) -> list[MembraneFold]:
        """`kept_reach`: each kept RealSpike (into a neuron's input) and the neurons it reaches."""
        folds = []
        for node in self.g.gm.graph.nodes:
            m = self.g.module(node)
            if is_spiking_neuron(m) and m.norm is not None:
                folds.append(self.fold(node, m, kept_reach))
        return folds

    def fold(self, node: fx.Node, neuron: nn.Module, kept_reach: dict[fx.Node, set[fx.Node]]) -> MembraneFold:
        try:
            folded, sign = fold_membrane_norm(neuron)
        except ConfigError as exc:
            raise ReparamError(f"cannot fold the membrane BatchNorm of MPBN neuron {node.target}: {exc}") from None
        mf = MembraneFold(node, folded, sign)
        self.walk(mf, node.args[0], node, single=True)
        for leaf in mf.inputs:
            reached = kept_reach.get(leaf.node, {node}) if leaf.kind == "scale" else {node}
            if reached != {node}:
                others = ", ".join(sorted(str(n.target) for n in reached if n is not node))
                raise ReparamError(
                    f"cannot fold the membrane BatchNorm of MPBN neuron {node.target}: the spikes of "
                    f"{leaf.node.target} also reach {others}, and its per-channel sign would change them too"
                )
        flips = int((sign != 1).sum())
        if flips and mf.blocked and self.check_values:
            raise ReparamError(
                f"cannot fold the membrane BatchNorm of MPBN neuron {node.target}: {flips} of its {sign.numel()} "
                f"channel(s) have γ ≤ 0, so their input must be negated (γ < 0) or zeroed (γ = 0), but "
                f"{mf.blocked[0]}"
            )
        return mf

    def walk(self, mf: MembraneFold, arg: object, user: fx.Node, *, single: bool,
             chain: tuple[fx.Node, ...] = ()) -> None:
        """Collect the leaves of the neuron's input. `user`: the addition (or the neuron) that the ops in
        `chain` (passed since it, nearest first) feed; `single`: every node up to the neuron has one user."""
        if not isinstance(arg, fx.Node):
            mf.blocked.append(f"its input adds the constant {arg!r}")
            return
        m, single = self.g.module(arg), single and len(arg.users) == 1
        if is_add(arg):
            for part in arg.args:
                self.walk(mf, part, arg, single=single)
        elif self.g.pass_kind(arg) == "identity" or isinstance(m, AVG_POOLS) or is_time_plumbing(arg):
            self.walk(mf, arg.args[0], user, single=single, chain=(*chain, arg))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and isinstance(self.g.module(arg.args[0]), WEIGHTED):
            self.weighted(mf, arg.args[0], single)  # the BatchNorm is folded into that layer first
        elif isinstance(m, WEIGHTED):
            self.weighted(mf, arg, single)
        elif isinstance(m, RealSpike):
            mf.inputs.append(MembraneInput("scale", arg))
        elif is_spiking_neuron(m):
            plumbing = [n for n in chain if is_time_plumbing(n)]
            if plumbing:
                raise ReparamError(
                    f"cannot fold the membrane BatchNorm of MPBN neuron {mf.neuron.target}: the spikes of "
                    f"{arg.target} reach it through {self.g.describe(plumbing[0])}, which a per-channel sign "
                    "cannot be carried through"
                )
            mf.inputs.append(MembraneInput("spikes", arg, user, tuple(reversed(chain))))
        else:
            mf.blocked.append(f"its input comes from {self.g.describe(arg)}, whose sign cannot be changed")

    def weighted(self, mf: MembraneFold, node: fx.Node, single: bool) -> None:
        layer, channels = self.g.module(node), mf.sign.numel()
        width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        if not (single and len(node.users) == 1):
            mf.blocked.append(f"the output of {self.g.describe(node)} is also used elsewhere")
        elif width != channels or (isinstance(layer, nn.Linear) and mf.folded.upper.dim() != 1):
            mf.blocked.append(f"the {width} outputs of {self.g.describe(node)} are not its {channels} channels")
        else:
            mf.inputs.append(MembraneInput("weighted", node))
