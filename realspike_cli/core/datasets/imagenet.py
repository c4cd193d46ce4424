"""`imagenet`: ILSVRC-2012 read by torchvision's ImageFolder from `<dir>/train/<wnid>/` and
`<dir>/val/<wnid>/`, with the standard ResNet preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from realspike_cli.core.datasets import DataOptions, DatasetInfo, register_dataset, resolve_dir
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


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_rgb(path: str) -> Any:
    """ImageFolder's image reader, but a damaged file becomes a DataError that names it."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError and truncation are OSErrors
        raise DataError(f"ImageNet image {path} is unreadable ({_one_line(error)})") from error


def imagenet_transforms(augment: str) -> tuple[Any, Any]:
    """(train, val) transforms: random-resized crop and flip to train with "standard", else centre crop."""
    from torchvision import transforms as T

    plain = [T.ToTensor(), T.Normalize(_MEAN, _STD)]
    val = T.Compose([T.Resize(256), T.CenterCrop(224), *plain])
    if augment == "none":
        return val, val
    return T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *plain]), val


def _folder(root: Path, split: str, transform: Any) -> Any:
    from torchvision.datasets import ImageFolder

    path = root / split
    if not path.is_dir() or not any(p.is_dir() for p in path.iterdir()):
        raise DataError(f"ImageNet not found in {root} (no class folders in {split}/): {IMAGENET.how_to_get}")
    try:
        return ImageFolder(str(path), transform=transform, loader=load_rgb)
    except FileNotFoundError as error:  # a class folder without a single image file
        raise DataError(f"ImageNet in {path} is incomplete ({_one_line(error)})") from error


@register_dataset(IMAGENET)
def load_imagenet(options: DataOptions) -> tuple[Dataset, Dataset]:
    # --download is accepted and ignored: ImageNet's licence rules out fetching it for the user, and the
    # missing-data error already says where to get it.
    root = resolve_dir(IMAGENET, options)
    train_tf, val_tf = imagenet_transforms(options.augment)
    train = _folder(root, "train", train_tf)
    val = _folder(root, "val", val_tf)
    # A subset of the classes is fine (handy for tests and quick runs); labels past the head's size are not,
    # and val must index classes exactly as train does or every label would be silently wrong.
    n_classes = len(train.classes)
    if n_classes > IMAGENET.num_classes:
        raise DataError(f"ImageNet in {root} has {n_classes} class folders in train/, more than 1000")
    if val.classes != train.classes:
        extra = sorted(set(val.classes) ^ set(train.classes))
        raise DataError(
            f"ImageNet in {root}: val/ and train/ hold different class folders (e.g. {extra[0]!r}); "
            "val must be sorted into the same <wnid> folders as train"
        )
    return train, val
