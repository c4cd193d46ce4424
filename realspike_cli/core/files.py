"""Writing files safely: the one atomic writer every output of the tool goes through, and the checks before it.

`atomic_write` writes a temporary file beside the destination, fsyncs it and renames it into place, so a
crash, a full disk or a signal never leaves half a file under the destination's name; it refuses to replace a
file unless asked. Its temporary files are named `.<name>.<host>.<pid>.<random>.realspike-tmp`: one left by a
process that was killed outright (SIGKILL, power loss) is recognised by the next write into that folder and
removed. Files get the permissions of any other file the user creates (0666 minus the umask).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from realspike_cli.core.errors import OutputError, RealSpikeError

TEMP_SUFFIX = ".realspike-tmp"
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")
# A library that writes a file itself (safetensors, in Rust) reports the OS error inside its own message.
_ERRNO_IN_TEXT = re.compile(r"os error (\d+)|code: (\d+)")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "host"


def umask() -> int:
    """The process umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: str | Path, *, overwrite: bool) -> Path:
    """Refuse, before any work, an output path that cannot become a file: one that exists (without
    `overwrite`), a folder, a path under a file, or one in a folder that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; choose another output path or pass --overwrite")
    check_folder(path.parent)
    return path


def check_folder(folder: str | Path) -> Path:
    """A folder that exists or can be created: its nearest existing ancestor must be a writable folder."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write under {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        problem = "the file system is read-only" if _read_only(existing) else "permission denied"
        raise OutputError(f"cannot write in {existing}: {problem}")
    return folder


def _read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


def atomic_write(path: str | Path, write: Callable[[Path], Any], *, overwrite: bool) -> Path:
    """Call `write(tmp_path)`, then fsync and rename into place: never half a file under `path`.

    Refuses an existing `path` unless `overwrite`. Any operating-system failure (full disk, read-only,
    permission) is one OutputError naming `path`; errors the writer raises itself pass through unchanged."""
    path = check_output(path, overwrite=overwrite)
    with new_folders(path.parent):
        _write_and_rename(path, write, overwrite)
    return path


@contextmanager
def new_folders(folder: Path) -> Iterator[None]:
    """Create `folder` (and its missing parents) for the block; if the block fails, the folders it created
    go again (those still empty), so a failed write leaves no trace."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {describe_os_error(exc, folder)}") from None
    try:
        yield
    except BaseException:
        for created in reversed(missing):
            try:
                created.rmdir()
            except OSError:
                break  # not empty: something else was put there
        raise


def _write_and_rename(path: Path, write: Callable[[Path], Any], overwrite: bool) -> None:
    try:
        remove_stale_temps(path.parent)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.", suffix=TEMP_SUFFIX,
                                    dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {describe_os_error(exc, path)}") from None
    tmp = Path(name)
    try:
        write(tmp)
        # After the writer: some (safetensors) replace the file, so its mode is set on what they left.
        os.chmod(tmp, 0o666 & ~umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if path.exists() and not overwrite:  # appeared while we wrote (another process): still not ours to replace
            raise OutputError(f"{path} already exists; choose another output path or pass --overwrite")
        os.replace(tmp, path)
    except RealSpikeError:
        raise
    except Exception as exc:
        reason = _os_reason(exc, path)
        if reason is None:
            raise
        raise OutputError(f"cannot write {path}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _os_reason(exc: BaseException, path: Path) -> str | None:
    """The operating-system reason behind a failed write, whoever raised it; None if it was not one."""
    if isinstance(exc, OSError):
        return describe_os_error(exc, path)
    match = _ERRNO_IN_TEXT.search(str(exc))
    if match:
        return describe_os_error(OSError(int(match.group(1) or match.group(2)), ""), path)
    return None


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove this tool's temporary files in `folder` whose process (on this host) no longer runs."""
    removed = []
    host = _host()
    for entry in folder.glob(f".*{TEMP_SUFFIX}"):
        match = _TEMP_NAME.match(entry.name)
        if match and match["host"] == host and not _alive(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def probe_folder(folder: str | Path, size: int = 1) -> None:
    """Prove `folder` takes a file of `size` bytes (reserved with posix_fallocate, not written) and remove
    it again: long work checks this first rather than failing at its first save."""
    folder = check_folder(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder)
        fd, name = tempfile.mkstemp(prefix=f".probe.{_host()}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=folder)
        try:
            os.posix_fallocate(fd, 0, max(1, size))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        need = f" (a {size / 1e6:.1f} MB file was tried)" if size > 1 else ""
        raise OutputError(f"cannot write in {folder}: {describe_os_error(exc, folder)}{need}") from None


_HINTS = {
    errno.ENOSPC: "no space left on the device: free some space or choose another output path",
    errno.EDQUOT: "disk quota exceeded: free some space or choose another output path",
    errno.EFBIG: "file too large for this file system or the process's file size limit (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
}


def describe_os_error(exc: OSError, path: str | Path | None = None) -> str:
    """An OSError in words for one line: the reason, and the file it concerns where it is not `path`."""
    reason = _HINTS.get(exc.errno or -1) or exc.strerror or str(exc) or type(exc).__name__
    where = exc.filename if exc.filename is not None else None
    if where is not None and (path is None or Path(str(where)) != Path(path)):
        if not str(where).endswith(TEMP_SUFFIX):  # a temporary file's name means nothing to the user
            reason = f"{where}: {reason}"
    return reason
