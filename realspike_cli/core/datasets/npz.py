"""`npz`: a data set held in one NumPy `.npz` archive, the format of `numpy.savez(path, x_train=..., ...)`.

Arrays: `x_train`, `x_test` (images, uint8 0..255 or float taken as they are; [N, H, W], [N, H, W, C] or
[N, C, H, W] with C = 1 or 3), `y_train`, `y_test` (integer labels [N] from 0); optionally `class_names`
(strings) and `mean`/`std` (the normalization to use). Every header is checked before any array is read, and
nothing is unpickled (`allow_pickle=False`). Without `mean`/`std`, pixels are normalized with the per-channel
statistics of `x_train`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from realspike_cli.core.datasets.arrays import npz_arrays, npz_headers
from realspike_cli.core.datasets.files import MAX_CLASSES
from realspike_cli.core.datasets.loaders import InMemoryDataset
from realspike_cli.core.datasets.pixels import channel_stats, per_channel, resize, standard_shift
from realspike_cli.core.datasets.registry import MAX_SIDE, DataOptions, DatasetInfo, register_dataset, resolve_dir
from realspike_cli.core.errors import ConfigError, DataError

NPZ = DatasetInfo(
    name="npz",
    num_classes=0,
    in_channels=0,
    input_size=(0, 0),
    default_time_steps=4,
    default_dir="npz",
    how_to_get="pass --data-dir pointing at a .npz file (or a folder holding one) with arrays x_train, y_train, "
    "x_test, y_test",
    from_data=True,
)
_REQUIRED = ["x_train", "y_train", "x_test", "y_test"]
_OPTIONAL = ["class_names", "mean", "std"]
_IMAGE_DTYPES = ("uint8", "float16", "float32", "float64")
_CHUNK = 1024  # images converted at a time, so resizing never holds two float copies of the whole set


def archive_path(options: DataOptions) -> Path:
    """The .npz file: --data-dir itself, or the one .npz file in that folder."""
    root = resolve_dir(NPZ, options)
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"npz: {root} does not exist: {NPZ.how_to_get}")
    found = sorted(p for p in root.iterdir() if p.suffix == ".npz" and p.is_file())
    if len(found) != 1:
        listed = ", ".join(p.name for p in found[:3]) if found else "none"
        raise DataError(f"npz: {root} must hold exactly one .npz file (found: {listed}); or pass the file itself")
    return found[0]


def _layout(shape: tuple[int, ...], what: str) -> str:
    """"NHW", "NHWC" or "NCHW": where the channels are, from the shape alone."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) != 4:
        raise DataError(f"{what} has shape {shape}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W]")
    last, second = shape[3] in (1, 3), shape[1] in (1, 3)
    if last == second:
        problem = "either axis 1 or axis 3 could be the channels" if last else "no axis of 1 or 3 channels"
        raise DataError(f"{what} has shape {shape}: {problem} (channels first [N, C, H, W] or last [N, H, W, C])")
    return "NHWC" if last else "NCHW"


def _image_shape(shape: tuple[int, ...], layout: str) -> tuple[int, tuple[int, int]]:
    if layout == "NHW":
        return 1, (shape[1], shape[2])
    return (shape[3], (shape[1], shape[2])) if layout == "NHWC" else (shape[1], (shape[2], shape[3]))


def _check_headers(heads: dict[str, Any], what: str) -> tuple[str, int, tuple[int, int]]:
    """Layout, channels and size of the images; every array's dtype and length checked against the others."""
    missing = [name for name in _REQUIRED if name not in heads]
    if missing:
        raise DataError(f"{what} has no array {missing[0]!r} (it needs {', '.join(_REQUIRED)})")
    found = []
    for split in ("train", "test"):
        (xs, xt), (ys, yt) = heads[f"x_{split}"], heads[f"y_{split}"]
        if xt.name not in _IMAGE_DTYPES:
            raise DataError(f"{what}: x_{split} is {xt}; images must be uint8 (0..255) or float")
        if yt.kind not in "iu" or len(ys) != 1:
            raise DataError(f"{what}: y_{split} must be integer labels [N], not {yt} of shape {ys}")
        layout = _layout(xs, f"{what}: x_{split}")
        if xs[0] == 0 or ys[0] != xs[0]:
            raise DataError(f"{what}: x_{split} holds {xs[0]} images and y_{split} {ys[0]} labels")
        found.append((layout, *_image_shape(xs, layout)))
    if found[0] != found[1]:
        raise DataError(f"{what}: x_train and x_test hold images of different shapes ({found[0]} and {found[1]})")
    layout, channels, size = found[0]
    if min(size) < 1 or max(size) > MAX_SIDE:
        raise DataError(f"{what}: images are {size[0]}×{size[1]}; each side must be 1 to {MAX_SIDE} pixels")
    return layout, channels, size


