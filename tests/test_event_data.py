"""N-MNIST and DVS128 Gesture on tiny fixtures in their real on-disk formats (tests/fixtures/data_writers.py).

Oracles: tonic's own readers decode the fixtures back to the events that were written (the format is right);
frames are recounted here with a naive loop over the events (tonic's equal-duration bins); resizing is
torchvision's Resize; DVS128 Gesture is also read by tonic's own DVSGesture class and must agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from realspike_cli.core.datasets import DataOptions, dataset_info, load_dataset
from realspike_cli.core.errors import DataError
from realspike_cli.core.specs import Encoding
from tests.fixtures.data_writers import encode_nmnist, gesture_array, write_gesture, write_nmnist


def naive_frames(x, y, p, t, steps: int, width: int, height: int) -> torch.Tensor:
    """[T, 2, H, W] event counts: bin k holds t0 + k·w <= t < t0 + (k+1)·w, w = (t_last - t0) // T."""
    t0, window = int(t[0]), (int(t[-1]) - int(t[0])) // steps
    frames = torch.zeros(steps, 2, height, width)
    for xi, yi, pi, ti in zip(x, y, p, t, strict=True):
        k = (int(ti) - t0) // window if window else 0
        if k < steps and (window or int(ti) < t0):
            frames[k, int(pi), int(yi), int(xi)] += 1
    return frames


def test_naive_frames_oracle_sees_a_planted_difference() -> None:
    x, y, p, t = np.array([1, 2]), np.array([0, 0]), np.array([1, 0]), np.array([0, 10])
    frames = naive_frames(x, y, p, t, 2, 4, 4)
    assert frames[0, 1, 0, 1] == 1 and frames.sum() == 1  # the last event ends the last bin and is dropped
    assert not torch.equal(frames, naive_frames(x, y, 1 - p, t, 2, 4, 4))


def decoded_nmnist(path: Path) -> np.ndarray:
    from tonic.datasets import NMNIST
    from tonic.io import read_mnist_file

    return read_mnist_file(str(path), dtype=NMNIST.dtype)


def test_nmnist_fixture_is_what_tonic_decodes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y, p = rng.integers(0, 34, 50), rng.integers(0, 34, 50), rng.integers(0, 2, 50)
    t = np.sort(rng.integers(0, 2**23, 50))
    (tmp_path / "a.bin").write_bytes(encode_nmnist(x, y, p, t))
    events = decoded_nmnist(tmp_path / "a.bin")
    assert [events[k].tolist() for k in "xytp"] == [x.tolist(), y.tolist(), t.tolist(), p.tolist()]


def test_nmnist_frames_are_the_counted_events(tmp_path: Path) -> None:
    write_nmnist(tmp_path, {"Train": 2, "Test": 1})
    info = dataset_info("nmnist")
    assert (info.num_classes, info.in_channels, info.input_size, info.encoding, info.default_time_steps) == (
        10, 2, (34, 34), Encoding.FRAMES, 10)
    splits = load_dataset("nmnist", DataOptions(data_dir=tmp_path, time_steps=4, augment="none"))
    assert (len(splits.train), len(splits.test)) == (20, 10) and splits.test.targets == list(range(10))
    for split, i in ((splits.train, 7), (splits.test, 3)):
        path = split.events.data[split.indices[i]]
        e = decoded_nmnist(Path(path))
        frames, label = split[i]
        assert label == int(Path(path).parent.name) and frames.shape == (4, 2, 34, 34)
        torch.testing.assert_close(frames, naive_frames(e["x"], e["y"], e["p"], e["t"], 4, 34, 34))


def test_nmnist_resizes_as_torchvision_and_augments_without_flipping(tmp_path: Path) -> None:
    from torchvision.transforms import functional as TF

    write_nmnist(tmp_path, {"Train": 1, "Test": 1})
    options = DataOptions(data_dir=tmp_path, time_steps=3, image_size=(17, 20))
    assert dataset_info("nmnist", options).input_size == (17, 20)
    splits = load_dataset("nmnist", options)
    e = decoded_nmnist(Path(splits.test.events.data[0]))
    expected = TF.resize(naive_frames(e["x"], e["y"], e["p"], e["t"], 3, 34, 34), [17, 20], antialias=True)
    torch.testing.assert_close(splits.test[0][0], expected, rtol=0, atol=1e-5)
    augment = splits.train.augment
    assert (augment.flip, augment.shift, splits.test.augment) == (False, 2, None)  # round(17 / 10) = 2


