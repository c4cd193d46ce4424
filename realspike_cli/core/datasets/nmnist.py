"""`nmnist`: N-MNIST (Orchard et al. 2015), MNIST digits recorded by an ATIS sensor in three saccades.

Files as tonic extracts the official archives: `NMNIST/Train/<digit>/*.bin` and `NMNIST/Test/<digit>/*.bin`,
each a stream of 40-bit events read by tonic's `read_mnist_file`. The official train/test split is kept;
frames come from the shared event pipeline (`events.py`) at the sensor's 34×34 (or `image_size`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from realspike_cli.core.datasets.event_frames import (
    EventFrames,
    EventRecordings,
    frame_augment,
    frame_info,
    require_split_folders,
    to_frames,
)
from realspike_cli.core.datasets.files import labelled_files, real_root
from realspike_cli.core.datasets.registry import DataOptions, DatasetInfo, register_dataset, resolve_dir
from realspike_cli.core.errors import DataError
from realspike_cli.core.specs import Encoding

NMNIST = DatasetInfo(
    name="nmnist",
    num_classes=10,
    in_channels=2,
    input_size=(34, 34),
    encoding=Encoding.FRAMES,
    default_time_steps=10,
    default_dir="nmnist",
    how_to_get="pass --download, or --data-dir pointing at a folder holding NMNIST/Train/<digit>/*.bin and "
    "NMNIST/Test/<digit>/*.bin",
    citation="Orchard, Jayawant, Cohen & Thakor, Converting static image datasets to spiking neuromorphic "
    "datasets using saccades, Front. Neurosci. 2015",
)

SENSOR_SIZE = (34, 34, 2)  # tonic's order: width, height, polarities
_TITLE = "N-MNIST"
_FOLDER = "NMNIST"  # tonic keeps the data in <save_to>/<class name>/
_SPLITS = {True: "Train", False: "Test"}
_DIGITS = [str(d) for d in range(10)]


def read_nmnist(path: str) -> np.ndarray:
    """Events (x, y, t, p) of one .bin file; the 5-byte record structure is checked before tonic parses it."""
    from tonic.datasets import NMNIST as TonicNMNIST
    from tonic.io import read_mnist_file

    size = Path(path).stat().st_size
    if size == 0 or size % 5:
        raise DataError(f"{_TITLE} recording {path} is not a sequence of 5-byte events ({size} bytes)")
    return read_mnist_file(path, dtype=TonicNMNIST.dtype)


def nmnist_info(options: DataOptions) -> DatasetInfo:
    return frame_info(NMNIST, options)


@register_dataset(NMNIST, info_from=nmnist_info)
def load_nmnist(options: DataOptions) -> tuple[Dataset, Dataset]:
    root = resolve_dir(NMNIST, options)
    folders = require_split_folders(root, _FOLDER, _SPLITS, NMNIST, _TITLE, tonic_class="NMNIST",
                                    download=options.download)
    real = real_root(root, _TITLE)
    size = nmnist_info(options).input_size
    splits = []
    for folder, augment in zip(folders, (frame_augment(options, size, flip=False), None), strict=True):
        classes, samples = labelled_files(folder, real, _TITLE, suffixes=(".bin",), classes=_DIGITS)
        recordings = EventRecordings([p for p, _ in samples], [y for _, y in samples], read_nmnist, SENSOR_SIZE,
                                     to_frames(SENSOR_SIZE, options, NMNIST), _TITLE)
        splits.append(EventFrames(recordings, list(range(len(samples))), size, augment, _TITLE))
    return splits[0], splits[1]
