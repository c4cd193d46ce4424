"""A validation split carved out of the training set, so `best` can be selected without looking at the test set.

The carve-out is deterministic: the same (fraction, seed) always holds out the same images. It is stratified
by class where the data set exposes its labels (`labels` of in-memory sets such as mnist10k, `targets` of
torchvision and ImageFolder sets): each class gives `round(fraction · its count)` images, at least one when the
class has two or more. Where the labels are not exposed (e.g. cifar10-dvs) a uniform random subset of
`round(fraction · N)` images is held out. The test set is never touched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch.utils.data import Dataset, Subset

from realspike_cli.core.datasets import DataSplits
from realspike_cli.core.datasets.loaders import InMemoryDataset
from realspike_cli.core.errors import ConfigError

# The split's own stream, so that changing it never shifts the training order (which is seeded separately).
_SPLIT_SEED_OFFSET = 424_242


def check_fraction(fraction: float) -> float:
    if not math.isfinite(fraction) or not 0.0 <= fraction < 1.0:
        raise ConfigError(f"the validation split must be a fraction in [0, 1), got {fraction}")
    return float(fraction)


def dataset_labels(dataset: Dataset) -> list[int] | None:
    """The class of every sample without loading any image, where the data set exposes them; else None."""
    if isinstance(dataset, InMemoryDataset):
        return dataset.labels.tolist()
    if isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        return None if inner is None else [inner[i] for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, (list, tuple, torch.Tensor)) and len(targets) == len(dataset):  # type: ignore[arg-type]
        return [int(t) for t in targets]
    return None


def split_indices(n: int, labels: Sequence[int] | None, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices, each sorted; stratified when `labels` are given."""
    check_fraction(fraction)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + _SPLIT_SEED_OFFSET)
    if labels is None:
        order = torch.randperm(n, generator=generator).tolist()
        held = set(order[: round(fraction * n)])
    else:
        held = set()
        by_class: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            by_class.setdefault(int(y), []).append(i)
        for y in sorted(by_class):
            members = by_class[y]
            take = round(fraction * len(members))
            if fraction > 0 and take == 0 and len(members) > 1:
                take = 1
            perm = torch.randperm(len(members), generator=generator).tolist()
            held.update(members[j] for j in perm[:take])
    if fraction > 0 and (not held or len(held) == n):
        raise ConfigError(f"a validation split of {fraction} leaves no validation or no training images (of {n})")
    return [i for i in range(n) if i not in held], sorted(held)


def subset(dataset: Dataset, indices: list[int]) -> Dataset:
    """The samples at `indices`; an in-memory set stays in memory (whole-batch indexing keeps working)."""
    if isinstance(dataset, InMemoryDataset):
        part = copy.copy(dataset)
        index = torch.tensor(indices, dtype=torch.long)
        part.images, part.labels = dataset.images[index], dataset.labels[index]
        return part
    part = Subset(dataset, indices)
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        part.classes = classes  # type: ignore[attr-defined]
    return part


def with_validation(data: DataSplits, fraction: float, seed: int, *, val_source: Dataset | None = None) -> DataSplits:
    """`data` with `fraction` of its training set held out as `val` (the test set unchanged).

    `val_source`: the same training images without augmentation (e.g. the data set loaded with
    augment="none"), so validation images are seen as test images are; default: the training set itself."""
    if check_fraction(fraction) == 0.0:
        return data
    if data.val is not None:
        raise ConfigError("this data set already has its own validation split; do not also ask for a val split")
    source = data.train if val_source is None else val_source
    if len(source) != len(data.train):  # type: ignore[arg-type]
        raise ConfigError("val_source must hold the same images as the training set, in the same order")
    train_idx, val_idx = split_indices(len(data.train), dataset_labels(data.train), fraction, seed)  # type: ignore
    return replace(data, train=subset(data.train, train_idx), val=subset(source, val_idx))

