"""`imagenet`: ILSVRC-2012 as class folders `<dir>/train/<wnid>/` and `<dir>/val/<wnid>/` (ImageFolder's
layout, read by the shared safe scanner of `files.py`), with the standard ResNet preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from realspike_cli.core.datasets.files import ImageFiles, class_folders, labelled_files, open_image, real_root
from realspike_cli.core.datasets.registry import DataOptions, DatasetInfo, register_dataset, resolve_dir
from realspike_cli.core.errors import DataError

IMAGENET = DatasetInfo(
    name="imagenet",
    num_classes=1000,
    in_channels=3,
    input_size=(224, 224),
    default_time_steps=4,
    default_dir="imagenet",
    how_to_get=(
        "it cannot be downloaded automatically: get ILSVRC-2012 from image-net.org and lay it out as "
        "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG under --data-dir"
    ),
    citation="Deng et al., ImageNet: A large-scale hierarchical image database, CVPR 2009",
)

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TITLE = "ImageNet"


def load_rgb(path: str) -> Any:
    """An image as RGB (what ImageFolder's reader gives); a damaged file is a DataError that names it."""
    return open_image(path, _TITLE).convert("RGB")


def imagenet_transforms(augment: str) -> tuple[Any, Any]:
    """(train, val) transforms: random-resized crop and flip to train with "standard", else centre crop."""
    from torchvision import transforms as T

    plain = [T.ToTensor(), T.Normalize(_MEAN, _STD)]
    val = T.Compose([T.Resize(256), T.CenterCrop(224), *plain])
    if augment == "none":
        return val, val
    return T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *plain]), val


def _split(root: Path, real: Path, split: str, transform: Any) -> ImageFiles:
    path = root / split
    if not path.is_dir() or not class_folders(path, real, _TITLE):
        raise DataError(f"ImageNet not found in {root} (no class folders in {split}/): {IMAGENET.how_to_get}")
    found, samples = labelled_files(path, real, _TITLE)
    return ImageFiles(samples, found, load_rgb, transform)


@register_dataset(IMAGENET)
def load_imagenet(options: DataOptions) -> tuple[Dataset, Dataset]:
    # --download is accepted and ignored: ImageNet's licence rules out fetching it for the user, and the
    # missing-data error already says where to get it.
    root = resolve_dir(IMAGENET, options)
    if not root.is_dir():
        raise DataError(f"ImageNet not found in {root} (no class folders in train/): {IMAGENET.how_to_get}")
    real = real_root(root, _TITLE)
    train_tf, val_tf = imagenet_transforms(options.augment)
    train = _split(root, real, "train", train_tf)
    # A subset of the classes is fine (handy for tests and quick runs); labels past the head's size are not,
    # and val must index classes exactly as train does or every label would be silently wrong.
    if len(train.classes) > IMAGENET.num_classes:
        raise DataError(f"ImageNet in {root} has {len(train.classes)} class folders in train/, more than 1000")
    val = _split(root, real, "val", val_tf)
    if val.classes != train.classes:
        extra = sorted(set(val.classes) ^ set(train.classes))
        raise DataError(
            f"ImageNet in {root}: val/ and train/ hold different class folders (e.g. {extra[0]!r}); "
            "val must be sorted into the same <wnid> folders as train"
        )
    return train, val
