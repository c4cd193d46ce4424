"""Small tensor augmentations torchvision lacks: Cutout and a zero-filled shift for images, flip and shift for
event frames; and per-channel normalization.

All randomness comes from torch's global generator, which DataLoader seeds per worker (numpy's is not).
"""

from __future__ import annotations

import torch


class Cutout:
    """Zero `holes` squares of side `length` at random centres of a [C, H, W] tensor (DeVries & Taylor, 2017).

    Squares may hang over the border and are clipped there, as in the original recipe; apply it after
    Normalize so that the holes are the data set's mean colour.
    """

    def __init__(self, holes: int = 1, length: int = 16) -> None:
        if holes < 0 or length < 0:
            raise ValueError("Cutout wants non-negative holes and length")
        self.holes, self.length = holes, length

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        mask = torch.ones(height, width, dtype=image.dtype, device=image.device)
        half = self.length // 2
        for _ in range(self.holes):
            cy = int(torch.randint(height, ()))
            cx = int(torch.randint(width, ()))
            mask[max(cy - half, 0) : min(cy + half, height), max(cx - half, 0) : min(cx + half, width)] = 0
        return image * mask

    def __repr__(self) -> str:
        return f"Cutout(holes={self.holes}, length={self.length})"


class RandomShift:
    """Move images [C, H, W] (or each image of a batch [B, C, H, W]) by up to `shift` pixels along each axis,
    filling the uncovered border with 0: torchvision's RandomCrop(size, padding=shift) on tensors."""

    def __init__(self, shift: int) -> None:
        if shift < 0:
            raise ValueError("RandomShift wants a non-negative shift")
        self.shift = shift

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images if images.ndim == 4 else images.unsqueeze(0)
        if self.shift == 0:
            return images
        height, width = batch.shape[-2:]
        out = torch.zeros_like(batch)
        for i, (dy, dx) in enumerate(torch.randint(-self.shift, self.shift + 1, (len(batch), 2)).tolist()):
            out[i, :, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = batch[
                i, :, max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)
            ]
        return out if images.ndim == 4 else out[0]

    def __repr__(self) -> str:
        return f"RandomShift(shift={self.shift})"


class Normalize:
    """(x - mean) / std per channel of [C, H, W] or [B, C, H, W] tensors."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


class RandomFrameFlipShift:
    """Flip event frames [T, C, H, W] left-right with probability 1/2 (unless `flip` is False: for gestures
    and digits a mirror image is another class), then roll them by up to `shift` pixels along each spatial
    axis; one draw per sample, so every time step moves alike."""

    def __init__(self, shift: int = 5, flip: bool = True) -> None:
        self.shift, self.flip = shift, flip

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self.flip and bool(torch.rand(()) < 0.5):
            frames = frames.flip(-1)
        if self.shift > 0:
            dy, dx = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,)))
            frames = frames.roll(shifts=(dy, dx), dims=(-2, -1))
        return frames

    def __repr__(self) -> str:
        return f"RandomFrameFlipShift(shift={self.shift}, flip={self.flip})"
