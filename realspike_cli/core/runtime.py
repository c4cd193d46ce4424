"""Process-level speed settings that must be applied before the first large tensor is allocated."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Stop glibc from returning big blocks to the OS after every step.

    By default glibc serves large tensors with mmap and unmaps them on free, so every training step
    page-faults its activations back in; measured here, keeping them is 2.5x faster on LIF code and
    6–18% on a whole step. Returns False where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
