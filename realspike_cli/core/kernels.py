"""Multi-step LIF kernels on time-major [T, ...] tensors: an eager ATen path and an inductor-fused path.

Both save only the pre-reset membrane for the backward pass (one float per neuron-step; the eager binary
path keeps it negated, −h; each backend's backward reads what its forward saved). Binary and ternary
spikes, hard and soft reset, differentiated and detached reset; see `realspike_cli.core.neuron` and
docs/neurons.md for the math.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from realspike_cli.core import kernels_fused
from realspike_cli.core.errors import ConfigError

BACKENDS = ("eager", "compiled")
ENV_BACKEND = "REALSPIKE_LIF_BACKEND"
compile_seconds = kernels_fused.compile_seconds  # first-call time of each compiled kernel, for reports


class LIFParams(NamedTuple):
    """The constants of one neuron layer's dynamics (a NamedTuple: traceable as a constant by dynamo)."""

    decay: float
    v_th: float
    half_width: float  # the surrogate window's half width
    ternary: bool = False
    soft_reset: bool = False
    detach_reset: bool = False


def default_backend() -> str:
    """The backend of a LIFNeuron built with backend=None: $REALSPIKE_LIF_BACKEND, else "eager" (compiling
    costs seconds). There is deliberately no setter: a process-wide default would leak into every model."""
    name = os.environ.get(ENV_BACKEND) or "eager"
    if name not in BACKENDS:
        raise ConfigError(f"{ENV_BACKEND}={name!r} is not a LIF backend (choose from: {', '.join(BACKENDS)})")
    return name


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"unknown LIF backend {name!r} (choose from: {', '.join(BACKENDS)})")
    return name


def just_below(value: float, dtype: torch.dtype) -> float:
    """The largest number of `dtype` below `value` (> 0) rounded to `dtype`: hardshrink(h, it) keeps exactly
    the h with |h| ≥ value, as the comparisons `h >= value` (which round value to h's dtype) decide."""
    t = torch.tensor(value, dtype=dtype)
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return float((t.view(bits) - 1).view(dtype))  # the next float towards zero of a positive finite value


# Eager path --------------------------------------------------------------------------------------------
# Every floating-point operation happens in the order autograd uses on `neuron.lif_reference`, so results
# and gradients are bit-identical to it (tested in float64): negation and multiplying by an exact 0/±1
# factor are exact, while a fused multiply-add (torch.add with alpha, addcmul on a non-0/1 factor) would
# round once instead of twice (torch.add(p, s, alpha=v_th) is used only where v_th·s is exact). Only dense
# float ops are used: masked_fill, where and bool-mask arithmetic take a slow non-vectorised path on CPU
# (measured 3–5× slower than a float multiply of the same size).
# Binary spikes keep the membrane negated, p = −h, because torch.threshold (keep x where x > θ) then
# applies the hard reset in one op: −h·[h < v_th] = threshold(p, −v_th, 0). Ternary spikes keep h itself:
# hardshrink(h, just below v_th) = h·|s| gives the reset (u = h − h·|s|) and, by its sign, the spike.


