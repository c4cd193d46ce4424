""".npy arrays read without trusting them: the header is read and checked against the bytes that follow
before any memory is allocated for the data, object (pickled) arrays are refused, and the data is loaded
with `allow_pickle=False`. Used by the `npz` data set and by DVS128 Gesture's .npy recordings.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from realspike_cli.core.datasets.files import one_line
from realspike_cli.core.errors import DataError


def npy_header(stream: IO[bytes], what: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of the .npy data in `stream`, positioned at its start."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported (save with numpy)")
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise DataError(f"{what} is not a readable .npy array ({one_line(error)})") from None
    return tuple(int(s) for s in shape), dtype, stream.tell()


def check_npy(shape: tuple[int, ...], dtype: np.dtype, data_bytes: int, what: str) -> None:
    """Refuse object arrays (they are pickles) and headers that claim more or less data than there is."""
    if dtype.hasobject:
        raise DataError(f"{what} holds Python objects (a pickle), refusing to load it; save numbers only")
    expected = math.prod(shape) * dtype.itemsize
    if expected != data_bytes:
        raise DataError(f"{what} is damaged: its header describes {shape} {dtype} ({expected:,} bytes) but it "
                        f"holds {data_bytes:,} bytes of data")


def load_npy(path: str | Path, what: str) -> np.ndarray:
    """A .npy file's array, checked as above before its data is read."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            shape, dtype, offset = npy_header(f, what)
            check_npy(shape, dtype, path.stat().st_size - offset, what)
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except OSError as error:
        raise DataError(f"cannot read {what} ({one_line(error)})") from None


def npz_headers(path: Path, names: list[str], what: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array `names` present in the .npz archive at `path`, checked, unread."""
    found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            for name in names:
                info = members.get(f"{name}.npy")
                if info is None:
                    continue
                with archive.open(info) as stream:
                    shape, dtype, offset = npy_header(stream, f"{what}: array {name!r}")
                check_npy(shape, dtype, info.file_size - offset, f"{what}: array {name!r}")
                found[name] = (shape, dtype)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{what} is not a readable .npz archive ({one_line(error)})") from None
    return found


def npz_arrays(path: Path, names: list[str], what: str) -> dict[str, Any]:
    """The arrays `names` of the archive (headers already checked by npz_headers), loaded without pickle."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in names}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # CRC or truncated data
        raise DataError(f"{what} is damaged ({one_line(error)})") from None