def test_nmnist_refusals(tmp_path: Path) -> None:
    def refused(*parts: str, index: int | None = None) -> None:
        with pytest.raises(DataError) as error:
            splits = load_dataset("nmnist", DataOptions(data_dir=tmp_path))
            if index is not None:
                splits.train[index]
        message = str(error.value)
        assert "\n" not in message and all(part in message for part in parts), message

    refused(str(tmp_path), "NMNIST/Train/", "--download")
    write_nmnist(tmp_path, {"Train": 1, "Test": 1})
    first = tmp_path / "NMNIST" / "Train" / "0" / "00000.bin"
    first.write_bytes(first.read_bytes()[:-2])
    refused(str(first), "5-byte events", index=0)
    first.write_bytes(encode_nmnist(np.array([40]), np.array([1]), np.array([0]), np.array([5])))
    refused(str(first), "outside the 34×34 sensor", index=0)
    first.write_bytes(encode_nmnist(np.array([4, 4]), np.array([1, 1]), np.array([0, 1]), np.array([9, 5])))
    refused(str(first), "out of time order", index=0)
    (tmp_path / "NMNIST" / "Test" / "9").rename(tmp_path / "NMNIST" / "Test" / "nine")
    refused("expected class folders", "'9' is missing")


# --- DVS128 Gesture ----------------------------------------------------------------------------------------

SESSIONS = {"ibmGestureTrain": ["user01_fluorescent", "user02_led"], "ibmGestureTest": ["user24_natural"]}


def tonic_gesture(root: Path, train: bool, transform) -> dict[str, tuple]:
    """{path: (frames, label)} from tonic's own DVSGesture (its download check bypassed)."""
    from tonic.datasets import DVSGesture

    class Local(DVSGesture):
        def _check_exists(self) -> bool:
            return True

    Local.__name__ = "DVSGesture"  # tonic reads from <save_to>/<class name>
    data = Local(str(root), train=train, transform=transform)
    return {path: data[i] for i, path in enumerate(data.data)}


def test_dvs128_gesture_matches_tonic_and_the_counted_events(tmp_path: Path) -> None:
    from tonic.transforms import ToFrame
    from torchvision.transforms import functional as TF

    write_gesture(tmp_path, SESSIONS)
    info = dataset_info("dvs128-gesture")
    assert (info.num_classes, info.input_size, info.default_time_steps) == (11, (64, 64), 16)
    splits = load_dataset("dvs128-gesture", DataOptions(data_dir=tmp_path, time_steps=5, augment="none",
                                                         image_size=(128, 128)))
    assert (len(splits.train), len(splits.test)) == (22, 11)
    reference = tonic_gesture(tmp_path, True, ToFrame(sensor_size=(128, 128, 2), n_time_bins=5))
    for i in (0, 13, 21):
        path = splits.train.events.data[splits.train.indices[i]]
        frames, label = splits.train[i]
        theirs, their_label = reference[path]
        assert label == their_label == int(Path(path).stem)
        torch.testing.assert_close(frames, torch.from_numpy(theirs).float(), rtol=0, atol=0)
        raw = np.load(path)
        counted = naive_frames(raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3] * 1000, 5, 128, 128)
        torch.testing.assert_close(frames, counted)
    default = load_dataset("dvs128-gesture", DataOptions(data_dir=tmp_path, time_steps=5, augment="none"))
    expected = TF.resize(splits.test[4][0], [64, 64], antialias=True)
    torch.testing.assert_close(default.test[4][0], expected, rtol=0, atol=1e-5)


