"""The inference form of an MPBN neuron: a plain LIF/IF neuron with per-channel thresholds, no BatchNorm.

An eval-mode MPBN neuron fires on m = γ·(h − μ)/√(σ² + ε) + β ≥ V_th (Guo et al., ICCV 2023). Per channel
that is a threshold on the raw membrane h (`neuron.membrane_thresholds`): with sign = sign(γ) and ĥ = sign·h,

    +1 spike ⟺ ĥ ≥ upper = sign·μ + (V_th − β)·√(σ² + ε)/|γ|,   −1 spike (ternary) ⟺ ĥ ≤ lower (−V_th for V_th).

The fold feeds the neuron ĥ instead of h: the conversion multiplies every contribution to the channel's
input (weights and bias, shortcut scales) by sign. That is exact, because negation commutes with the leak
(τ·(−u) + (−x) = −(τ·u + x), also in floating point) and with a hard reset to 0; a soft reset
u = h − V_th·s becomes û = ĥ − sign·V_th·s, a per-channel `reset_by`. γ = 0 makes BN(h) = β: the channel
emits the same spike at every step, so its inputs are multiplied by 0 (ĥ ≡ 0, reset_by = 0) and its
thresholds are chosen to fire always (upper = −V_th; lower = +V_th for −1) or never (+V_th; −V_th).
"""

from __future__ import annotations

import dataclasses

import torch

from realspike_cli.core.errors import ConfigError
from realspike_cli.core.neuron import FiringRule, LIFNeuron, MPBNNeuron, membrane_thresholds, unrolled_lif
from realspike_cli.core.specs import NeuronSpec


class ThresholdLIF(LIFNeuron):
    """A LIF/IF neuron (binary or ternary spikes, hard or soft reset) whose thresholds are tensors: +1 spike
    iff h ≥ upper, −1 spike iff h ≤ lower (ternary), soft reset u = h − reset_by·s. The buffers broadcast
    over one sample's features ([C, 1, 1] per channel for [C, H, W], [C] for vectors). Inference only: it
    runs `neuron.unrolled_lif` (plain ops, no surrogate gradient)."""

    def __init__(
        self, spec: NeuronSpec, time_steps: int, upper: torch.Tensor, *, ternary: bool = False,
        lower: torch.Tensor | None = None, reset_by: torch.Tensor | None = None,
    ) -> None:
        kind = "if" if spec.decay == 1.0 else "lif"
        super().__init__(dataclasses.replace(spec, kind=kind), time_steps, ternary=ternary)
        if ternary != (lower is not None) or (spec.reset == "soft") != (reset_by is not None):
            raise ConfigError("a ThresholdLIF needs `lower` exactly for ternary spikes and `reset_by` exactly "
                              "for a soft reset")
        self.register_buffer("upper", upper.detach().clone())
        self.register_buffer("lower", None if lower is None else lower.detach().clone())
        self.register_buffer("reset_by", None if reset_by is None else reset_by.detach().clone())

    def firing_rule(self) -> FiringRule:
        return FiringRule(self.spec.decay, self.upper, self.lower, self.reset_by)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unrolled_lif(x, self.time_steps, self.firing_rule())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, thresholds per channel {tuple(self.upper.shape)}"


def fold_membrane_norm(neuron: MPBNNeuron) -> tuple[ThresholdLIF, torch.Tensor]:
    """(the ThresholdLIF equal to an eval-mode MPBN neuron fed ĥ = sign·h, sign per channel as float64 [C]).

    The caller multiplies the channel's input by sign (see the module docstring); the thresholds are
    computed in float64 and stored in the BatchNorm's dtype.
    """
    t = membrane_thresholds(neuron)
    v_th, constant = neuron.spec.v_th, t.sign == 0
    margin = torch.full_like(t.upper, v_th)  # ĥ ≡ 0 on a constant channel: 0 ≥ −V_th always, 0 ≥ V_th never
    upper = torch.where(constant, torch.where(t.upper == -torch.inf, -margin, margin), t.upper)
    lower = torch.where(constant, torch.where(t.lower == torch.inf, margin, -margin), t.lower)
    shape = (-1,) + (1,) * (len(neuron.feature_shape) - 1)
    like = neuron.norm.running_mean

    def stored(value: torch.Tensor) -> torch.Tensor:
        return value.reshape(shape).to(dtype=like.dtype, device=like.device)

    ternary, soft = neuron.ternary, neuron.spec.reset == "soft"
    folded = ThresholdLIF(
        neuron.spec, neuron.time_steps, stored(upper), ternary=ternary,
        lower=stored(lower) if ternary else None, reset_by=stored(t.sign * v_th) if soft else None,
    )
    return folded.to(like.device), t.sign
