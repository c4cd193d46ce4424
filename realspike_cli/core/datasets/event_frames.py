"""The frames pipeline of every event data set (cifar10-dvs, nmnist, dvs128-gesture).

A recording's events are binned by tonic into T frames of equal duration spanning its first to its last
event (`tonic.transforms.ToFrame(n_time_bins=T)`), one channel per polarity (0: OFF, 1: ON) holding event
counts; the frames are then resized with antialiased bilinear interpolation to the data set's frame size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from realspike_cli.core.datasets.files import one_line
from realspike_cli.core.datasets.registry import DataOptions, DatasetInfo
from realspike_cli.core.errors import DataError


def check_events(events: np.ndarray, sensor: tuple[int, int, int], path: str, title: str) -> np.ndarray:
    """Events (structured, fields x, y, p, t) that tonic can bin: some, inside the sensor, in time order."""
    if len(events) == 0:
        raise DataError(f"{title} recording {path} holds no events")
    width, height, polarities = sensor
    x, y, p, t = (events[k] for k in ("x", "y", "p", "t"))
    if x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height:
        raise DataError(f"{title} recording {path} has events outside the {width}×{height} sensor")
    if p.min() < 0 or p.max() >= polarities:
        raise DataError(f"{title} recording {path} has polarities other than 0 and 1")
    if len(t) > 1 and bool((np.diff(t) < 0).any()):
        raise DataError(f"{title} recording {path} has events out of time order")
    return events


class EventRecordings:
    """Recording files with labels; `recordings[i]` is (frames [T, 2, H, W] as tonic bins them, label).

    `read(path)` returns structured events (x, y, p, t); `transform` is tonic's ToFrame."""

    def __init__(self, data: list[str], targets: list[int], read: Callable[[str], np.ndarray],
                 sensor: tuple[int, int, int], transform: Any, title: str) -> None:
        self.data, self.targets, self.read, self.sensor = data, targets, read, sensor
        self.transform, self.title = transform, title

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        events = check_events(self.read(self.data[i]), self.sensor, self.data[i], self.title)
        return self.transform(events), self.targets[i]


class EventFrames(Dataset):
    """Recordings `indices` of `recordings` (see EventRecordings; tonic data sets have the same interface);
    yields float frames [T, 2, *frame_size] (event counts, resized) and an int label."""

    def __init__(self, recordings: Any, indices: list[int], frame_size: tuple[int, int], augment: Any = None,
                 title: str = "event") -> None:
        self.events, self.indices, self.frame_size = recordings, indices, tuple(frame_size)
        self.augment, self.title = augment, title
        self.targets = [int(recordings.targets[j]) for j in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = self.indices[i]
        try:
            frames, label = self.events[j]
        except DataError:
            raise
        except Exception as error:  # aedat raises RuntimeError; a damaged file fails inside tonic or numpy
            raise DataError(f"{self.title} file {self.events.data[j]} is unreadable ({one_line(error)})") from error
        x = torch.from_numpy(np.asarray(frames)).float()
        if tuple(x.shape[-2:]) != self.frame_size:
            # Bilinear with antialiasing, as torchvision's Resize does on tensors (the authors' line of work).
            x = F.interpolate(x, size=self.frame_size, mode="bilinear", align_corners=False, antialias=True)
        if self.augment is not None:
            x = self.augment(x)
        return x, int(label)


def frame_info(base: DatasetInfo, options: DataOptions) -> DatasetInfo:
    """`base` at the frame size `options` asks for (the data set's own by default)."""
    from dataclasses import replace

    return base if options.image_size is None else replace(base, input_size=tuple(options.image_size))


def to_frames(sensor: tuple[int, int, int], options: DataOptions, info: DatasetInfo) -> Any:
    """tonic's binning into T frames (T: the run's time steps, else the data set's default)."""
    from tonic.transforms import ToFrame

    return ToFrame(sensor_size=sensor, n_time_bins=options.time_steps or info.default_time_steps)


def frame_augment(options: DataOptions, size: tuple[int, int], *, flip: bool) -> Any:
    """"standard": a roll by up to a tenth of the frame side (5 pixels at 48×48), and for data sets whose
    classes survive a mirror image, a horizontal flip; None for "none"."""
    from realspike_cli.core.datasets.transforms import RandomFrameFlipShift

    if options.augment != "standard":
        return None
    return RandomFrameFlipShift(shift=max(1, round(min(size) / 10)), flip=flip)


def download_with_tonic(class_name: str, root: Path, title: str, *,
                        train_flags: Iterable[bool | None] = (None,)) -> None:
    """Let tonic's `class_name` download `root`'s copy (it checks the archive's md5, then extracts); any failure is
    one DataError. `train_flags`: the `train=` of each split to fetch, None for a data set without splits."""
    import tonic.datasets

    tonic_class = getattr(tonic.datasets, class_name)
    for train in train_flags:
        try:
            tonic_class(str(root)) if train is None else tonic_class(str(root), train=train)
        except Exception as error:
            raise DataError(f"could not download {title} to {root}: {one_line(error)}") from error


def require_split_folders(root: Path, folder: str, split_names: dict[bool, str], info: DatasetInfo, title: str,
                          *, tonic_class: str, download: bool) -> list[Path]:
    """tonic's `<root>/<folder>/<split>/` folders, train first: downloaded when asked, else one DataError naming the
    first one missing and how to get the data."""
    folders = [root / folder / name for name in split_names.values()]
    if download and not all(f.is_dir() for f in folders):
        download_with_tonic(tonic_class, root, title, train_flags=tuple(split_names))
    missing = [f for f in folders if not f.is_dir()]
    if missing:
        raise DataError(f"{title} not found in {root} (no {folder}/{missing[0].name}/): {info.how_to_get}")
    return folders