def test_dvs128_gesture_reads_float_recordings_and_refuses_bad_ones(tmp_path: Path) -> None:
    write_gesture(tmp_path, SESSIONS, n_events=50)
    session = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent"
    as_int = load_dataset("dvs128-gesture", DataOptions(data_dir=tmp_path, augment="none")).train[0][0]
    np.save(session / "0.npy", np.load(session / "0.npy").astype(np.float64))
    splits = load_dataset("dvs128-gesture", DataOptions(data_dir=tmp_path, augment="none"))
    torch.testing.assert_close(splits.train[0][0], as_int)

    def refused(*parts: str) -> None:
        with pytest.raises(DataError) as error:
            load_dataset("dvs128-gesture", DataOptions(data_dir=tmp_path, augment="none")).train[0]
        message = str(error.value)
        assert "\n" not in message and all(part in message for part in parts), message

    x, y, p, t = np.array([3, 200]), np.array([1, 1]), np.array([0, 1]), np.array([1, 2])
    np.save(session / "0.npy", gesture_array(x, y, p, t))
    refused("outside the 128×128 sensor")
    np.save(session / "0.npy", np.zeros((5, 3)))
    refused("not an [N, 4] array")
    np.save(session / "0.npy", np.array([[1.0, 2.0, 1.0, np.nan]]))
    refused("NaN")
    np.save(session / "0.npy", np.zeros((0, 4)))
    refused("holds no events")
    (session / "0.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    refused("not a readable .npy array")
    (session / "0.npy").unlink()
    np.save(session / "11.npy", np.zeros((1, 4)))
    refused("11.npy", "label from 0 to 10")
    (session / "11.npy").unlink()
    (tmp_path / "DVSGesture" / "ibmGestureTrain" / "somebody").mkdir()
    refused("somebody", "user<NN>_<lighting>")


def test_event_splits_survive_pickling(tmp_path: Path) -> None:
    """DataLoader workers started by spawn or forkserver receive the data set pickled."""
    import pickle

    write_nmnist(tmp_path / "n", {"Train": 1, "Test": 1}, n_events=30)
    write_gesture(tmp_path / "g", SESSIONS, n_events=30)
    for name, data in (("nmnist", "n"), ("dvs128-gesture", "g")):
        test = load_dataset(name, DataOptions(data_dir=tmp_path / data, time_steps=3)).test
        torch.testing.assert_close(pickle.loads(pickle.dumps(test))[2][0], test[2][0])


def test_event_sets_through_the_cli(tmp_path: Path, capsys) -> None:
    """Train on each event set at T = 2 with a small network, then evaluate at the checkpoint's size."""
    from realspike_cli.cli.app import main

    write_nmnist(tmp_path / "nmnist", {"Train": 1, "Test": 1}, n_events=60)
    write_gesture(tmp_path / "gesture", SESSIONS, n_events=60)
    for name, data, extra in (("nmnist", "nmnist", []), ("dvs128-gesture", "gesture", ["--image-size", "24x24"])):
        out = tmp_path / f"run-{name}"
        base = ["--data-dir", str(tmp_path / data)]
        for argv in (["train", name, *base, "--arch", "small_convnet", "--width", "0.25", "--t", "2", "--epochs", "1",
                      "--batch-size", "11", *extra, "--out", str(out)],
                     ["eval", str(out / "best.safetensors"), *base, "--json"],
                     ["reparam", str(out / "best.safetensors"), *base, "--json"]):
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            _, err = capsys.readouterr()
            assert exit_info.value.code == 0, err


@pytest.mark.parametrize(("name", "tonic_name"), [("nmnist", "NMNIST"), ("dvs128-gesture", "DVSGesture")])
def test_a_failed_tonic_download_is_one_error_naming_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, tonic_name: str) -> None:
    import tonic.datasets

    calls: list[tuple[str, bool]] = []

    def offline(root: str, train: bool) -> None:
        calls.append((root, train))
        raise ConnectionError("Temporary failure in name resolution\n(more lines)")

    monkeypatch.setattr(tonic.datasets, tonic_name, offline)
    with pytest.raises(DataError) as error:
        load_dataset(name, DataOptions(data_dir=tmp_path, download=True))
    message = str(error.value)
    assert "\n" not in message and "could not download" in message and str(tmp_path) in message, message
    assert "name resolution" in message
    assert calls == [(str(tmp_path), True)]  # the first failure stops it: the train split is fetched first
