"""`cifar10` and `cifar100`: the python pickle releases, read with a restricted unpickler (plain data only:
a crafted batch file cannot run code), with the authors' training augmentation (crop, flip, AutoAugment,
Cutout) from torchvision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from realspike_cli.core.datasets.files import one_line
from realspike_cli.core.datasets.registry import DataOptions, DatasetInfo, register_dataset, resolve_dir
from realspike_cli.core.datasets.safe_pickle import NotPlainData, load_plain_pickle
from realspike_cli.core.errors import DataError

CIFAR10 = DatasetInfo(
    name="cifar10",
    num_classes=10,
    in_channels=3,
    input_size=(32, 32),
    default_time_steps=4,
    default_dir="cifar10",
    how_to_get="pass --download, or --data-dir pointing at a folder holding cifar-10-batches-py/",
    citation="Krizhevsky, Learning Multiple Layers of Features from Tiny Images, tech. report, 2009",
)
CIFAR100 = DatasetInfo(
    name="cifar100",
    num_classes=100,
    in_channels=3,
    input_size=(32, 32),
    default_time_steps=4,
    default_dir="cifar100",
    how_to_get="pass --download, or --data-dir pointing at a folder holding cifar-100-python/",
    citation="Krizhevsky, Learning Multiple Layers of Features from Tiny Images, tech. report, 2009",
)

# Per-channel mean and standard deviation of the training images (true std, not the often-copied 0.2023...).
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_BASES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}  # torchvision's classes: file lists, URLs, md5s
# The files of each release, as its archive unpacks: (folder, training files, test files, meta, keys).
_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


class CifarImages(Dataset):
    """uint8 images [N, 32, 32, 3] and their labels; yields (transform(PIL image), label) as torchvision does."""

    def __init__(self, data: np.ndarray, targets: list[int], classes: list[str], transform: Any) -> None:
        self.data, self.targets, self.classes, self.transform = data, targets, classes, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def cifar_transforms(name: str, augment: str) -> tuple[Any, Any]:
    """(train, test) transforms; "standard" is the authors' recipe, "none" only converts and normalises."""
    from torchvision import transforms as T

    from realspike_cli.core.datasets.transforms import Cutout

    mean, std = _STATS[name]
    plain = [T.ToTensor(), T.Normalize(mean, std)]
    if augment == "none":
        return T.Compose(plain), T.Compose(plain)
    train = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            # The CIFAR-10 policy is used for CIFAR-100 too, as in the authors' recipe.
            T.AutoAugment(T.AutoAugmentPolicy.CIFAR10),
            *plain,
            Cutout(holes=1, length=16),
        ]
    )
    return train, T.Compose(plain)


def _download(name: str, root: Path) -> None:
    """Fetch and unpack the official archive; torchvision's downloader verifies its md5 before unpacking."""
    from torchvision import datasets
    from torchvision.datasets import utils

    base = getattr(datasets, _BASES[name])
    try:
        utils.download_and_extract_archive(base.url, str(root), filename=base.filename, md5=base.tgz_md5)
    except Exception as error:  # network, disk, or md5 failures all mean the same thing to the user
        raise DataError(f"could not download {_TITLES[name]} to {root}: {one_line(error)}") from error


def _read(path: Path, title: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            content = load_plain_pickle(f)
    except NotPlainData as error:
        raise DataError(f"{title} file {path} is not plain data, refusing to load it ({error})") from None
    except Exception as error:  # truncated or foreign files fail in many ways; all mean a damaged file
        raise DataError(f"{title} file {path} is corrupt or not the python pickle release ({one_line(error)}); "
                        "delete it and pass --download") from None
    if not isinstance(content, dict):
        raise DataError(f"{title} file {path} is corrupt: it holds a {type(content).__name__}, not a dict")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _batches(paths: list[Path], label_key: str, info: DatasetInfo) -> tuple[np.ndarray, list[int]]:
    """Images [N, 32, 32, 3] and labels of some batch files, validated before they are used."""
    title, images, labels = _TITLES[info.name], [], []
    for path in paths:
        batch = _read(path, title)
        data, targets = batch.get("data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{title} file {path} is corrupt: 'data' is not uint8 rows of 3072 pixels")
        if not isinstance(targets, list) or len(targets) != len(data):
            raise DataError(f"{title} file {path} is corrupt: {label_key!r} does not give one label per image")
        if any(isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < info.num_classes for y in targets):
            raise DataError(f"{title} file {path} is corrupt: labels outside 0..{info.num_classes - 1}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # rows are R, G, B planes
        labels += targets
    return np.ascontiguousarray(np.concatenate(images)), labels


def _class_names(path: Path, key: str, info: DatasetInfo) -> list[str]:
    names = _read(path, _TITLES[info.name]).get(key)
    if not isinstance(names, list) or len(names) != info.num_classes:
        raise DataError(f"{_TITLES[info.name]} file {path} is corrupt: {key!r} is not {info.num_classes} names")
    return [n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names]


def _load(info: DatasetInfo, options: DataOptions) -> tuple[Dataset, Dataset]:
    root = resolve_dir(info, options)
    folder_name, train_files, test_files, meta, label_key, names_key = _LAYOUT[info.name]
    folder = root / folder_name
    names = [*train_files, *test_files, meta]
    if options.download and not all((folder / n).is_file() for n in names):
        _download(info.name, root)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{_TITLES[info.name]} not found in {root} (no {folder_name}/{missing[0]}): {info.how_to_get}")
    classes = _class_names(folder / meta, names_key, info)
    train_tf, test_tf = cifar_transforms(info.name, options.augment)
    splits = []
    for files, transform in ((train_files, train_tf), (test_files, test_tf)):
        data, labels = _batches([folder / n for n in files], label_key, info)
        splits.append(CifarImages(data, labels, classes, transform))
    return splits[0], splits[1]


@register_dataset(CIFAR10)
def load_cifar10(options: DataOptions) -> tuple[Dataset, Dataset]:
    return _load(CIFAR10, options)


@register_dataset(CIFAR100)
def load_cifar100(options: DataOptions) -> tuple[Dataset, Dataset]:
    return _load(CIFAR100, options)
