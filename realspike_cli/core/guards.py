"""Guards around training and evaluation: a loss or weights that stopped being finite, and allocations that
fail, each become one `RealSpikeError` line instead of NaN checkpoints or an allocator traceback."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from realspike_cli.core.errors import DivergedError, OutOfMemoryError

# What the allocators say: torch.OutOfMemoryError (CUDA, MPS), c10's DefaultCPUAllocator, glibc's ENOMEM.
_OOM_MARKERS = ("out of memory", "DefaultCPUAllocator", "can't allocate memory", "not enough memory",
                "Cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError, MemoryError and a RuntimeError from a failed allocation."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in _OOM_MARKERS)


def _cause(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text.split("] ", 1)[-1] if text.startswith("[enforce fail") else text  # c10's source location
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def describe_out_of_memory(exc: BaseException, batch_size: int | None = None, what: str = "",
                           flag: str = "--batch-size") -> OutOfMemoryError | None:
    """An OutOfMemoryError naming the batch size and a smaller one to try; None when `exc` is something else."""
    if not is_out_of_memory(exc):
        return None
    where = f" {what}" if what else ""
    if batch_size is None:
        return OutOfMemoryError(f"out of memory{where} ({_cause(exc)}); use a smaller {flag} (or fewer batches, "
                                "images or time steps)")
    smaller = max(1, batch_size // 2)
    return OutOfMemoryError(f"out of memory{where} at batch size {batch_size} ({_cause(exc)}); use a smaller "
                            f"{flag}, e.g. {flag} {smaller}")


@contextmanager
def memory_guard(batch_size: int, what: str, flag: str = "--batch-size") -> Iterator[None]:
    """Turn a failed allocation inside the block into an OutOfMemoryError naming `batch_size`."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        described = describe_out_of_memory(exc, batch_size, what, flag)
        if described is None:
            raise
        raise described from None


def largest_weight(model: Any) -> float:
    """max |w| over the model's parameters and buffers (BatchNorm statistics; one fused reduction): NaN or
    inf as soon as any of them is."""
    import torch

    params = [t for t in model.state_dict().values() if t.is_floating_point()]
    return float(torch.nn.utils.get_total_norm(params, norm_type=math.inf)) if params else 0.0


def check_step(loss: float, weight: float, epoch: int, step: int, lr: float) -> None:
    """Stop at the first non-finite training loss, or at weights a step's update made non-finite (`weight`:
    `largest_weight` after the update); epoch and step count from 1."""
    if not math.isfinite(loss):
        what = f"the loss became {loss}"
    elif not math.isfinite(weight):
        what = f"the update made weights or BatchNorm statistics {weight}"
    else:
        return
    raise DivergedError(f"training diverged: {what} at epoch {epoch}, step {step} (learning rate {lr:g}); "
                        "nothing non-finite was saved; try a lower --lr")


def check_weights(model: Any, epoch: int, step: int, lr: float) -> None:
    """Refuse to go on (and so to save) with a non-finite parameter or buffer; names the first one."""
    import torch

    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DivergedError(f"training diverged: {name} holds non-finite values after epoch {epoch}, step "
                                f"{step} (learning rate {lr:g}); nothing non-finite was saved; try a lower --lr")