def forward_eager(x: torch.Tensor, p: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, saved membranes) for x [T, ...]: −h for binary spikes, h for ternary spikes."""
    return _forward_ternary(x, p) if p.ternary else _forward_binary(x, p)


def _forward_binary(x: torch.Tensor, p: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    steps, v_th = x.shape[0], p.v_th
    neg_h = torch.empty_like(x)
    spikes = torch.empty_like(x) if p.soft_reset else None
    neg_leak = None  # −decay·u_{t−1}
    for t, (x_t, p_t) in enumerate(zip(x.unbind(0), neg_h.unbind(0), strict=True)):
        if neg_leak is None:
            torch.neg(x_t, out=p_t)
        else:
            torch.sub(neg_leak, x_t, out=p_t)  # −(decay·u + x), rounded as decay·u + x then negated
        if spikes is not None:  # soft reset: −u = −h + v_th·o
            o_t = torch.le(p_t, -v_th, out=spikes[t])
            if t + 1 < steps:
                neg_leak = torch.add(p_t, o_t, alpha=v_th).mul_(p.decay)
        elif t + 1 < steps:
            neg_leak = torch.threshold(p_t, -v_th, 0.0).mul_(p.decay)
    if spikes is None:
        spikes = torch.le(neg_h, -v_th, out=torch.empty_like(x))
    return spikes, neg_h


def _forward_ternary(x: torch.Tensor, p: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    steps, below = x.shape[0], just_below(p.v_th, x.dtype)
    h = torch.empty_like(x)
    spikes = torch.empty_like(x)  # holds h·|s| until it is turned into s by its sign
    leak = None  # decay·u_{t−1}
    for t, (x_t, h_t, s_t) in enumerate(zip(x.unbind(0), h.unbind(0), spikes.unbind(0), strict=True)):
        if leak is None:
            h_t.copy_(x_t)
        else:
            torch.add(leak, x_t, out=h_t)
        torch.hardshrink(h_t, below, out=s_t)  # h where |h| ≥ v_th, else 0
        if p.soft_reset:
            s_t.sign_()
            if t + 1 < steps:
                leak = torch.sub(h_t, s_t, alpha=p.v_th).mul_(p.decay)  # u = h − v_th·s
        elif t + 1 < steps:
            leak = torch.sub(h_t, s_t).mul_(p.decay)  # u = h·(1 − |s|), exact
    if not p.soft_reset:
        spikes.sign_()
    return spikes, h


def backward_eager(saved: torch.Tensor, grad: torch.Tensor, p: LIFParams) -> torch.Tensor:
    """∂L/∂x from the saved membranes (−h binary, h ternary) and ∂L/∂s.

    Per step, with w = σ'(h) ∈ {0, 1} and g_u = decay·∂L/∂h_{t+1}: ∂L/∂h_t = g·w ∓ g_u·r + g_u·q, where
    q = ∂u/∂h outside the window (1 − |s| hard, 1 soft) and r the differentiated reset's term inside it
    (h·w binary hard, |h|·|s|·w ternary hard, v_th·w soft, none when detached); `_reset_factors` builds
    them so that every sum rounds exactly as autograd's does.
    """
    if p.ternary:
        magnitude = saved.abs()
        window = ternary_window(magnitude, p.v_th, p.half_width)
    else:
        magnitude = None
        window = torch.add(saved, p.v_th).abs_().le_(p.half_width)  # |p + v_th| = |h − v_th|, as 0./1.
    grad_x = torch.mul(grad, window)  # g·w: the answer at the last step; earlier steps are updated in place
    steps = saved.shape[0]
    if steps == 1:
        return grad_x
    plus, r, q = _reset_factors(saved[: steps - 1], magnitude, window[: steps - 1], p)
    del window, magnitude
    gx = grad_x.unbind(0)
    rs = r.unbind(0) if r is not None else None
    qs = q.unbind(0) if q is not None else None
    for t in range(steps - 2, -1, -1):
        grad_u = gx[t + 1] * p.decay
        if rs is not None:
            (gx[t].add_ if plus else gx[t].sub_)(grad_u * rs[t])
        if qs is None:
            gx[t].add_(grad_u)
        else:
            gx[t].addcmul_(grad_u, qs[t])  # the product is exact (q is 0/1)
    return grad_x


def ternary_window(magnitude: torch.Tensor, v_th: float, half_width: float) -> torch.Tensor:
    """σ'(h) of a ternary neuron from |h|, as 0./1. in |h|'s dtype: 1 on v_th − w/2 ≤ |h| ≤ v_th + w/2, the
    union of the binary window at +v_th and its mirror at −v_th (|h| ≤ 1 for the defaults)."""
    low, high = v_th - half_width, v_th + half_width
    window = torch.le(magnitude, high, out=torch.empty_like(magnitude))
    if low > 0:
        window.mul_(torch.ge(magnitude, low, out=torch.empty_like(magnitude)))
    return window


def _reset_factors(
    early: torch.Tensor, magnitude: torch.Tensor | None, window: torch.Tensor, p: LIFParams
) -> tuple[bool, torch.Tensor | None, torch.Tensor | None]:
    """(add?, r, q) for steps 0..T−2 (see `backward_eager`); None stands for r ≡ 0 and q ≡ 1."""
    if p.soft_reset:
        r = None if p.detach_reset else torch.mul(window, p.v_th)
        return False, r, None
    if p.ternary:
        mag = magnitude[: early.shape[0]]
        q = torch.lt(mag, p.v_th, out=torch.empty_like(mag))  # 1 − |s|
        r = None if p.detach_reset else torch.hardshrink(mag, just_below(p.v_th, mag.dtype)).mul_(window)
        return False, r, q
    q = torch.gt(early, -p.v_th, out=torch.empty_like(early))  # [h < v_th] = 1 − o
    r = None if p.detach_reset else torch.mul(early, window)  # −h·w, added
    return True, r, q


# Dispatch ----------------------------------------------------------------------------------------------


def lif_forward(x: torch.Tensor, p: LIFParams, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "compiled":
        return kernels_fused.forward_fused(x, p.decay, p.v_th, p.ternary, p.soft_reset)
    return forward_eager(x, p)


def lif_backward(saved: torch.Tensor, grad: torch.Tensor, p: LIFParams, backend: str) -> torch.Tensor:
    if backend == "compiled":
        return kernels_fused.backward_fused(
            saved, grad, p.decay, p.v_th, p.half_width, p.ternary, p.soft_reset, p.detach_reset
        )
    return backward_eager(saved, grad, p)
