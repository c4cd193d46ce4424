"""A restricted unpickler for data files that are pickles by format (the CIFAR python releases).

A pickle is a program: `pickle.load` on a crafted file runs any code it names. This unpickler builds only
what the CIFAR releases hold: dicts, lists, tuples, str, bytes, numbers and numeric numpy arrays. The only
callables a pickle may name are the three numpy array constructors and the latin-1 bytes encoder that
Python 3 uses for bytes in protocol 2, each behind a wrapper that checks its arguments. Anything else
(`os.system`, `builtins.eval`, an object dtype, ...) stops the load before it is called.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, under whatever module it lives
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: arrays of plain numbers only, never objects


class NotPlainData(pickle.UnpicklingError):
    """The pickle names something other than plain data (it was stopped before anything was called)."""


class _ArrayClass:
    """Stands for `numpy.ndarray` inside the pickle: usable only as the class argument of `_reconstruct`,
    so a pickle cannot call `ndarray(shape)` and allocate what it likes."""

    __slots__ = ()

    def __call__(self, *args: Any) -> Any:
        raise NotPlainData("refusing to call numpy.ndarray directly: the file is not plain data")

    def __setstate__(self, state: Any) -> None:
        raise NotPlainData("refusing to modify a constructor")


class _Guarded:
    """An allowed callable; immutable, so a pickle's BUILD cannot change it for the next load."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name: str, value: Any) -> None:
        raise NotPlainData("refusing to modify a constructor")

    def __setstate__(self, state: Any) -> None:
        raise NotPlainData("refusing to modify a constructor")

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if not isinstance(cls, _ArrayClass) or shape != (0,) or not isinstance(typecode, (bytes, str)):
        raise NotPlainData("numpy array constructor called with unexpected arguments")
    return _RECONSTRUCT(np.ndarray, (0,), typecode)  # an empty array; BUILD then fills it from the file's bytes


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(spec, str) or len(spec) > 8:
        raise NotPlainData(f"numpy dtype {spec!r} is not allowed")
    dtype = np.dtype(spec)
    if dtype.kind not in _NUMERIC_KINDS:
        raise NotPlainData(f"numpy dtype {spec!r} is not a plain number type")
    return dtype


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise NotPlainData("bytes encoder called with unexpected arguments")
    return text.encode("latin-1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _Guarded(_reconstruct),  # numpy 1.x name, as in the releases
    ("numpy._core.multiarray", "_reconstruct"): _Guarded(_reconstruct),  # numpy 2.x name (re-pickled copies)
    ("numpy", "ndarray"): _ArrayClass(),
    ("numpy", "dtype"): _Guarded(_dtype),
    ("_codecs", "encode"): _Guarded(_latin1),
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise NotPlainData(f"refusing to load {module}.{name}: the file is not plain data") from None

    def persistent_load(self, pid: Any) -> Any:
        raise NotPlainData("refusing a persistent reference: the file is not plain data")


def load_plain_pickle(file: BinaryIO | bytes) -> Any:
    """Unpickle data (latin-1 for Python 2 strings, as torchvision reads CIFAR) with the allow-list above.

    Raises NotPlainData for anything that is not plain data; other exceptions for damaged files.
    """
    stream = io.BytesIO(file) if isinstance(file, bytes) else file
    result = _Restricted(stream, encoding="latin1").load()
    _check_plain(result)
    return result


def _check_plain(value: Any, depth: int = 0) -> None:
    """Only plain containers and values may come out (BUILD could otherwise have set state on a stand-in)."""
    if depth > 20:
        raise NotPlainData("data nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, depth + 1)
            _check_plain(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, depth + 1)
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise NotPlainData("an array of objects is not plain data")
    elif value is not None and not isinstance(value, (str, bytes, bool, int, float)):
        raise NotPlainData(f"a {type(value).__name__} is not plain data")
