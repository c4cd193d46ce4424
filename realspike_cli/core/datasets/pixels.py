"""Pixels as the model sees them, shared by the image folder and array data sets: images to float tensors in
[0, 1] with 1 or 3 channels, resized with antialiasing, and per-channel statistics of a training split.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from realspike_cli.core.errors import ConfigError, DataError

# PIL modes by what they hold. 8-bit grey, 16-bit grey (scaled by 1/65535), and colour (incl. palette, alpha:
# alpha is dropped). "F" (float pixels of unknown range) is refused.
GREY_8 = frozenset({"1", "L", "LA", "La"})
GREY_16 = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
COLOUR = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"})


def check_mode(mode: str, path: str, title: str) -> bool:
    """True when an image of PIL `mode` is grey; a DataError for modes realspike does not convert."""
    if mode in GREY_8 or mode in GREY_16:
        return True
    if mode in COLOUR:
        return False
    raise DataError(f"{title} image {path} has pixel mode {mode!r}, which realspike cannot convert; "
                    "save it as 8-bit grey or RGB")


def image_tensor(image: Any, channels: int, path: str, title: str) -> torch.Tensor:
    """A decoded PIL image as float32 [channels, H, W] in [0, 1]."""
    check_mode(image.mode, path, title)
    if image.mode in GREY_16:
        values = np.asarray(image).astype(np.float32)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{title} image {path} holds values outside 0..65535 (mode {image.mode!r})")
        x = torch.from_numpy(values / 65535.0).unsqueeze(0)
        return x.expand(channels, *x.shape[1:]).contiguous()
    target = "L" if channels == 1 else "RGB"
    array = np.asarray(image if image.mode == target else image.convert(target))
    x = torch.from_numpy(array.copy()).float().div_(255.0)
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[C, H, W] or [B, C, H, W] float images at `size`, bilinear with antialiasing (torchvision's Resize on
    tensors); unchanged when already that size."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    batch = images if images.ndim == 4 else images.unsqueeze(0)
    out = F.interpolate(batch, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out if images.ndim == 4 else out[0]


def channel_stats(batches: Iterable[torch.Tensor], title: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and (population) standard deviation per channel over every pixel of `batches` ([B, C, H, W] or
    [C, H, W] each), summed in float64 in the order given, so the result is the same on every run."""
    total = squares = None
    count = 0
    for batch in batches:
        b = (batch if batch.ndim == 4 else batch.unsqueeze(0)).double()
        s, q = b.sum(dim=(0, 2, 3)), (b * b).sum(dim=(0, 2, 3))
        total, squares = (s, q) if total is None else (total + s, squares + q)
        count += b.shape[0] * b.shape[2] * b.shape[3]
    if total is None or count == 0:
        raise DataError(f"{title}: no training images to compute the normalization from")
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    if not bool(torch.isfinite(std).all()) or float(std.min()) < 1e-6:
        raise DataError(f"{title}: the training images are flat in some channel (std {std.tolist()}); "
                        "give mean and std explicitly")
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def per_channel(values: tuple[float, ...], channels: int, what: str, title: str) -> tuple[float, ...]:
    """User-given mean or std for `channels` channels: one value for all, or one per channel."""
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ConfigError(f"{title}: {what} has {len(values)} values for {channels}-channel images")
    return values


def standard_shift(size: tuple[int, int]) -> int:
    """The "standard" augmentation's largest shift: an eighth of the shorter side (4 pixels at 32×32, as
    CIFAR's RandomCrop(32, padding=4))."""
    return max(1, round(min(size) / 8))
