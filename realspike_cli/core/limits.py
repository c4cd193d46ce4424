"""The range of every value a model spec, a training recipe or a checkpoint's metadata may hold, in one place.

Flags, Python API arguments and checkpoint metadata all pass through these checkers, so `--t 10000000`, a
checkpoint saying `"time_steps": 1e9` and `ModelSpec(time_steps=True)` are refused by the same rule, with one
`InvalidValue` (a ConfigError) naming the field. Nothing is coerced: a bool is not an integer, 4.7 and 4.0 are
not integers, NaN and infinities are not numbers here. The table is docs/robustness.md, "Input validation".
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from realspike_cli.core.errors import ConfigError

MAX_TIME_STEPS = 1024  # beyond this T is a typo (and the activations of one batch would not fit)
MAX_SIDE = 4096  # pixels per image side; larger inputs are a mistake (a full-size photo fed unresized)
MAX_PIXELS = 2048 * 2048  # pixels per image: an element-wise coefficient of 32 channels is then 0.5 GB
MAX_CHANNELS = 1024  # input channels
MAX_CLASSES = 50_000  # ImageNet-21k has 21,841
WIDTH_RANGE = (0.01, 16.0)  # the channel width multiplier of the built-in architectures
MAX_SEED = 2**32 - 1  # seeds are mixed with epoch and rank into torch generator seeds (at most 2**63 - 1)
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 20
MAX_LR = 100.0
MAX_NAME = 100  # characters of an architecture, data set or option name
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class InvalidValue(ConfigError):
    """A value out of its range or of the wrong type; `field` names it (dotted within metadata)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


@contextmanager
def fields_of(prefix: str) -> Iterator[None]:
    """Inside, an InvalidValue's field is reported as `prefix.field` (e.g. model.neuron.v_th)."""
    try:
        yield
    except InvalidValue as exc:
        raise InvalidValue(f"{prefix}.{exc.field}", exc.problem) from None


def shown(value: Any) -> str:
    """A value as it appears in a message: short, one line (a crafted string may hold newlines)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(value: Any, field: str, low: int, high: int) -> int:
    """An int (numpy integers too) in [low, high]; bools, floats (even 4.0) and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= int(value) <= high:
        raise InvalidValue(field, f"must be an integer from {low:,} to {high:,}, got {shown(value)}")
    return int(value)


def real(value: Any, field: str, low: float | None = None, high: float | None = None, *,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite number (ints too, not bools) in the interval; NaN and infinities are refused."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise InvalidValue(field, f"must be a finite number{_interval(low, high, low_open, high_open)}, "
                                  f"got {shown(value)}")
    return float(value)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f" {'<' if high_open else '<='} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(field, f"must be true or false, got {shown(value)}")
    return value


def text(value: Any, field: str, max_length: int = 1000) -> str:
    """A string of at most `max_length` characters on one line."""
    if not isinstance(value, str) or len(value) > max_length or any(c in value for c in "\n\r\x00"):
        raise InvalidValue(field, f"must be one line of text (at most {max_length:,} characters), got {shown(value)}")
    return value


def name(value: Any, field: str) -> str:
    """A registry name: letters, digits and `_ . + -`, at most MAX_NAME characters."""
    if not isinstance(value, str) or len(value) > MAX_NAME or not _NAME.fullmatch(value):
        raise InvalidValue(field, f"must be a name of letters, digits, '_', '.', '+' or '-' (at most {MAX_NAME} "
                                  f"characters), got {shown(value)}")
    return value


def choice(value: Any, field: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidValue(field, f"must be one of {', '.join(choices)}; got {shown(value)}")
    return value


def input_size(value: Any, field: str = "input_size") -> tuple[int, int]:
    """(height, width): two integers from 1 to MAX_SIDE with at most MAX_PIXELS pixels in all."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise InvalidValue(field, f"must be [height, width], got {shown(value)}")
    h, w = (integer(v, field, 1, MAX_SIDE) for v in value)
    if h * w > MAX_PIXELS:
        raise InvalidValue(field, f"must hold at most {MAX_PIXELS:,} pixels, got {h}×{w} = {h * w:,}")
    return h, w


def width(value: Any, field: str = "arch_kwargs.width") -> float:
    low, high = WIDTH_RANGE
    return real(value, field, low, high)


def seed(value: Any, field: str = "seed") -> int:
    return integer(value, field, 0, MAX_SEED)
