"""Batches in a reproducible order: one permutation per (seed, epoch), sharded by rank, resumable mid-epoch.

Small data sets held as tensors skip the per-sample DataLoader machinery entirely (`InMemoryDataset`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class InMemoryDataset(Dataset):
    """Images [N, C, H, W] (uint8, scaled to [0, 1], or float32 taken as they are) and int64 labels [N];
    normalised to float on access, whole batches at once. `augment` (optional) maps a float batch
    [B, C, H, W] before normalisation; `classes` names the labels."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        classes: list[str] | None = None,
    ) -> None:
        if images.dtype not in (torch.uint8, torch.float32) or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("InMemoryDataset wants uint8 or float32 images [N, C, H, W] and one label per image")
        self.images, self.labels, self.augment = images, labels, augment
        if classes is not None:
            self.classes = list(classes)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index]  # indexing with a tensor copies: nothing below touches the stored images
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        if self.augment is not None:
            x = self.augment(x)
        return (x - self.mean) / self.std, self.labels[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch(torch.tensor([i]))
        return x[0], y[0]


def epoch_order(
    n: int, *, shuffle: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1, even: bool = True
) -> torch.Tensor:
    """Indices this rank visits in this epoch. `even` pads (train) so all ranks take the same number of steps;
    without it (evaluation) every index is visited exactly once across ranks."""
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    if even and world_size > 1:
        total = math.ceil(n / world_size) * world_size
        order = torch.cat([order, order[: total - n]])
    return order[rank::world_size]


class _IndexSampler(Sampler[int]):
    def __init__(self, indices: torch.Tensor) -> None:
        self.indices = indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices.tolist())

    def __len__(self) -> int:
        return len(self.indices)


class BatchStream:
    """An epoch's batches for one rank, starting at `start_batch` (for resuming mid-epoch)."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        even: bool = True,
        start_batch: int = 0,
        workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        order = epoch_order(
            len(dataset), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size, even=even
        )
        self.total_batches = math.ceil(len(order) / batch_size)
        self.start_batch = min(start_batch, self.total_batches)
        self.indices = order[self.start_batch * batch_size :]
        self.dataset, self.batch_size = dataset, batch_size
        self.workers, self.pin_memory = workers, pin_memory
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def __len__(self) -> int:
        return self.total_batches - self.start_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.dataset, InMemoryDataset):
            for chunk in self.indices.split(self.batch_size):
                yield self.dataset.batch(chunk)
            return
        # Worker seeds derive from this generator: augmentation draws repeat for the same (seed, epoch, rank)
        # and differ between ranks.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 17 + 1_000_003 * self.rank)
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=_IndexSampler(self.indices),
            num_workers=self.workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            generator=generator,
        )
        yield from loader
