"""The deterministic train/test split of data sets released without one (cifar10-dvs, a flat imagefolder)."""

from __future__ import annotations

import torch

SPLIT_SEED = 0


def split_indices(targets: list[int], seed: int = SPLIT_SEED) -> tuple[list[int], list[int]]:
    """A tenth of each class (at least one sample once a class has two) for test, chosen by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    train: list[int] = []
    test: list[int] = []
    for label in sorted(set(targets)):
        members = torch.tensor([i for i, y in enumerate(targets) if y == label])
        members = members[torch.randperm(len(members), generator=generator)].tolist()
        n_test = max(1, round(len(members) / 10)) if len(members) > 1 else 0
        test += members[:n_test]
        train += members[n_test:]
    return sorted(train), sorted(test)
