"""Small tensor augmentations torchvision lacks: Cutout for images, flip and shift for event frames.

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


class RandomFrameFlipShift:
    """Flip event frames [T, C, H, W] left-right with probability 1/2, then roll them by up to `shift` pixels
    along each spatial axis; one draw per sample, so every time step moves alike."""

    def __init__(self, shift: int = 5) -> None:
        self.shift = shift

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if bool(torch.rand(()) < 0.5):
            frames = frames.flip(-1)
        if self.shift > 0:
            dy, dx = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,)))
            frames = frames.roll(shifts=(dy, dx), dims=(-2, -1))
        return frames

    def __repr__(self) -> str:
        return f"RandomFrameFlipShift(shift={self.shift})"
