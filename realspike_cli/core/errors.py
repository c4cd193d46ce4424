"""Errors the library raises for bad input; the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RealSpikeError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class UnknownNameError(RealSpikeError, KeyError):
    """A registry lookup (architecture, data set, recipe, zoo entry, ...) found no such name."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})")
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class CheckpointError(RealSpikeError):
    """A checkpoint is missing, truncated, corrupt, foreign, or from a newer format."""


class DataError(RealSpikeError):
    """A data set is missing or malformed."""


class ReparamError(RealSpikeError):
    """A re-parameterization that cannot be exact; names the layer and the reason."""


class ConfigError(RealSpikeError):
    """An option value or combination of options that cannot work."""


class OutputError(RealSpikeError):
    """An output that cannot be written: it exists (without --overwrite), is a folder, lies under a file, or the
    folder is read-only, not writable or full."""


class OutOfMemoryError(RealSpikeError):
    """An allocation failed (host or GPU memory): a batch, or a number of batches, too large for the machine."""


class DivergedError(RealSpikeError):
    """Training produced a non-finite loss or non-finite weights; nothing non-finite was saved. Every rank sees
    the same (all-reduced) loss and the same weights, so rank 0 alone reports it."""

    reported_by_rank0 = True
