"""Data set registry: each data set is one loader function under `@register_dataset(DatasetInfo(...))`.

A loader returns the train and test splits as torch Datasets of (x, y); x is [C, H, W] for direct-encoded
images and [T, C, H, W] for event frames. Batching, sharding and resumable order live in `loaders.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from realspike_cli.core.errors import ConfigError, UnknownNameError
from realspike_cli.core.specs import Encoding


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set, available without loading it."""

    name: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    encoding: Encoding = Encoding.DIRECT
    default_time_steps: int = 4
    default_dir: str = ""
    how_to_get: str = ""
    citation: str = ""


@dataclass(frozen=True)
class DataOptions:
    """Where and how to load: `augment` is "none" or "standard" (the data set's paper recipe)."""

    data_dir: Path | None = None
    download: bool = False
    augment: str = "standard"
    time_steps: int | None = None

    def __post_init__(self) -> None:
        if self.augment not in ("none", "standard"):
            raise ConfigError(f"unknown augmentation {self.augment!r} (choose from: none, standard)")


@dataclass
class DataSplits:
    """`val`: a validation split (the data set's own, or carved from `train` by core.validation); when present,
    training selects `best` on it and evaluates the test set once, at the end."""

    info: DatasetInfo
    train: Dataset
    test: Dataset
    val: Dataset | None = None


Loader = Callable[[DataOptions], tuple[Dataset, Dataset]]
_REGISTRY: dict[str, tuple[DatasetInfo, Loader]] = {}


def register_dataset(info: DatasetInfo) -> Callable[[Loader], Loader]:
    """Register `fn(options) -> (train, test)` under `info.name`; a duplicate name is an error."""

    def decorate(fn: Loader) -> Loader:
        if info.name in _REGISTRY:
            raise ValueError(f"data set {info.name!r} is registered twice")
        _REGISTRY[info.name] = (info, fn)
        return fn

    return decorate


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    if name not in _REGISTRY:
        raise UnknownNameError("data set", name, _REGISTRY)
    return _REGISTRY[name][0]


def load_dataset(name: str, options: DataOptions | None = None) -> DataSplits:
    info = dataset_info(name)
    train, test = _REGISTRY[name][1](options or DataOptions())
    return DataSplits(info, train, test)


def resolve_dir(info: DatasetInfo, options: DataOptions) -> Path:
    """The directory a data set is read from: --data-dir, else $REALSPIKE_DATA/<default_dir>, else ./data."""
    import os

    if options.data_dir is not None:
        return Path(options.data_dir).expanduser()
    root = Path(os.environ.get("REALSPIKE_DATA", "data")).expanduser()
    return root / info.default_dir if info.default_dir else root


# Registration happens on import; each module adds one or more data sets.
from realspike_cli.core.datasets import cifar, dvs, imagenet, mnist  # noqa: E402,F401
