"""The inductor-fused multi-step LIF kernels (the "compiled" backend of `realspike_cli.core.kernels`).

One generated kernel per direction: every time step of an element is computed in registers, reading x (or
h and ∂L/∂s) once and writing spikes and h (or ∂L/∂x) once. The element count is dynamic, so one
compilation serves every layer; T, the dtype, the constants and the neuron's options are specialised.
The math is the eager kernel's (tested equal in float64, run eagerly); compiled, inductor may contract
a·b + c into one rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

compile_seconds: dict[str, float] = {}  # first-call time of each compiled kernel, for reports


def fused_forward(
    x: torch.Tensor, decay: float, v_th: float, ternary: bool = False, soft_reset: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, h) for x [T, ...]."""
    membranes, spikes = [], []
    leak = None
    for x_t in x.unbind(0):
        h = x_t if leak is None else x_t + leak
        if ternary:
            up, down = h >= v_th, h <= -v_th
            s = up.to(x.dtype) - down.to(x.dtype)
            fired = up | down
        else:
            fired = h >= v_th
            s = fired.to(x.dtype)  # not stack-then-convert: inductor's bool→float pass is ~15× slower
        leak = (h - v_th * s) * decay if soft_reset else torch.where(fired, 0.0, h * decay)
        membranes.append(h)
        spikes.append(s)
    return torch.stack(spikes), torch.stack(membranes)


def fused_backward(
    h: torch.Tensor,
    grad: torch.Tensor,
    decay: float,
    v_th: float,
    half_width: float,
    ternary: bool = False,
    soft_reset: bool = False,
    detach_reset: bool = False,
) -> torch.Tensor:
    """∂L/∂x from h [T, ...] and ∂L/∂s: ∂L/∂h_t = g_u·q + w·(g − g_u·r), as in `kernels.backward_eager`."""
    low, high = v_th - half_width, v_th + half_width
    out = []
    grad_h = None
    for h_t, g_t in zip(reversed(h.unbind(0)), reversed(grad.unbind(0)), strict=True):
        magnitude = h_t.abs() if ternary else None
        if ternary:
            window = magnitude <= high if low <= 0 else (magnitude >= low) & (magnitude <= high)
        else:
            window = (h_t - v_th).abs() <= half_width
        if grad_h is None:
            grad_h = torch.where(window, g_t, 0.0)
        else:
            grad_u = grad_h * decay
            if detach_reset:
                through = g_t
            elif soft_reset:
                through = g_t - grad_u * v_th
            elif ternary:
                through = g_t - grad_u * torch.where(magnitude >= v_th, magnitude, 0.0)  # g_u·h·s
            else:
                through = g_t - grad_u * h_t
            below = magnitude < v_th if ternary else h_t < v_th
            keep = grad_u if soft_reset else torch.where(below, grad_u, 0.0)
            grad_h = keep + torch.where(window, through, 0.0)
        out.append(grad_h)
    return torch.stack(out[::-1])


_compiled: dict[str, Callable] = {}


def _compiled_fn(name: str, fn: Callable) -> Callable:
    if name not in _compiled:
        _compiled[name] = torch.compile(fn, dynamic=False, fullgraph=True)
    return _compiled[name]


def rows_view(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """x as a [T, N] view of its own memory (any dense layout with T outermost, e.g. channels_last), and the
    permutation that maps it back; other layouts are copied to contiguous first."""
    order = tuple(sorted(range(x.dim()), key=lambda d: (-x.stride(d), d)))
    permuted = x.permute(order)
    if order[0] != 0 or not permuted.is_contiguous():
        order, permuted = tuple(range(x.dim())), x.contiguous()
    return permuted.view(x.shape[0], -1), order


def unrows(y: torch.Tensor, like: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    shape = [like.shape[d] for d in order]
    inverse = sorted(range(len(order)), key=lambda i: order[i])
    return y.view(shape).permute(inverse)


def _call(name: str, fn: Callable, rows: torch.Tensor, *args: object) -> object:
    """Run the compiled `fn`, timing the first call per specialisation (which includes its compilation)."""
    compiled = _compiled_fn(name, fn)
    constants = [a for a in args if not isinstance(a, torch.Tensor)]
    key = f"{name} T={rows.shape[0]} {rows.dtype} {rows.device.type} {constants}"
    if key in compile_seconds:
        return compiled(rows, *args)
    start = time.perf_counter()
    result = compiled(rows, *args)
    compile_seconds[key] = time.perf_counter() - start
    return result


def forward_fused(x: torch.Tensor, *args: float | bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`fused_forward(x, *args)` compiled, on a [T, N] view of x's memory."""
    if torch.compiler.is_compiling():  # inside a torch.compile'd model: inline, the outer graph fuses it
        return fused_forward(x, *args)
    rows, order = rows_view(x)
    torch._dynamo.maybe_mark_dynamic(rows, 1)
    spikes, h = _call("forward", fused_forward, rows, *args)
    return unrows(spikes, x, order), unrows(h, x, order)


def backward_fused(h: torch.Tensor, grad: torch.Tensor, *args: float | bool) -> torch.Tensor:
    """`fused_backward(h, grad, *args)` compiled, on [T, N] views."""
    if torch.compiler.is_compiling():
        return fused_backward(h, grad, *args)
    rows, order = rows_view(h)
    grad = grad.permute(order).contiguous().view_as(rows)  # a view when grad has h's layout
    torch._dynamo.maybe_mark_dynamic(rows, 1)
    torch._dynamo.maybe_mark_dynamic(grad, 1)
    grad_x = _call("backward", fused_backward, rows, grad, *args)
    return unrows(grad_x, h, order)
