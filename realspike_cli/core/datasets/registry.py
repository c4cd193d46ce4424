"""Data set registry: each data set is one loader `fn(options) -> (train, test)` under `@register_dataset(info)`.

The registry imports no data set: providers (the built-in modules of this package, plugins) import it and
register themselves; the package `realspike_cli.core.datasets` makes sure they are loaded before a lookup.

A loader returns the train and test splits as torch Datasets of (x, y); x is [C, H, W] for direct-encoded
images and [T, C, H, W] for event frames. Where classes, channels or size depend on the files or on the
options (a user's image folder, a resizable event set), the provider also registers `info_from(options)`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realspike_cli.core.errors import ConfigError, UnknownNameError
from realspike_cli.core.limits import MAX_SIDE, MAX_TIME_STEPS  # the bounds of every spec (MAX_SIDE: re-exported)
from realspike_cli.core.specs import Encoding

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from realspike_cli.core.plugins import Provider
    from realspike_cli.core.specs import ModelSpec


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set, available without loading it.

    `from_data`: classes, channels and size come from the files (`dataset_info(name, options)` reads
    them); the counts here are then 0, a placeholder and never a shape to build.
    """

    name: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    encoding: Encoding = Encoding.DIRECT
    default_time_steps: int = 4
    default_dir: str = ""
    how_to_get: str = ""
    citation: str = ""
    from_data: bool = False


