"""Spiking neurons (Real Spike paper Eq. 1–3, 7; Ternary Spike; MPBN) and the learnable spike amplitude a.

Tensors travel through a network time-folded as [T·B, ...]; a neuron unfolds them to [T, B, ...] for its
dynamics. The membrane lives only inside one forward call, so nothing ever needs a reset between batches
and no state can leak between iterations or ranks (an MPBN neuron's BatchNorm keeps running statistics,
like every BatchNorm).

How a pass recognises a neuron: every spiking neuron is an instance of `LIFNeuron`, with `.spec` (a
NeuronSpec: decay, v_th, reset, ...), `.time_steps`, `.ternary` / `.spike_values` (the alphabet, {0, 1}
or {−1, 0, 1}) and `.norm` (the membrane BatchNorm of an `MPBNNeuron`, else None; `membrane_thresholds`
turns it into per-channel thresholds in eval mode). A following `RealSpike` holds the amplitude a.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from realspike_cli.core import kernels
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.specs import NeuronSpec, Spike


class _MultiStepLIF(torch.autograd.Function):
    """Forward: h_t = decay·u_{t−1} + x_t; s_t = spike(h_t); u_t = reset(h_t, s_t).

    Backward by hand, saving only the membrane h (one float per neuron-step) instead of autograd's chain of
    temporaries; the spike and surrogate masks are recomputed from it. A differentiated hard reset (the
    authors' code) has ∂u_t/∂h_t = (1 − o_t) − h_t·σ'(h_t), so h itself (not just masks) is needed.
    """

    @staticmethod
    def forward(ctx, x, time_steps: int, params: kernels.LIFParams, backend: str):  # type: ignore[override]
        spikes, saved = kernels.lif_forward(x.unflatten(0, (time_steps, -1)), params, backend)
        ctx.save_for_backward(saved)
        ctx.params = (params, backend)
        return spikes.flatten(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes):  # type: ignore[override]
        (saved,) = ctx.saved_tensors
        params, backend = ctx.params
        grad_x = kernels.lif_backward(saved, grad_spikes.unflatten(0, saved.shape[:2]), params, backend)
        return grad_x.flatten(0, 1), None, None, None


class _Heaviside(torch.autograd.Function):
    """One step of the binary spike function with the rectangular surrogate (the reference path, Eq. 7)."""

    @staticmethod
    def forward(ctx, h, v_th: float, half_width: float):  # type: ignore[override]
        ctx.save_for_backward(h)
        ctx.params = (v_th, half_width)
        return (h >= v_th).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        v_th, half_width = ctx.params
        return grad * ((h - v_th).abs() <= half_width).to(grad.dtype), None, None


class _TernaryHeaviside(torch.autograd.Function):
    """One step of the ternary spike function: +1 if h ≥ v_th, −1 if h ≤ −v_th, else 0; the surrogate is 1
    on both thresholds' windows (`kernels.ternary_window`)."""

    @staticmethod
    def forward(ctx, h, v_th: float, half_width: float):  # type: ignore[override]
        ctx.save_for_backward(h)
        ctx.params = (v_th, half_width)
        return (h >= v_th).to(h.dtype) - (h <= -v_th).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        return grad * kernels.ternary_window(h.abs(), *ctx.params).to(grad.dtype), None, None


def autograd_multistep(
    x: torch.Tensor, spec: NeuronSpec, *, ternary: bool = False, norm: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, pre-reset membranes h) over a time-major [T, ...] tensor, in plain autograd.

    The neuron fires on h, or on norm(h) for MPBN; the reset acts on h. A ternary hard reset multiplies by
    1 − |s| and differentiates |s| as torch.abs does (zero at s = 0), as in the authors' Ternary-Spike code.
    """
    fire = _TernaryHeaviside if ternary else _Heaviside
    u = torch.zeros_like(x[0])
    spikes, membranes = [], []
    for x_t in x.unbind(0):
        h = spec.decay * u + x_t
        s = fire.apply(h if norm is None else norm(h), spec.v_th, spec.surrogate_width / 2)
        r = s.detach() if spec.detach_reset else s
        if spec.reset == "soft":
            u = h - spec.v_th * r
        else:
            u = h * (1 - (r.abs() if ternary else r))
        spikes.append(s)
        membranes.append(h)
    return torch.stack(spikes), torch.stack(membranes)


def lif_reference(x: torch.Tensor, spec: NeuronSpec, ternary: bool = False) -> torch.Tensor:
    """Plain-autograd LIF spikes over a time-major [T, ...] tensor; the eager kernel is bit-identical to it."""
    return autograd_multistep(x, spec, ternary=ternary)[0]


class FiringRule(NamedTuple):
    """A plain LIF/IF neuron's constants on its membrane h: a +1 spike iff h ≥ upper; a −1 spike iff h ≤ lower
    (ternary spikes only, else None); a soft reset subtracts reset_by·s (None: hard reset to 0). Floats, or
    tensors broadcasting over one sample's features (per-channel thresholds of a folded MPBN neuron)."""

    decay: float
    upper: float | torch.Tensor
    lower: float | torch.Tensor | None = None
    reset_by: float | torch.Tensor | None = None


def unrolled_lif(x: torch.Tensor, time_steps: int, rule: FiringRule) -> torch.Tensor:
    """Spikes of a plain LIF/IF neuron on time-folded [T·B, ...] input, one step at a time in plain tensor ops
    (traceable by torch.export / ONNX; no zeros_like, which would trace a fixed batch).

    h_0 = x_0, h_t = x_t + decay·u_{t−1}; s_t = [h_t ≥ upper] − [h_t ≤ lower]; u_t = h_t·(1 − |s_t|) or
    h_t − reset_by·s_t. With the scalar rule of a LIFNeuron this is the eager kernel's arithmetic, op for op
    (leak = decay·h or 0; reset_by·s is exact for s ∈ {−1, 0, 1}), so the spikes are bit-identical.
    """
    spikes, leak = [], None
    for x_t in x.unflatten(0, (time_steps, -1)).unbind(0):
        h = x_t if leak is None else x_t + leak
        up = h >= rule.upper
        s = up.to(x.dtype)
        fired = up
        if rule.lower is not None:
            down = h <= rule.lower
            s, fired = s - down.to(x.dtype), up | down
        spikes.append(s)
        if rule.reset_by is None:
            leak = (h * rule.decay).masked_fill(fired, 0.0)
        else:
            leak = (h - rule.reset_by * s) * rule.decay
    return torch.cat(spikes, 0)


class LIFNeuron(nn.Module):
    """Multi-step LIF neuron on time-folded [T·B, ...] input (an IF neuron when decay = 1), binary or ternary.

    `backend`: "eager" (ATen ops, no start-up cost) or "compiled" (one fused inductor kernel per direction,
    C++ on CPU, Triton on CUDA; a few seconds of compilation at the first call); None follows
    `kernels.default_backend()` ($REALSPIKE_LIF_BACKEND or eager) at call time.
    """

    def __init__(self, spec: NeuronSpec, time_steps: int, backend: str | None = None, *, ternary: bool = False):
        super().__init__()
        if spec.kind == "mpbn" and not isinstance(self, MPBNNeuron):
            raise ConfigError("an MPBN neuron needs its feature shape: build it with MPBNNeuron or build_neuron")
        self.spec, self.time_steps, self.ternary = spec, time_steps, bool(ternary)
        # None follows $REALSPIKE_LIF_BACKEND at call time; checked here too, so a bad value is refused when
        # the model is built rather than inside a forward pass (which tracers would wrap in their own errors).
        if backend is None:
            kernels.default_backend()
        self.backend = None if backend is None else kernels.check_backend(backend)
        self.norm: nn.Module | None = None  # the membrane BatchNorm of an MPBN neuron

    @property
    def spike_values(self) -> tuple[float, ...]:
        return (-1.0, 0.0, 1.0) if self.ternary else (0.0, 1.0)

    def params(self) -> kernels.LIFParams:
        s = self.spec
        return kernels.LIFParams(
            s.decay, s.v_th, s.surrogate_width / 2, self.ternary, s.reset == "soft", s.detach_reset
        )

    def firing_rule(self) -> FiringRule:
        """The neuron's constants as a FiringRule (what the exporters' traceable twin and NIR write)."""
        s = self.spec
        return FiringRule(s.decay, s.v_th, -s.v_th if self.ternary else None, s.v_th if s.reset == "soft" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.backend or kernels.default_backend()
        return _MultiStepLIF.apply(x, self.time_steps, self.params(), backend)

    def extra_repr(self) -> str:
        s = self.spec
        reset = f"{s.reset}{' detached' if s.detach_reset else ''}"
        spikes = "ternary" if self.ternary else "binary"
        return f"{s.kind}, T={self.time_steps}, decay={s.decay}, v_th={s.v_th}, {spikes}, reset={reset}"


def membrane_norm(feature_shape: tuple[int, ...]) -> nn.Module:
    """The per-channel BatchNorm of an MPBN neuron: 2-D for [C, H, W] features, 1-D for [C] (or [C, L])."""
    if len(feature_shape) == 3:
        return nn.BatchNorm2d(feature_shape[0])
    if len(feature_shape) in (1, 2):
        return nn.BatchNorm1d(feature_shape[0])
    raise ConfigError(f"MPBN needs [C], [C, L] or [C, H, W] features, got shape {tuple(feature_shape)}")


class MPBNNeuron(LIFNeuron):
    """LIF/IF neuron firing on a BatchNorm of its membrane (Guo et al., ICCV 2023): m_t = BN(h_t), s_t =
    spike(m_t), the reset acts on the raw h_t.

    As in the authors' code, one BatchNorm is applied at every time step: in training it normalises with
    that step's batch statistics (over B·H·W) and updates its running statistics once per step; in eval mode
    it uses the running statistics, an affine map per channel that folds into a threshold
    (`membrane_thresholds`). Runs in plain autograd (`autograd_multistep`); `backend` is ignored.
    """

    def __init__(
        self, spec: NeuronSpec, time_steps: int, feature_shape: tuple[int, ...], backend: str | None = None,
        *, ternary: bool = False,
    ) -> None:
        if spec.kind != "mpbn":
            raise ConfigError(f"MPBNNeuron needs a NeuronSpec of kind 'mpbn', got {spec.kind!r}")
        super().__init__(spec, time_steps, backend, ternary=ternary)
        self.feature_shape = tuple(int(n) for n in feature_shape)
        self.norm = membrane_norm(self.feature_shape)

    def firing_rule(self) -> FiringRule:
        raise ConfigError("an MPBN neuron fires on BN(h), not on h: fold it first (reparam.to_inference, which "
                          "turns it into a ThresholdLIF with per-channel thresholds)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.unflatten(0, (self.time_steps, -1))
        return autograd_multistep(steps, self.spec, ternary=self.ternary, norm=self.norm)[0].flatten(0, 1)


def build_neuron(
    spec: NeuronSpec, time_steps: int, feature_shape: tuple[int, ...], *, ternary: bool = False
) -> LIFNeuron:
    """The neuron of `spec` for a feature map of `feature_shape` (one sample): MPBN or plain LIF/IF."""
    if spec.kind == "mpbn":
        return MPBNNeuron(spec, time_steps, tuple(feature_shape), ternary=ternary)
    return LIFNeuron(spec, time_steps, ternary=ternary)


def coefficient_shape(setting: Spike | str, feature_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Shape of a for one sample's feature map [C, (H, W)]: () layer, (C, 1, 1) channel, (C, H, W) element;
    None when a ≡ 1 (binary, ternary). Ternary settings share the binary ones' shapes."""
    granularity = Spike(setting).granularity
    if granularity is Spike.BINARY:
        return None
    if granularity is Spike.LAYER:
        return ()
    if granularity is Spike.CHANNEL:
        return (feature_shape[0],) + (1,) * (len(feature_shape) - 1)
    return tuple(feature_shape)


def tracing() -> bool:
    """True under torch.compile, TorchScript tracing or fx symbolic tracing (data-dependent branches are off)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.fx._symbolic_trace.is_fx_symbolic_tracing()


class _ScaleSpikes(torch.autograd.Function):
    """a·s for spikes s ∈ {−1, 0, 1}, keeping s for ∂L/∂a as int8 (1 byte per element instead of 4).

    Gradients are computed exactly as autograd's mul computes them (the same ops and reduction).
    """

    @staticmethod
    def forward(ctx, spikes, a):  # type: ignore[override]
        ctx.save_for_backward(spikes.to(torch.int8), a)
        return spikes * a

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        fired, a = ctx.saved_tensors
        grad_spikes = grad * a if ctx.needs_input_grad[0] else None
        grad_a = (grad * fired.to(grad.dtype)).sum_to_size(a.shape) if ctx.needs_input_grad[1] else None
        return grad_spikes, grad_a


class RealSpike(nn.Module):
    """Scales spikes by a learnable amplitude, a·s(t) (Eq. 8), shared over time; initialised to 1.

    The input must be a neuron's spikes ({0, 1} or {−1, 0, 1}): in training it is saved as int8.
    """

    def __init__(self, setting: Spike | str, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        setting = Spike(setting)
        shape = coefficient_shape(setting, feature_shape)
        if shape is None:
            raise ValueError(f"{setting.value} spikes have no coefficient")
        self.setting = setting
        self.a = nn.Parameter(torch.ones(shape))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and not tracing():
            return _ScaleSpikes.apply(spikes, self.a)
        return spikes * self.a

    def extra_repr(self) -> str:
        return f"{self.setting.value}, shape={tuple(self.a.shape)}"


class SpikeActivation(nn.Module):
    """A spiking neuron followed by its amplitude (none for `binary` and `ternary`)."""

    def __init__(
        self, spec: NeuronSpec, time_steps: int, setting: Spike | str, feature_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        setting = Spike(setting)
        self.neuron = build_neuron(spec, time_steps, feature_shape, ternary=setting.ternary)
        self.coeff = None if setting.granularity is Spike.BINARY else RealSpike(setting, feature_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.neuron(x)
        return spikes if self.coeff is None else self.coeff(spikes)


@dataclass(frozen=True)
class MembraneThresholds:
    """An eval-mode MPBN neuron's firing rule on its raw membrane h, per channel (float64, shape [C]).

    With ĥ = sign·h: a +1 spike iff ĥ ≥ upper, and for ternary spikes a −1 spike iff ĥ ≤ lower. sign is +1
    where γ > 0, −1 where γ < 0 (the inequality flips: fold by negating the channel's input, which commutes
    with the leak and the reset), 0 where γ = 0 (BN(h) = β: the channel emits the same spike at every step;
    upper = −inf if it fires +1 always, else +inf; lower = +inf if it fires −1 always, else −inf).
    """

    sign: torch.Tensor
    upper: torch.Tensor
    lower: torch.Tensor


def membrane_thresholds(neuron: LIFNeuron) -> MembraneThresholds:
    """θ′ = μ + (V_th − β)·√(σ² + ε)/γ per channel (written as above for either sign of γ), from an MPBN
    neuron's BatchNorm in eval mode: m = γ·(h − μ)/√(σ² + ε) + β ≥ V_th ⟺ sign·h ≥ sign·μ + (V_th − β)·√(σ² + ε)/|γ|."""
    norm = neuron.norm
    if norm is None:
        raise ConfigError(f"{type(neuron).__name__} has no membrane BatchNorm (not an MPBN neuron)")
    if norm.training or norm.running_mean is None or norm.running_var is None:
        raise ConfigError("MPBN thresholds need the BatchNorm in eval mode with running statistics")
    mean, var = norm.running_mean.detach().double().cpu(), norm.running_var.detach().double().cpu()
    gamma = norm.weight.detach().double().cpu() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.detach().double().cpu() if norm.bias is not None else torch.zeros_like(mean)
    scale = torch.sqrt(var + norm.eps)
    sign, magnitude = torch.sign(gamma), gamma.abs()
    v_th, constant = neuron.spec.v_th, gamma == 0
    safe = torch.where(constant, torch.ones_like(magnitude), magnitude)  # no 0/0 on constant channels
    upper = sign * mean + (v_th - beta) * scale / safe
    lower = sign * mean + (-v_th - beta) * scale / safe
    upper = torch.where(constant, torch.where(beta >= v_th, -math.inf, math.inf), upper)
    lower = torch.where(constant, torch.where(beta <= -v_th, math.inf, -math.inf), lower)
    return MembraneThresholds(sign, upper, lower)
