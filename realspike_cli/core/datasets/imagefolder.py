"""`imagefolder`: a user's own images, one folder per class (torchvision ImageFolder's layout).

Either `DIR/train/<class>/*` and `DIR/test/<class>/*` (or `val/` instead of `test/`), or `DIR/<class>/*`,
which is split deterministically: a tenth of each class (seed 0, files in sorted order) is the test set.
Classes, channels and size come from the files (`imagefolder_info`); images may be any size with
`image_size` (resized), else all of one size. Pixels are normalized per channel with the mean and standard
deviation of the training split, computed once per load, or with the given `mean`/`std`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from realspike_cli.core.datasets.files import (
    ImageFiles,
    image_header,
    labelled_files,
    one_line,
    open_image,
    real_root,
)
from realspike_cli.core.datasets.pixels import (
    channel_stats,
    check_mode,
    image_tensor,
    per_channel,
    resize,
    standard_shift,
)
from realspike_cli.core.datasets.registry import MAX_SIDE, DataOptions, DatasetInfo, register_dataset, resolve_dir
from realspike_cli.core.datasets.splits import split_indices
from realspike_cli.core.errors import ConfigError, DataError

IMAGEFOLDER = DatasetInfo(
    name="imagefolder",
    num_classes=0,
    in_channels=0,
    input_size=(0, 0),
    default_time_steps=4,
    default_dir="imagefolder",
    how_to_get="pass --data-dir pointing at a folder of class folders (DIR/<class>/*.png, or DIR/train/<class>/ "
    "and DIR/test/<class>/)",
    from_data=True,
)
_TITLE = "imagefolder"
NORMALIZATION_FILE = "normalization.json"  # optional: {"mean": [...], "std": [...]} used by every command


@dataclass(frozen=True)
class FolderLayout:
    """The labelled files of both splits; `split`: "folders" (train/ and test/) or "a tenth of each class"."""

    root: Path
    classes: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    split: str


def folder_layout(root: Path) -> FolderLayout:
    if not root.is_dir():
        raise DataError(f"imagefolder: {root} is not a folder: {IMAGEFOLDER.how_to_get}")
    real = real_root(root, _TITLE)
    if (root / "train").is_dir():
        tests = [name for name in ("test", "val") if (root / name).is_dir()]
        if len(tests) != 1:
            problem = "both test/ and val/" if tests else "no test/ (or val/) beside it"
            raise DataError(f"imagefolder: {root} has train/ and {problem}; keep exactly one test split")
        classes, train = labelled_files(root / "train", real, _TITLE)
        _, test = labelled_files(root / tests[0], real, _TITLE, classes=classes)
        split = "folders"
    else:
        lone = [name for name in ("test", "val") if (root / name).is_dir()]
        if lone:
            raise DataError(f"imagefolder: {root} has {lone[0]}/ but no train/ beside it")
        classes, samples = labelled_files(root, real, _TITLE)
        train_idx, test_idx = split_indices([label for _, label in samples])
        if not test_idx:
            raise DataError(f"imagefolder: {root} needs at least two images in some class to hold one out for test")
        train, test, split = [samples[i] for i in train_idx], [samples[i] for i in test_idx], "a tenth of each class"
    if len(classes) < 2:
        raise DataError(f"imagefolder: {root} holds one class folder ({classes[0]!r}); classifying needs two or more")
    return FolderLayout(root, classes, train, test, split)


def _detect(layout: FolderLayout, options: DataOptions) -> tuple[int, tuple[int, int]]:
    """Channels and size: as asked, else from the headers (grey when every image is grey; one common size)."""
    channels, size = options.channels, options.image_size
    if channels is not None and size is not None:
        return channels, size  # nothing to detect: skip reading a header per file
    grey, sizes = True, {}
    for path, _ in layout.train + layout.test:
        mode, hw = image_header(path, _TITLE)
        grey = check_mode(mode, path, _TITLE) and grey
        sizes.setdefault(hw, path)
    if size is None:
        if len(sizes) > 1:
            (a, pa), (b, pb) = list(sizes.items())[:2]
            raise DataError(f"imagefolder: images differ in size ({pa} is {a[0]}×{a[1]}, {pb} is {b[0]}×{b[1]}); "
                            "pass --image-size HxW to resize them all")
        size = next(iter(sizes))
        if max(size) > MAX_SIDE:
            raise DataError(f"imagefolder: images are {size[0]}×{size[1]}, larger than {MAX_SIDE} pixels a side; "
                            "pass --image-size HxW to resize them")
    return (channels if channels is not None else (1 if grey else 3)), size


def imagefolder_info(options: DataOptions) -> DatasetInfo:
    layout = folder_layout(resolve_dir(IMAGEFOLDER, options))
    channels, size = _detect(layout, options)
    return replace(IMAGEFOLDER, num_classes=len(layout.classes), in_channels=channels, input_size=size)


def read_image(path: str, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """One file as float32 [channels, *size] in [0, 1]."""
    return resize(image_tensor(open_image(path, _TITLE), channels, path, _TITLE), size)


def stored_normalization(path: Path) -> DataOptions:
    """`normalization.json` beside the class folders: {"mean": [...], "std": [...]}, checked strictly."""
    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not a number")

    try:
        if path.stat().st_size > 4096:
            raise ValueError("the file is larger than 4 kB")
        content = json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)
        if not isinstance(content, dict) or set(content) != {"mean", "std"}:
            raise ValueError('it must be one object with the keys "mean" and "std"')
        return DataOptions(mean=content["mean"], std=content["std"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, ConfigError) as error:
        raise DataError(f"imagefolder: {path} is not a valid normalization file ({one_line(error)})") from None


def _normalization(layout: FolderLayout, read: functools.partial, options: DataOptions, channels: int):
    """The given mean/std, else those of normalization.json in the folder, else the training split's."""
    stored = layout.root / NORMALIZATION_FILE
    given = options if options.mean is not None else stored_normalization(stored) if stored.is_file() else None
    if given is not None:
        mean = per_channel(given.mean, channels, "mean", _TITLE)  # type: ignore[arg-type]
        return mean, per_channel(given.std, channels, "std", _TITLE)  # type: ignore[arg-type]
    return channel_stats((read(path) for path, _ in layout.train), f"imagefolder {layout.root}")


@register_dataset(IMAGEFOLDER, info_from=imagefolder_info)
def load_imagefolder(options: DataOptions) -> tuple[Dataset, Dataset]:
    from torchvision.transforms import Compose

    from realspike_cli.core.datasets.transforms import Normalize, RandomShift

    layout = folder_layout(resolve_dir(IMAGEFOLDER, options))
    channels, size = _detect(layout, options)
    read = functools.partial(read_image, channels=channels, size=size)
    normalize = Normalize(*_normalization(layout, read, options, channels))
    train_tf = [RandomShift(standard_shift(size))] if options.augment == "standard" else []
    train = ImageFiles(layout.train, layout.classes, read, Compose([*train_tf, normalize]))
    return train, ImageFiles(layout.test, layout.classes, read, Compose([normalize]))
