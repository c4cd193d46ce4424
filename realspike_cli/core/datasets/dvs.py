"""`cifar10-dvs`: CIFAR10-DVS event recordings read by tonic, binned into T frames of 2 polarities and
resized to 48x48 (or `image_size`), with a deterministic 9:1 train/test split per class.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from realspike_cli.core.datasets.event_frames import (
    EventFrames,
    download_with_tonic,
    frame_augment,
    frame_info,
    to_frames,
)
from realspike_cli.core.datasets.files import inside, real_root
from realspike_cli.core.datasets.registry import DataOptions, DatasetInfo, register_dataset, resolve_dir
from realspike_cli.core.datasets.splits import split_indices
from realspike_cli.core.errors import DataError
from realspike_cli.core.specs import Encoding

CIFAR10_DVS = DatasetInfo(
    name="cifar10-dvs",
    num_classes=10,
    in_channels=2,
    input_size=(48, 48),
    encoding=Encoding.FRAMES,
    default_time_steps=10,
    default_dir="cifar10-dvs",
    how_to_get=(
        "pass --download, or --data-dir pointing at a folder holding CIFAR10DVS/<class>/*.aedat4 "
        "(needs the aedat package: pip install aedat)"
    ),
    citation="Li, Liu, Ji, Li & Shi, CIFAR10-DVS: an event-stream dataset for object classification, "
    "Front. Neurosci. 2017",
)

SENSOR_SIZE = (128, 128, 2)  # tonic's order: width, height, polarities
_FOLDER = "CIFAR10DVS"  # tonic keeps the recordings in <save_to>/CIFAR10DVS/<category>/


@functools.cache
def _presence_checked() -> type:
    """tonic's CIFAR10DVS, but satisfied by any aedat4 file per class instead of the zip plus 1,000 files.

    tonic would otherwise try to download whenever the archive is gone or the copy is small. Built on first
    use so that importing the registry does not import tonic; the module `__getattr__` lets pickle find it.
    """
    from tonic.datasets import CIFAR10DVS

    def _check_exists(self: Any) -> bool:
        folder = Path(self.location_on_system, self.folder_name)
        return all(any((folder / c).glob("*.aedat4")) for c in self.classes)

    # Keep tonic's class name: tonic puts the data in <save_to>/<name of the Python class>/.
    cls = type("CIFAR10DVS", (CIFAR10DVS,), {"_check_exists": _check_exists})
    cls.__module__ = __name__
    return cls


def __getattr__(name: str) -> type:
    if name == "CIFAR10DVS":
        return _presence_checked()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cifar10_dvs_info(options: DataOptions) -> DatasetInfo:
    return frame_info(CIFAR10_DVS, options)


@register_dataset(CIFAR10_DVS, info_from=cifar10_dvs_info)
def load_cifar10_dvs(options: DataOptions) -> tuple[Dataset, Dataset]:
    root = resolve_dir(CIFAR10_DVS, options)
    if importlib.util.find_spec("aedat") is None:
        raise DataError("reading CIFAR10-DVS needs the aedat package: pip install aedat")
    if options.download:
        download_with_tonic("CIFAR10DVS", root, "CIFAR10-DVS")  # downloads when the copy is incomplete
    cls = _presence_checked()
    folder = root / _FOLDER
    missing = [c for c in cls.classes if not any((folder / c).glob("*.aedat4"))]
    if missing:
        raise DataError(
            f"CIFAR10-DVS not found in {root} (no {_FOLDER}/{missing[0]}/*.aedat4): {CIFAR10_DVS.how_to_get}"
        )
    try:
        events = cls(str(root), transform=to_frames(SENSOR_SIZE, options, CIFAR10_DVS))
    except KeyError as error:  # tonic labels a file by its folder's name
        raise DataError(f"CIFAR10-DVS in {folder}: aedat4 files outside class folders ({error})") from error
    real = real_root(root, "CIFAR10-DVS")
    for path in events.data:  # tonic walks the folder without such checks: no link may lead out of it,
        if not inside(Path(path), real, "CIFAR10-DVS").is_file():  # and a FIFO would block the reader
            raise DataError(f"CIFAR10-DVS: {path} is not a regular file")
    # os.walk lists files in file-system order; sorting makes indices, and so the split, the same everywhere.
    pairs = sorted(zip(events.data, events.targets, strict=True))
    events.data, events.targets = [p for p, _ in pairs], [y for _, y in pairs]
    train_idx, test_idx = split_indices(events.targets)
    size = cifar10_dvs_info(options).input_size
    augment = frame_augment(options, size, flip=True)  # the TET recipe: flip and a roll of ±5 pixels at 48×48
    return (EventFrames(events, train_idx, size, augment, "CIFAR10-DVS"),
            EventFrames(events, test_idx, size, None, "CIFAR10-DVS"))