def _num_classes(arrays: dict[str, Any], what: str) -> tuple[int, list[str] | None]:
    names = arrays.get("class_names")
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US" or not 2 <= len(names) <= MAX_CLASSES):
        raise DataError(f"{what}: class_names must be 2 to {MAX_CLASSES} strings")
    names = None if names is None else [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                                        for n in names.tolist()]
    low = min(int(arrays["y_train"].min()), int(arrays["y_test"].min()))
    high = max(int(arrays["y_train"].max()), int(arrays["y_test"].max()))
    count = len(names) if names is not None else high + 1
    if low < 0 or high >= count:
        raise DataError(f"{what}: labels run from {low} to {high}; they must be 0 to {count - 1}"
                        + (" (one per class name)" if names is not None else ""))
    if not 2 <= count <= MAX_CLASSES:
        raise DataError(f"{what}: the labels give {count} classes; classifying needs 2 to {MAX_CLASSES}")
    if names is None:  # the class count is read off the labels: a gap would add classes nobody meant
        present = np.zeros(count, dtype=bool)
        present[arrays["y_train"].astype(np.int64)] = True
        if not present.all():
            raise DataError(f"{what}: no training image has label {int(np.argmin(present))} (labels run to "
                            f"{high}); number the classes 0 to N-1 without gaps, or give class_names")
    return count, names


def _read(options: DataOptions, names: list[str]) -> tuple[str, tuple, dict[str, Any]]:
    path = archive_path(options)
    what = f"npz file {path}"
    heads = npz_headers(path, _REQUIRED + _OPTIONAL, what)
    shape = _check_headers(heads, what)
    if options.channels not in (None, shape[1]):
        raise ConfigError(f"{what} holds {shape[1]}-channel images; they are used as they are, not converted "
                          f"to {options.channels} channels")
    return what, shape, npz_arrays(path, [n for n in names if n in heads], what)


def npz_info(options: DataOptions) -> DatasetInfo:
    what, (_, channels, size), arrays = _read(options, ["y_train", "y_test", "class_names"])
    count, _ = _num_classes(arrays, what)
    return replace(NPZ, num_classes=count, in_channels=channels, input_size=options.image_size or size)


def _images(x: np.ndarray, layout: str, size: tuple[int, int], what: str) -> torch.Tensor:
    """[N, C, *size]: uint8 as stored when no resizing is needed, else float32 in the stored scale."""
    x = x[:, None] if layout == "NHW" else (x.transpose(0, 3, 1, 2) if layout == "NHWC" else x)
    if x.dtype == np.uint8 and x.shape[-2:] == tuple(size):
        return torch.from_numpy(np.ascontiguousarray(x))
    chunks = []
    for start in range(0, len(x), _CHUNK):
        part = torch.from_numpy(np.ascontiguousarray(x[start : start + _CHUNK])).float()
        if not bool(torch.isfinite(part).all()):
            raise DataError(f"{what}: images hold NaN or infinite values (or floats beyond float32)")
        part = part.div_(255.0) if x.dtype == np.uint8 else part
        chunks.append(resize(part, size))
    return torch.cat(chunks)


def _normalization(arrays: dict[str, Any], train: torch.Tensor, options: DataOptions, what: str) -> tuple:
    channels = train.shape[1]
    if options.mean is not None:
        given: tuple[Any, Any] = (options.mean, options.std)
    elif "mean" in arrays or "std" in arrays:
        try:
            stored = DataOptions(mean=arrays["mean"].tolist(), std=arrays["std"].tolist())
            given = (stored.mean, stored.std)
        except (KeyError, ConfigError, AttributeError) as error:
            raise DataError(f"{what}: arrays mean and std must both be there, 1 or 3 finite numbers each "
                            f"(std positive): {error}") from None
    else:
        scale = 255.0 if train.dtype == torch.uint8 else 1.0
        return channel_stats((c.float() / scale for c in train.split(_CHUNK)), what)
    return per_channel(given[0], channels, "mean", what), per_channel(given[1], channels, "std", what)


@register_dataset(NPZ, info_from=npz_info)
def load_npz(options: DataOptions) -> tuple[InMemoryDataset, InMemoryDataset]:
    from realspike_cli.core.datasets.transforms import RandomShift

    what, (layout, _, native), arrays = _read(options, _REQUIRED + _OPTIONAL)
    _, names = _num_classes(arrays, what)
    size = options.image_size or native
    x_train, x_test = (_images(arrays[f"x_{s}"], layout, size, what) for s in ("train", "test"))
    mean, std = _normalization(arrays, x_train, options, what)
    augment = RandomShift(standard_shift(size)) if options.augment == "standard" else None
    labels = {s: torch.from_numpy(arrays[f"y_{s}"].astype(np.int64)) for s in ("train", "test")}
    train = InMemoryDataset(x_train, labels["train"], mean, std, augment=augment, classes=names)
    return train, InMemoryDataset(x_test, labels["test"], mean, std, classes=names)
