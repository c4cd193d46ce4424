"""Stopping a run cleanly on a signal: the loop finishes its step, saves a resume point and ends."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopFlag:
    """The first SIGINT (Ctrl-C) or SIGTERM (what SLURM and Kubernetes send) asks the loop to stop after the
    current step, saving an exact resume point; a second one stops at once (KeyboardInterrupt)."""

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
            raise KeyboardInterrupt
        self.reason = self.SIGNALS.get(signum, "interrupted")

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
