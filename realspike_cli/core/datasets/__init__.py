"""Data sets by name: `load_dataset(name, DataOptions(...))`, `dataset_info(name, options)`, `list_datasets()`.

This package imports the built-in data sets (their modules register themselves with `registry`, importing
neither torchvision nor tonic until a data set is loaded) and, at the first lookup of a name that is not
built in, the data sets of installed plugins (entry-point group `realspike.datasets`). The registry it
reads (`registry.py`) imports neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from realspike_cli.core import plugins
from realspike_cli.core.datasets import (  # noqa: F401  (registration on import)
    cifar,
    dvs,
    gesture,
    imagefolder,
    imagenet,
    mnist,
    nmnist,
    npz,
)
from realspike_cli.core.datasets.registry import (
    DataOptions,
    DatasetEntry,
    DatasetInfo,
    DataSplits,
    find_dataset,
    load_entry,
    options_for,
    register_dataset,
    registered_datasets,
    resolve_dir,
)

if TYPE_CHECKING:
    from realspike_cli.core.plugins import Provider
    from realspike_cli.core.specs import ModelSpec

__all__ = [
    "DataOptions", "DataSplits", "DatasetInfo", "dataset_entry", "dataset_info", "dataset_provider", "list_datasets",
    "load_dataset", "options_for_model", "register_dataset", "resolve_dir",
]


def list_datasets() -> list[str]:
    """Every data set name: built in and from installed plugins."""
    plugins.load_group(plugins.DATASET_GROUP)
    return sorted(registered_datasets())


def dataset_entry(name: str) -> DatasetEntry:
    """The registry entry of `name`, loading plugins first if it is not built in; UnknownNameError if absent."""
    if find_dataset(name) is None:
        plugins.load_group(plugins.DATASET_GROUP)
    return find_dataset(name, required=True)  # type: ignore[return-value]


def dataset_info(name: str, options: DataOptions | None = None) -> DatasetInfo:
    """What a model needs to know about `name` as `options` would load it (classes, channels, size).

    Without options nothing is read: fixed data sets give their info, and those whose shape comes from the
    files (`info.from_data`, e.g. imagefolder) give a placeholder with 0 classes. With options, a data set
    of a user's files reads its folder (headers only) to answer.
    """
    return dataset_entry(name).info_for(options)


def load_dataset(name: str, options: DataOptions | None = None) -> DataSplits:
    """The train and test splits of `name`, with the DatasetInfo they were loaded with."""
    return load_entry(dataset_entry(name), options or DataOptions())


def options_for_model(name: str, spec: ModelSpec, **fields: Any) -> DataOptions:
    """Test-time options (no augmentation) that load `name` as inputs for a model of `spec`: its T, and for
    data sets that resize or read their shape from the files, its input size and channels. `fields`
    (data_dir, download, mean, std) are passed on."""
    return options_for(dataset_entry(name), spec, **fields)


def dataset_provider(name: str) -> Provider | None:
    """The installed distribution that registered `name` (None: built into realspike)."""
    return dataset_entry(name).provider
