"""Spiking neurons (paper Eq. 1–3, 7) and the Real Spike coefficient (Eq. 8, 15–18).

Tensors travel through a network time-folded as [T·B, ...]; a neuron unfolds them to [T, B, ...] for its
dynamics. Neurons are stateless: the membrane lives only inside one forward call, so nothing ever needs a
reset between batches and no state can leak between iterations or ranks.
"""

from __future__ import annotations

import torch
from torch import nn

from realspike_cli.core.specs import NeuronSpec, Spike


class _MultiStepLIF(torch.autograd.Function):
    """Forward: h_t = decay·u_{t−1} + x_t; o_t = [h_t ≥ v_th]; u_t = h_t·(1 − o_t) (hard reset to 0).

    Backward by hand, saving only h (one float per neuron-step) instead of autograd's chain of temporaries;
    the spike and surrogate masks are recomputed from h. The reset is differentiated (not detached), as in
    the authors' released code: ∂u_t/∂h_t = (1 − o_t) − h_t·σ'(h_t).
    """

    @staticmethod
    def forward(ctx, x, time_steps: int, decay: float, v_th: float, half_width: float):  # type: ignore[override]
        inputs = x.unflatten(0, (time_steps, -1))
        membranes = torch.empty_like(inputs)
        spikes = torch.empty_like(inputs)
        u = torch.zeros_like(inputs[0])
        for t, x_t in enumerate(inputs.unbind(0)):
            h = torch.add(x_t, u, alpha=decay) if t else x_t
            fired = h >= v_th
            membranes[t] = h
            spikes[t] = fired
            u = h.masked_fill(fired, 0.0)
        ctx.save_for_backward(membranes)
        ctx.params = (decay, v_th, half_width)
        return spikes.flatten(0, 1)

    @staticmethod
    def backward(ctx, grad_spikes):  # type: ignore[override]
        (membranes,) = ctx.saved_tensors
        decay, v_th, half_width = ctx.params
        grads = grad_spikes.unflatten(0, membranes.shape[:2])
        grad_inputs = torch.empty_like(membranes)
        grad_u = None
        for t in range(membranes.shape[0] - 1, -1, -1):
            h = membranes[t]
            window = ((h - v_th).abs() <= half_width).to(h.dtype)
            grad_h = grads[t] * window
            if grad_u is not None:
                not_fired = (h < v_th).to(h.dtype)
                grad_h = grad_h + grad_u * (not_fired - h * window)
            grad_inputs[t] = grad_h
            grad_u = grad_h * decay
        return grad_inputs.flatten(0, 1), None, None, None, None


class _Heaviside(torch.autograd.Function):
    """One step of the spike function with the rectangular surrogate (the reference path, Eq. 7)."""

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


def lif_reference(x: torch.Tensor, spec: NeuronSpec) -> torch.Tensor:
    """Plain-autograd LIF over a time-major [T, ...] tensor; the ground truth the fast path is tested against."""
    u = torch.zeros_like(x[0])
    out = []
    for x_t in x.unbind(0):
        h = spec.decay * u + x_t
        o = _Heaviside.apply(h, spec.v_th, spec.surrogate_width / 2)
        u = h * (1 - o)
        out.append(o)
    return torch.stack(out)


class LIFNeuron(nn.Module):
    """Multi-step LIF neuron on time-folded [T·B, ...] input; an IF neuron when decay = 1."""

    def __init__(self, spec: NeuronSpec, time_steps: int) -> None:
        super().__init__()
        self.spec, self.time_steps = spec, time_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        return _MultiStepLIF.apply(x, self.time_steps, s.decay, s.v_th, s.surrogate_width / 2)

    def extra_repr(self) -> str:
        s = self.spec
        return f"{s.kind}, T={self.time_steps}, decay={s.decay}, v_th={s.v_th}, reset=hard"


def coefficient_shape(setting: Spike, feature_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Shape of a for one sample's feature map [C, (H, W)]: () layer, (C, 1, 1) channel, (C, H, W) element."""
    if setting is Spike.BINARY:
        return None
    if setting is Spike.LAYER:
        return ()
    if setting is Spike.CHANNEL:
        return (feature_shape[0],) + (1,) * (len(feature_shape) - 1)
    return tuple(feature_shape)


class RealSpike(nn.Module):
    """Scales binary spikes by a learnable coefficient, a·o(t) (Eq. 8), shared over time; initialised to 1."""

    def __init__(self, setting: Spike, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        shape = coefficient_shape(setting, feature_shape)
        if shape is None:
            raise ValueError("binary spikes have no coefficient")
        self.setting = setting
        self.a = nn.Parameter(torch.ones(shape))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return spikes * self.a

    def extra_repr(self) -> str:
        return f"{self.setting.value}, shape={tuple(self.a.shape)}"


class SpikeActivation(nn.Module):
    """A spiking neuron followed by its Real Spike coefficient (none for binary spikes)."""

    def __init__(self, spec: NeuronSpec, time_steps: int, setting: Spike, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.neuron = LIFNeuron(spec, time_steps)
        self.coeff = None if setting is Spike.BINARY else RealSpike(setting, feature_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.neuron(x)
        return spikes if self.coeff is None else self.coeff(spikes)
