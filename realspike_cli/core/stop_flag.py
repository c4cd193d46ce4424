"""Stopping a run cleanly on a signal: the loop finishes its step, saves a resume point and ends."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopNow(BaseException):
    """Stop at once (a second signal, or SIGTERM outside training); `exit_code` is 128 + the signal number.

    Like KeyboardInterrupt it is no Exception (no `except Exception` swallows it), but it is not one: Typer
    turns a KeyboardInterrupt into a silent exit 130, and this one must reach `main` to say what happened."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def terminate_like_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises StopNow (exit 143) in the main thread, so `finally` blocks run and temporary
    files are removed, as for Ctrl-C; the default action would end the process on the spot. StopFlag
    overrides it during training (a graceful stop with a resume point). The previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, _frame: object) -> None:
    raise StopNow("terminated (SIGTERM)", 128 + signum)


class StopFlag:
    """The first SIGINT (Ctrl-C) or SIGTERM (what SLURM and Kubernetes send) asks the loop to stop after the
    current step, saving an exact resume point; a second one stops at once (StopNow)."""

    SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}

    def __init__(self) -> None:
        self.reason = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.reason:  # a second signal means "now"
            raise StopNow(f"{self.SIGNALS.get(signum, 'interrupted')} again: stopped at once, without saving; "
                          "the last resume point saved is kept", 128 + signum)
        self.reason = self.SIGNALS.get(signum, "interrupted")

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
