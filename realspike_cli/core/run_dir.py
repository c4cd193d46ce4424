"""A training run's directory, owned by one run at a time, with a replaced run kept until the new one has saved.

- The lock: `fcntl.flock` on `.realspike.lock` in the directory, held from `claim()` until `release()` or
  the process ends (the kernel drops it then, even after SIGKILL), so two runs never share a directory.
- `--overwrite`: the previous run's files move to `.previous-run/` inside the directory; the first save of
  the new run deletes them; a run that ends without saving (an error, Ctrl-C before the first epoch) puts
  them back. A run killed outright leaves `.previous-run/`, which the next claim resolves the same way.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from realspike_cli.core.errors import ConfigError, OutputError
from realspike_cli.core.files import check_folder, describe_os_error

LOCK_FILE = ".realspike.lock"
PREVIOUS_RUN = ".previous-run"


class RunDirectory:
    def __init__(self, path: str | Path, run_files: Sequence[str], saves: Sequence[str]) -> None:
        """`run_files`: what makes a run (moved aside by --overwrite); `saves`: those whose presence means
        a run has saved (a checkpoint or resume point, not only a metrics line)."""
        self.path = Path(path)
        self.run_files, self.saves = tuple(run_files), tuple(saves)
        self._lock_fd: int | None = None
        self._previous_pending = False  # old files set aside by this run, not yet superseded
        self._created = False  # this run made the directory (removed again if left empty)

    @property
    def previous(self) -> Path:
        return self.path / PREVIOUS_RUN

    def existing(self) -> list[str]:
        return [f for f in self.run_files if (self.path / f).exists()]

    def claim(self) -> None:
        """Create the directory and take its lock (at once, or fail naming the holder). Idempotent."""
        if self._lock_fd is not None:
            return
        check_folder(self.path)
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = self._locked()
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            self.release()
            lock = self.path / LOCK_FILE
            raise OutputError(f"cannot write in run directory {self.path}: {describe_os_error(exc, lock)}") from None
        self._lock_fd = fd
        self._resolve_interrupted_overwrite()

    def _locked(self) -> int:
        """The lock file, flocked; retried if a finishing run removed it between our open and our lock."""
        lock = self.path / LOCK_FILE
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise ConfigError(f"run directory {self.path} is in use by another training run{holder}; wait "
                                  "for it to finish or choose another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def set_aside_previous(self) -> None:
        """Move the existing run's files into .previous-run/ (same file system: renames, no copies)."""
        existing = self.existing()
        if not existing:
            return
        self.previous.mkdir(exist_ok=True)
        for name in existing:
            os.replace(self.path / name, self.previous / name)
        self._previous_pending = True

    def saved(self) -> None:
        """The new run has saved a checkpoint or resume point: the run it replaces can go."""
        if self._previous_pending:
            shutil.rmtree(self.previous, ignore_errors=True)
            self._previous_pending = False

    def release(self) -> None:
        """At the end of the run, however it ended: restore a run set aside if nothing replaced it; unlock."""
        if self._previous_pending:
            self._restore()
            self._previous_pending = False
        if self._lock_fd is not None:
            (self.path / LOCK_FILE).unlink(missing_ok=True)  # while still held: a waiting run then retries
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None
        if self._created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()  # a run that failed before writing anything leaves no empty folder either
            self._created = False

    def _restore(self) -> None:
        for entry in self.previous.iterdir():
            os.replace(entry, self.path / entry.name)
        self.previous.rmdir()

    def _resolve_interrupted_overwrite(self) -> None:
        """A .previous-run/ left by a run killed outright: back in place if that run saved nothing, else gone."""
        if not self.previous.is_dir():
            return
        if any((self.path / name).exists() for name in self.saves):
            shutil.rmtree(self.previous)
        else:
            self._restore()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {text})" if text.isdigit() else ""
