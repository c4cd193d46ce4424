"""`dvs128-gesture`: IBM's DVS128 Gesture (Amir et al. 2017), 11 hand and arm gestures by 29 people under
several lightings, recorded on a 128×128 DVS.

Files as tonic's `DVSGesture` reads them (tonic's preprocessed release: one recording per gesture, times
in milliseconds): `DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy` and `.../ibmGestureTest/...`,
each an array [N, 4] of (x, y, polarity, t). They are read with `allow_pickle=False` after their header is
checked, then converted exactly as tonic does (t to microseconds, tonic's event dtype). The official split
(users 1-23 train, 24-29 test) is kept; frames come from the shared event pipeline at 64×64 by default.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from realspike_cli.core.datasets.arrays import load_npy
from realspike_cli.core.datasets.event_frames import (
    EventFrames,
    EventRecordings,
    frame_augment,
    frame_info,
    require_split_folders,
    to_frames,
)
from realspike_cli.core.datasets.files import class_folders, files_under, real_root
from realspike_cli.core.datasets.registry import DataOptions, DatasetInfo, register_dataset, resolve_dir
from realspike_cli.core.errors import DataError
from realspike_cli.core.specs import Encoding

DVS128_GESTURE = DatasetInfo(
    name="dvs128-gesture",
    num_classes=11,
    in_channels=2,
    input_size=(64, 64),
    encoding=Encoding.FRAMES,
    default_time_steps=16,
    default_dir="dvs128-gesture",
    how_to_get="pass --download, or --data-dir pointing at a folder holding "
    "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy and DVSGesture/ibmGestureTest/...",
    citation="Amir et al., A low power, fully event-based gesture recognition system, CVPR 2017",
)

SENSOR_SIZE = (128, 128, 2)  # tonic's order: width, height, polarities
_TITLE = "DVS128 Gesture"
_FOLDER = "DVSGesture"  # tonic keeps the data in <save_to>/<class name>/
_SPLITS = {True: "ibmGestureTrain", False: "ibmGestureTest"}
_SESSION = re.compile(r"user\d+_[A-Za-z0-9_]+")
_RECORDING = re.compile(r"(\d+)\.npy")


def read_gesture(path: str) -> np.ndarray:
    """Events of one recording, converted as tonic's DVSGesture.__getitem__ does (ms to us, tonic's dtype)."""
    from numpy.lib import recfunctions
    from tonic.datasets import DVSGesture

    events = load_npy(path, f"{_TITLE} recording {path}")
    if events.ndim != 2 or events.shape[1] != 4 or events.dtype.kind not in "iuf":
        raise DataError(f"{_TITLE} recording {path} is not an [N, 4] array of numbers (x, y, p, t)")
    if events.dtype.kind == "f" and not bool(np.isfinite(events).all()):
        raise DataError(f"{_TITLE} recording {path} holds NaN or infinite values")
    x, y, p, t = events.T
    width, height, _ = SENSOR_SIZE
    # Checked before tonic's dtype narrows x and y to int16, where an out-of-range value would wrap around.
    if len(events) and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        raise DataError(f"{_TITLE} recording {path} has events outside the {width}×{height} sensor")
    if len(events) and (not bool(np.isin(p, (0, 1)).all()) or t.min() < 0 or t.max() > 1e12):
        raise DataError(f"{_TITLE} recording {path} has polarities other than 0/1 or times outside 0..1e12 ms")
    events = events.astype(np.float64 if events.dtype.kind == "f" else np.int64)
    events[:, 3] *= 1000  # tonic: "convert from ms to us"
    return recfunctions.unstructured_to_structured(events, DVSGesture.dtype)


def _recordings(folder: Path, real: Path) -> tuple[list[str], list[int]]:
    """Every user<NN>_<lighting>/<label>.npy under `folder`, sorted; the label comes from the file name."""
    paths: list[str] = []
    labels: list[int] = []
    for session in class_folders(folder, real, _TITLE):
        if not _SESSION.fullmatch(session):
            raise DataError(f"{_TITLE}: {folder / session} is not a user<NN>_<lighting> recording folder")
        for path in files_under(folder / session, real, _TITLE, (".npy",)):
            match = _RECORDING.fullmatch(path.name)
            if match is None or not 0 <= int(match.group(1)) < DVS128_GESTURE.num_classes:
                raise DataError(f"{_TITLE}: {path} is not named <label>.npy with a label from 0 to 10")
            paths.append(str(path))
            labels.append(int(match.group(1)))
    if not paths:
        raise DataError(f"{_TITLE}: {folder} holds no recordings (user<NN>_<lighting>/<label>.npy)")
    return paths, labels


def gesture_info(options: DataOptions) -> DatasetInfo:
    return frame_info(DVS128_GESTURE, options)


@register_dataset(DVS128_GESTURE, info_from=gesture_info)
def load_dvs128_gesture(options: DataOptions) -> tuple[Dataset, Dataset]:
    root = resolve_dir(DVS128_GESTURE, options)
    folders = require_split_folders(root, _FOLDER, _SPLITS, DVS128_GESTURE, _TITLE, tonic_class="DVSGesture",
                                    download=options.download)
    real = real_root(root, _TITLE)
    size = gesture_info(options).input_size
    splits = []
    # No flip: a mirrored right-hand wave is a left-hand wave, another class.
    for folder, augment in zip(folders, (frame_augment(options, size, flip=False), None), strict=True):
        paths, labels = _recordings(folder, real)
        recordings = EventRecordings(paths, labels, read_gesture, SENSOR_SIZE,
                                     to_frames(SENSOR_SIZE, options, DVS128_GESTURE), _TITLE)
        splits.append(EventFrames(recordings, list(range(len(paths))), size, augment, _TITLE))
    return splits[0], splits[1]