def _positive_int(value: Any, what: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise ConfigError(f"{what} must be a whole number from 1 to {top}, got {value!r}")
    return value


def _stats(value: Any, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, (int, float)) else tuple(value)
    if not 1 <= len(values) <= 3 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise ConfigError(f"{what} must be 1 or 3 numbers (one per channel), got {value!r}")
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{what} must be finite numbers, got {value!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class DataOptions:
    """Where and how to load.

    `augment`: "none", or "standard" (the data set's recipe). `time_steps`: frames per event recording.
    `image_size` (H, W): resize to this (image folders, arrays, event frames). `channels`: 1 (grayscale) or
    3 (RGB) to convert images to; None detects. `mean`/`std`: per-channel normalization (1 or 3 numbers)
    instead of the statistics computed from the training split. Data sets with a fixed shape refuse a size
    or channel count other than their own.
    """

    data_dir: Path | None = None
    download: bool = False
    augment: str = "standard"
    time_steps: int | None = None
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.augment not in ("none", "standard"):
            raise ConfigError(f"unknown augmentation {self.augment!r} (choose from: none, standard)")
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.time_steps is not None:
            _positive_int(self.time_steps, "time steps", MAX_TIME_STEPS)
        if self.image_size is not None:
            size = tuple(self.image_size) if isinstance(self.image_size, (tuple, list)) else (self.image_size,)
            if len(size) != 2:
                raise ConfigError(f"image size must be (height, width), got {self.image_size!r}")
            object.__setattr__(self, "image_size", tuple(_positive_int(s, "image side", MAX_SIDE) for s in size))
        if self.channels not in (None, 1, 3) or isinstance(self.channels, bool):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        mean, std = _stats(self.mean, "mean"), _stats(self.std, "std")
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std, or neither (then they are computed from the training split)")
        if std is not None and min(std) <= 0:
            raise ConfigError(f"std must be positive, got {self.std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)


@dataclass
class DataSplits:
    """`val`: a validation split (the data set's own, or carved from `train` by core.validation); when present,
    training selects `best` on it and evaluates the test set once, at the end."""

    info: DatasetInfo
    train: Dataset
    test: Dataset
    val: Dataset | None = None


Loader = Callable[[DataOptions], "tuple[Dataset, Dataset]"]
InfoFrom = Callable[[DataOptions], DatasetInfo]


@dataclass(frozen=True)
class DatasetEntry:
    info: DatasetInfo  # fixed, or the placeholder/default that `info_from` refines
    loader: Loader
    info_from: InfoFrom | None = None
    provider: Provider | None = field(default=None)  # the installed distribution of a plugin; None: realspike

    def info_for(self, options: DataOptions | None) -> DatasetInfo:
        """The info of the data set as `options` would load it; None: what is known without reading files."""
        if options is None:
            return self.info
        self.check_options(options)
        return self.info if self.info_from is None else self.info_from(options)

    def check_options(self, options: DataOptions) -> None:
        """Shape and normalization options a data set cannot honour are refused, not ignored."""
        info, shape = self.info, f"{self.info.in_channels}×{self.info.input_size[0]}×{self.info.input_size[1]}"
        if self.info_from is None and options.image_size not in (None, info.input_size):
            size = "×".join(map(str, options.image_size))  # type: ignore[arg-type]
            raise ConfigError(f"data set {info.name!r} is always {shape}: it cannot be resized to {size}")
        if options.channels is not None and not info.from_data and options.channels != info.in_channels:
            raise ConfigError(f"data set {info.name!r} has {info.in_channels} channels, not {options.channels}")
        if options.mean is not None and not info.from_data:
            raise ConfigError(f"data set {info.name!r} has fixed preprocessing: mean/std cannot be given for it")


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(info: DatasetInfo, *, info_from: InfoFrom | None = None) -> Callable[[Loader], Loader]:
    """Register `fn(options) -> (train, test)` under `info.name`; a duplicate name is an error.

    `info_from(options)`: the DatasetInfo as those options would load it, for data sets whose classes or
    shape depend on the files or the options (it may read file headers, never whole data sets).
    """

    def decorate(fn: Loader) -> Loader:
        from realspike_cli.core.plugins import provider_of_module

        if info.name in _REGISTRY:
            raise ValueError(f"data set {info.name!r} is registered twice")
        _REGISTRY[info.name] = DatasetEntry(info, fn, info_from, provider_of_module(fn.__module__))
        return fn

    return decorate


def registered_datasets() -> dict[str, DatasetEntry]:
    """The data sets registered so far (a copy)."""
    return dict(_REGISTRY)


def find_dataset(name: str, *, required: bool = False) -> DatasetEntry | None:
    """The entry of `name` if registered; with `required`, UnknownNameError ("did you mean") otherwise."""
    if name in _REGISTRY or not required:
        return _REGISTRY.get(name)
    raise UnknownNameError("data set", name, _REGISTRY)


def load_entry(entry: DatasetEntry, options: DataOptions) -> DataSplits:
    """Both splits of `entry` as `options` asks, with the info they were loaded with."""
    info = entry.info_for(options)
    train, test = entry.loader(options)
    return DataSplits(info, train, test)


def options_for(entry: DatasetEntry, spec: ModelSpec, **fields: Any) -> DataOptions:
    """Un-augmented test-time options that give inputs of `spec`'s shape and T (eval, energy, probes).

    A resizable data set is loaded at the model's input size, and one whose channels come from the files at
    its channel count; for fixed data sets the shape is left to the compatibility check.
    """
    shaped: dict[str, Any] = {}
    if entry.info_from is not None:
        shaped["image_size"] = tuple(spec.input_size)
    if entry.info.from_data:
        shaped["channels"] = spec.in_channels if spec.in_channels in (1, 3) else None
    return replace(DataOptions(augment="none", time_steps=spec.time_steps), **shaped, **fields)


def resolve_dir(info: DatasetInfo, options: DataOptions) -> Path:
    """The directory a data set is read from: --data-dir, else $REALSPIKE_DATA/<default_dir>, else ./data."""
    if options.data_dir is not None:
        return Path(options.data_dir).expanduser()
    root = Path(os.environ.get("REALSPIKE_DATA", "data")).expanduser()
    return root / info.default_dir if info.default_dir else root


__all__ = [
    "DataOptions", "DataSplits", "DatasetEntry", "DatasetInfo", "InfoFrom", "Loader", "find_dataset", "load_entry",
    "options_for", "register_dataset", "registered_datasets", "resolve_dir",
]
