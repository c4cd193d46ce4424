"""Spiking neurons (paper Eq. 1–3, 7) and the Real Spike coefficient (Eq. 8, 15–18).

Tensors travel through a network time-folded as [T·B, ...]; a neuron unfolds them to [T, B, ...] for its
dynamics. Neurons are stateless: the membrane lives only inside one forward call, so nothing ever needs a
reset between batches and no state can leak between iterations or ranks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from realspike_cli.core import kernels
from realspike_cli.core.specs import NeuronSpec, Spike


class _MultiStepLIF(torch.autograd.Function):
    """Forward: h_t = decay·u_{t−1} + x_t; o_t = [h_t ≥ v_th]; u_t = h_t·(1 − o_t) (hard reset to 0).

    Backward by hand, saving only the membrane h (one float per neuron-step; the eager kernel keeps it
    negated) instead of autograd's chain of temporaries; the spike and surrogate masks are recomputed from
    it. The reset is differentiated (not detached), as in the authors' released code:
    ∂u_t/∂h_t = (1 − o_t) − h_t·σ'(h_t), so h itself (not just masks) is needed inside the window.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x, time_steps: int, decay: float, v_th: float, half_width: float, backend: str
    ):
        spikes, membranes = kernels.lif_forward(x.unflatten(0, (time_steps, -1)), decay, v_th, backend)
        ctx.save_for_backward(membranes)
        ctx.params = (decay, v_th, half_width, backend)
        return spikes.flatten(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes):  # type: ignore[override]
        (membranes,) = ctx.saved_tensors
        decay, v_th, half_width, backend = ctx.params
        grads = grad_spikes.unflatten(0, membranes.shape[:2])
        grad_x = kernels.lif_backward(membranes, grads, decay, v_th, half_width, backend)
        return grad_x.flatten(0, 1), None, None, None, None, None


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
    """Multi-step LIF neuron on time-folded [T·B, ...] input; an IF neuron when decay = 1.

    `backend`: "eager" (ATen ops, no start-up cost) or "compiled" (one fused inductor kernel per direction,
    C++ on CPU, Triton on CUDA; a few seconds of compilation at the first call); None follows
    `kernels.default_backend()` ($REALSPIKE_LIF_BACKEND or eager) at call time.
    """

    def __init__(self, spec: NeuronSpec, time_steps: int, backend: str | None = None) -> None:
        super().__init__()
        self.spec, self.time_steps = spec, time_steps
        self.backend = None if backend is None else kernels.check_backend(backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        backend = self.backend or kernels.default_backend()
        return _MultiStepLIF.apply(x, self.time_steps, s.decay, s.v_th, s.surrogate_width / 2, backend)

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


def tracing() -> bool:
    """True under torch.compile, TorchScript tracing or fx symbolic tracing (data-dependent branches are off)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.fx._symbolic_trace.is_fx_symbolic_tracing()


class _ScaleSpikes(torch.autograd.Function):
    """a·o for binary spikes o, keeping o for ∂L/∂a as bool (1 byte per element instead of 4).

    Gradients are computed exactly as autograd's mul computes them (the same ops and reduction).
    """

    @staticmethod
    def forward(ctx, spikes, a):  # type: ignore[override]
        ctx.save_for_backward(spikes.to(torch.bool), a)
        return spikes * a

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        fired, a = ctx.saved_tensors
        grad_spikes = grad * a if ctx.needs_input_grad[0] else None
        grad_a = (grad * fired.to(grad.dtype)).sum_to_size(a.shape) if ctx.needs_input_grad[1] else None
        return grad_spikes, grad_a


class RealSpike(nn.Module):
    """Scales binary spikes by a learnable coefficient, a·o(t) (Eq. 8), shared over time; initialised to 1.

    The input must be binary (a neuron's spikes): in training it is saved for the backward pass as bool.
    """

    def __init__(self, setting: Spike, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        shape = coefficient_shape(setting, feature_shape)
        if shape is None:
            raise ValueError("binary spikes have no coefficient")
        self.setting = setting
        self.a = nn.Parameter(torch.ones(shape))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and not tracing():
            return _ScaleSpikes.apply(spikes, self.a)
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
