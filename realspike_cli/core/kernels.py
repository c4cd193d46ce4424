"""Multi-step LIF kernels on time-major [T, ...] tensors: an eager ATen path and an inductor-fused path.

Both save only the pre-reset membrane for the backward pass (the eager path keeps it negated, −h; each
backend's backward reads what its forward saved); see `realspike_cli.core.neuron` for the math.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

from realspike_cli.core.errors import ConfigError

BACKENDS = ("eager", "compiled")
ENV_BACKEND = "REALSPIKE_LIF_BACKEND"
compile_seconds: dict[str, float] = {}  # first-call time of each compiled kernel, for reports


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


# Eager path --------------------------------------------------------------------------------------------
# Every floating-point operation happens in the order autograd uses on `lif_reference`, so results and
# gradients are bit-identical to it (tested in float64): negation and multiplying by an exact 0/1 factor
# are exact, while a fused multiply-add (torch.add with alpha, addcmul on a non-0/1 factor) would round
# once instead of twice. Only dense float ops are used: masked_fill, where and bool-mask arithmetic take
# a slow non-vectorised path on CPU (measured 3–5× slower than a float multiply of the same size).
# The membrane is kept negated, p = −h, because torch.threshold (keep x where x > θ) then applies the
# reset in one op: −h·[h < v_th] = threshold(p, −v_th, 0).


def forward_eager(x: torch.Tensor, decay: float, v_th: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, −h) for x of shape [T, ...]: h_t = decay·u_{t−1} + x_t, o_t = [h_t ≥ v_th], u_t = h_t·(1 − o_t)."""
    steps = x.shape[0]
    neg_h = torch.empty_like(x)
    neg_leak = None  # −decay·u_{t−1}
    for t, (x_t, p_t) in enumerate(zip(x.unbind(0), neg_h.unbind(0), strict=True)):
        if neg_leak is None:
            torch.neg(x_t, out=p_t)
        else:
            torch.sub(neg_leak, x_t, out=p_t)  # −(decay·u + x), rounded as decay·u + x then negated
        if t + 1 < steps:
            neg_leak = torch.threshold(p_t, -v_th, 0.0).mul_(decay)
    return torch.le(neg_h, -v_th, out=torch.empty_like(x)), neg_h


def backward_eager(
    neg_h: torch.Tensor, grad: torch.Tensor, decay: float, v_th: float, half_width: float
) -> torch.Tensor:
    """∂L/∂x from the saved negated membranes −h [T, ...] and ∂L/∂o, with the reset differentiated.

    Per step, with w = σ'(h) ∈ {0, 1} and g_u = decay·∂L/∂h_{t+1}: ∂L/∂h_t = g_u·(1 − o_t) + (g_t − g_u·h_t)·w,
    computed as (g·w + g_u·(−h·w)) + g_u·[h < v_th], which rounds exactly as autograd does.
    """
    window = torch.add(neg_h, v_th).abs_().le_(half_width)  # σ'(h) as 0./1. in h's dtype; |p + v_th| = |h − v_th|
    grad_x = torch.mul(grad, window)  # g·w: the answer at the last step; earlier steps are updated in place
    steps = neg_h.shape[0]
    if steps == 1:
        return grad_x
    early = neg_h[: steps - 1]
    neg_h_in_window = torch.mul(early, window[: steps - 1])
    below = torch.gt(early, -v_th, out=torch.empty_like(early))  # [h < v_th] = 1 − o
    del window
    gx, phw, nf = grad_x.unbind(0), neg_h_in_window.unbind(0), below.unbind(0)
    for t in range(steps - 2, -1, -1):
        grad_u = gx[t + 1] * decay
        gx[t].add_(grad_u * phw[t]).addcmul_(grad_u, nf[t])  # the addcmul product is exact (nf is 0/1)
    return grad_x


# Fused path --------------------------------------------------------------------------------------------
# One generated kernel per direction: every time step of an element is computed in registers, reading
# x (or h and ∂L/∂o) once and writing spikes and h (or ∂L/∂x) once. The element count is dynamic, so one
# compilation serves every layer; T, the dtype and the constants are specialised.


