"""`cifar10-dvs`: CIFAR10-DVS event recordings read by tonic, binned into T frames of 2 polarities and
resized to 48x48, with a deterministic 9:1 train/test split per class.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from realspike_cli.core.datasets import DataOptions, DatasetInfo, register_dataset, resolve_dir
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
FRAME_SIZE = (48, 48)
SPLIT_SEED = 0
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


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def split_indices(targets: list[int], seed: int = SPLIT_SEED) -> tuple[list[int], list[int]]:
    """A tenth of each class (at least one recording once a class has two) for test, chosen by `seed`."""
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


class EventFrames(Dataset):
    """Recordings `indices` of a tonic data set whose transform bins events into frames [T, 2, 128, 128];
    yields float frames [T, 2, 48, 48] (event counts, resized) and an int label."""

    def __init__(self, events: Any, indices: list[int], augment: Any = None) -> None:
        self.events, self.indices, self.augment = events, indices, augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = self.indices[i]
        try:
            frames, label = self.events[j]
        except Exception as error:  # aedat raises RuntimeError; an empty recording fails inside tonic
            path = self.events.data[j]
            raise DataError(f"CIFAR10-DVS file {path} is unreadable ({_one_line(error)})") from error
        x = torch.from_numpy(frames).float()
        # Bilinear with antialiasing, as torchvision's Resize does on tensors (the authors' line of work).
        x = F.interpolate(x, size=FRAME_SIZE, mode="bilinear", align_corners=False, antialias=True)
        if self.augment is not None:
            x = self.augment(x)
        return x, int(label)


def _download(root: Path) -> None:
    from tonic.datasets import CIFAR10DVS

    try:
        CIFAR10DVS(str(root))  # downloads, checks the archive md5 and extracts when the copy is incomplete
    except Exception as error:
        raise DataError(f"could not download CIFAR10-DVS to {root}: {_one_line(error)}") from error


@register_dataset(CIFAR10_DVS)
def load_cifar10_dvs(options: DataOptions) -> tuple[Dataset, Dataset]:
    from tonic.transforms import ToFrame

    from realspike_cli.core.datasets.transforms import RandomFrameFlipShift

    root = resolve_dir(CIFAR10_DVS, options)
    if importlib.util.find_spec("aedat") is None:
        raise DataError("reading CIFAR10-DVS needs the aedat package: pip install aedat")
    if options.download:
        _download(root)
    cls = _presence_checked()
    folder = root / _FOLDER
    missing = [c for c in cls.classes if not any((folder / c).glob("*.aedat4"))]
    if missing:
        raise DataError(
            f"CIFAR10-DVS not found in {root} (no {_FOLDER}/{missing[0]}/*.aedat4): {CIFAR10_DVS.how_to_get}"
        )
    steps = options.time_steps or CIFAR10_DVS.default_time_steps
    try:
        events = cls(str(root), transform=ToFrame(sensor_size=SENSOR_SIZE, n_time_bins=steps))
    except KeyError as error:  # tonic labels a file by its folder's name
        raise DataError(f"CIFAR10-DVS in {folder}: aedat4 files outside class folders ({error})") from error
    # os.walk lists files in file-system order; sorting makes indices, and so the split, the same everywhere.
    pairs = sorted(zip(events.data, events.targets, strict=True))
    events.data, events.targets = [p for p, _ in pairs], [y for _, y in pairs]
    train_idx, test_idx = split_indices(events.targets)
    augment = RandomFrameFlipShift(shift=5) if options.augment == "standard" else None
    return EventFrames(events, train_idx, augment), EventFrames(events, test_idx)
