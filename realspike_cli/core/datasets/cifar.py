"""`cifar10` and `cifar100`: torchvision's readers over the python pickle releases, with the authors' training
augmentation (random crop, flip, AutoAugment, Cutout).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from realspike_cli.core.datasets import DataOptions, DatasetInfo, register_dataset, resolve_dir
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
_BASES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


@functools.cache
def _presence_checked(base_name: str) -> type:
    """torchvision's CIFAR class, but with file checks reduced to presence.

    torchvision md5-checks every file on every load, which rejects hand-made fixtures and re-packed copies;
    `--download` still goes through torchvision's own class and its md5 checks. Built on first use so that
    importing the registry does not import torchvision; the module `__getattr__` below lets pickle
    (DataLoader workers) find it.
    """
    from torchvision import datasets

    base = getattr(datasets, base_name)

    def _check_integrity(self: Any) -> bool:
        folder = Path(self.root, self.base_folder)
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self: Any) -> None:
        # check_integrity(path, md5=None) only checks that the file exists; unpickling stays torchvision's.
        self.meta = {**type(self).meta, "md5": None}
        base._load_meta(self)

    name = f"PresenceChecked{base_name}"
    cls = type(name, (base,), {"_check_integrity": _check_integrity, "_load_meta": _load_meta})
    cls.__module__, cls.__qualname__ = __name__, name
    return cls


def __getattr__(name: str) -> type:
    if name.startswith("PresenceChecked") and name.removeprefix("PresenceChecked") in _BASES.values():
        return _presence_checked(name.removeprefix("PresenceChecked"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
    """Fetch with torchvision's own class: it verifies the archive md5 and then every extracted file's md5."""
    from torchvision import datasets

    title = _TITLES[name]
    try:
        getattr(datasets, _BASES[name])(str(root), train=False, download=True)
    except Exception as error:  # network, disk, or md5 failures all mean the same thing to the user
        raise DataError(f"could not download {title} to {root}: {_one_line(error)}") from error


def _load(info: DatasetInfo, options: DataOptions) -> tuple[Dataset, Dataset]:
    root = resolve_dir(info, options)
    title = _TITLES[info.name]
    if options.download:
        _download(info.name, root)
    cls = _presence_checked(_BASES[info.name])
    folder = root / cls.base_folder
    names = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{title} not found in {root} (no {cls.base_folder}/{missing[0]}): {info.how_to_get}")
    train_tf, test_tf = cifar_transforms(info.name, options.augment)
    try:
        train = cls(str(root), train=True, transform=train_tf)
        test = cls(str(root), train=False, transform=test_tf)
    except Exception as error:  # unpickling errors come in many types; all mean a damaged or foreign file
        raise DataError(
            f"{title} files in {folder} are corrupt or not the python pickle release ({_one_line(error)}); "
            "delete them and pass --download"
        ) from error
    for split in (train, test):
        if len(split.targets) != len(split.data) or any(not 0 <= y < info.num_classes for y in split.targets):
            raise DataError(f"{title} files in {folder} are corrupt: labels do not match the images")
    return train, test


@register_dataset(CIFAR10)
def load_cifar10(options: DataOptions) -> tuple[Dataset, Dataset]:
    return _load(CIFAR10, options)


@register_dataset(CIFAR100)
def load_cifar100(options: DataOptions) -> tuple[Dataset, Dataset]:
    return _load(CIFAR100, options)