def _fused_forward(x: torch.Tensor, decay: float, v_th: float) -> tuple[torch.Tensor, torch.Tensor]:
    membranes, spikes = [], []
    leak = None
    for x_t in x.unbind(0):
        h = x_t if leak is None else x_t + leak
        fired = h >= v_th
        leak = torch.where(fired, 0.0, h * decay)
        membranes.append(h)
        spikes.append(fired.to(x.dtype))  # not stack-then-convert: inductor's bool→float pass is ~15× slower
    return torch.stack(spikes), torch.stack(membranes)


def _fused_backward(h: torch.Tensor, grad: torch.Tensor, decay: float, v_th: float, half_width: float) -> torch.Tensor:
    out = []
    grad_h = None
    for h_t, g_t in zip(reversed(h.unbind(0)), reversed(grad.unbind(0)), strict=True):
        window = (h_t - v_th).abs() <= half_width
        if grad_h is None:
            grad_h = torch.where(window, g_t, 0.0)
        else:
            grad_u = grad_h * decay
            grad_h = torch.where(h_t < v_th, grad_u, 0.0) + torch.where(window, g_t - grad_u * h_t, 0.0)
        out.append(grad_h)
    return torch.stack(out[::-1])


_compiled: dict[str, Callable] = {}


def _compiled_fn(name: str, fn: Callable) -> Callable:
    if name not in _compiled:
        _compiled[name] = torch.compile(fn, dynamic=False, fullgraph=True)
    return _compiled[name]


def _rows(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """x as a [T, N] view of its own memory (any dense layout with T outermost, e.g. channels_last), and the
    permutation that maps it back; other layouts are copied to contiguous first."""
    order = tuple(sorted(range(x.dim()), key=lambda d: (-x.stride(d), d)))
    permuted = x.permute(order)
    if order[0] != 0 or not permuted.is_contiguous():
        order, permuted = tuple(range(x.dim())), x.contiguous()
    return permuted.view(x.shape[0], -1), order


def _unrows(y: torch.Tensor, like: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    shape = [like.shape[d] for d in order]
    inverse = sorted(range(len(order)), key=lambda i: order[i])
    return y.view(shape).permute(inverse)


def _call(name: str, fn: Callable, rows: torch.Tensor, *args: object) -> object:
    """Run the compiled `fn`, timing the first call per specialisation (which includes its compilation)."""
    compiled = _compiled_fn(name, fn)
    key = f"{name} T={rows.shape[0]} {rows.dtype} {rows.device.type} {[a for a in args if isinstance(a, float)]}"
    if key in compile_seconds:
        return compiled(rows, *args)
    start = time.perf_counter()
    result = compiled(rows, *args)
    compile_seconds[key] = time.perf_counter() - start
    return result


def forward_fused(x: torch.Tensor, decay: float, v_th: float) -> tuple[torch.Tensor, torch.Tensor]:
    if torch.compiler.is_compiling():  # inside a torch.compile'd model: inline, the outer graph fuses it
        return _fused_forward(x, decay, v_th)
    rows, order = _rows(x)
    torch._dynamo.maybe_mark_dynamic(rows, 1)
    spikes, h = _call("forward", _fused_forward, rows, decay, v_th)
    return _unrows(spikes, x, order), _unrows(h, x, order)


def backward_fused(h: torch.Tensor, grad: torch.Tensor, decay: float, v_th: float, half_width: float) -> torch.Tensor:
    if torch.compiler.is_compiling():
        return _fused_backward(h, grad, decay, v_th, half_width)
    rows, order = _rows(h)
    grad = grad.permute(order).contiguous().view_as(rows)  # a view when grad has h's layout
    torch._dynamo.maybe_mark_dynamic(rows, 1)
    torch._dynamo.maybe_mark_dynamic(grad, 1)
    grad_x = _call("backward", _fused_backward, rows, grad, decay, v_th, half_width)
    return _unrows(grad_x, h, order)


def lif_forward(x: torch.Tensor, decay: float, v_th: float, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "compiled":
        return forward_fused(x, decay, v_th)
    return forward_eager(x, decay, v_th)


def lif_backward(
    h: torch.Tensor, grad: torch.Tensor, decay: float, v_th: float, half_width: float, backend: str
) -> torch.Tensor:
    if backend == "compiled":
        return backward_fused(h, grad, decay, v_th, half_width)
    return backward_eager(h, grad, decay, v_th, half_width)
