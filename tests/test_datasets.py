"""Data set registry and loaders, each on a tiny fixture written here in the data set's real disk format."""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from realspike_cli.core.datasets import DataOptions, dataset_info, list_datasets, load_dataset, resolve_dir
from realspike_cli.core.datasets.loaders import BatchStream
from realspike_cli.core.datasets.transforms import Cutout, RandomFrameFlipShift
from realspike_cli.core.errors import DataError, UnknownNameError
from realspike_cli.core.specs import Encoding

DVS_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --- fixture writers -------------------------------------------------------------------------------------


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the releases were written by Python 2


def write_cifar10(root: Path, per_batch: int = 2, n_test: int = 4) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/ as released: five training batches, test_batch and batches.meta."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    arrays = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = [int(v) for v in rng.integers(0, 10, n)]
        entry = {"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * n}
        _pickle(folder / name, entry)
        arrays[name] = data
    _pickle(folder / "batches.meta", {"label_names": DVS_CLASSES, "num_vis": 3072})
    return arrays


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 3) -> None:
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in [("train", n_train), ("test", n_test)]:
        fine = [int(v) for v in rng.integers(0, 100, n)]
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        _pickle(folder / name, {"data": data, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]})
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []})


def write_imagenet(root: Path, wnids: tuple[str, ...] = ("n01440764", "n01443537", "n01484850")) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, n in [("train", 2), ("val", 1)]:
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True)
            for k in range(n):
                pixels = rng.integers(0, 256, (30 + 7 * k, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / wnid / f"{wnid}_{k}.JPEG", format="JPEG")


_DV_XML = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<dv version="2.0">
    <node name="outInfo" path="/mainloop/output_file/outInfo/">
        <node name="0" path="/mainloop/output_file/outInfo/0/">
            <attr key="compression" type="string">NONE</attr>
            <attr key="originalModuleName" type="string">converter</attr>
            <attr key="originalOutputName" type="string">events</attr>
            <attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>
            <attr key="typeIdentifier" type="string">EVTS</attr>
            <node name="info" path="/mainloop/output_file/outInfo/0/info/">
                <attr key="sizeX" type="int">128</attr>
                <attr key="sizeY" type="int">128</attr>
                <attr key="source" type="string">DVS128</attr>
            </node>
        </node>
    </node>
</dv>
"""


def _aedat4_header(description: str) -> bytes:
    """The IOHeader flatbuffer (file id "IOHE"): compression NONE, file_data_position -1, XML description.

    Layout: root offset, id, vtable (3 fields), table (soffset, int64, int32, string offset), string.
    """
    text = description.encode()
    table, vtable = 20, 8
    head = struct.pack("<I4s", table, b"IOHE") + struct.pack("<5H", 10, 20, 12, 4, 16) + b"\0\0"
    body = struct.pack("<iqiI", table - vtable, -1, 0, 4)  # string starts 4 bytes past its offset field
    string = struct.pack("<I", len(text)) + text + b"\0"
    return head + body + string + b"\0" * (-len(string) % 4)


# The flatbuffer struct Event {t: int64; x: int16; y: int16; on: bool}, padded to its 8-byte alignment.
_FORMATS = ["<i8", "<i2", "<i2", "u1"]  # packed at offsets 0, 8, 10, 12
AEDAT4_EVENT = np.dtype({"names": ["t", "x", "y", "on"], "formats": _FORMATS, "itemsize": 16})


def events_array(t: np.ndarray, x: np.ndarray, y: np.ndarray, on: np.ndarray) -> np.ndarray:
    records = np.zeros(len(t), dtype=AEDAT4_EVENT)
    records["t"], records["x"], records["y"], records["on"] = t, x, y, on
    return records


def _aedat4_events(records: np.ndarray) -> bytes:
    """A size-prefixed EventPacket flatbuffer (file id "EVTS") holding a vector of Event structs."""
    # size prefix | root offset | id | vtable (1 field) @12 | pad | table @20 | vector length @28 | events @32
    vtable, table, vector = 12, 20, 28
    buf = struct.pack("<I4s", table - 4, b"EVTS") + struct.pack("<3H", 6, 8, 4) + b"\0\0"
    buf += struct.pack("<iII", table - vtable, vector - (table + 4), len(records)) + records.tobytes()
    return struct.pack("<I", len(buf)) + buf


def write_aedat4(path: Path, events: np.ndarray, per_packet: int = 64) -> None:
    """An AEDAT 4.0 file as DV writes it, uncompressed: magic, IOHeader, then (stream id, size, packet)*."""
    header = _aedat4_header(_DV_XML)
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header)
        for i in range(0, len(events), per_packet):
            packet = _aedat4_events(events[i : i + per_packet])
            f.write(struct.pack("<iI", 0, len(packet)) + packet)


def write_cifar10dvs(root: Path, per_class: int = 2, n_events: int = 300) -> None:
    """CIFAR10DVS/<class>/cifar10_<class>_<k>.aedat4, as tonic extracts the published archive."""
    rng = np.random.default_rng(3)
    for c in DVS_CLASSES:
        (root / "CIFAR10DVS" / c).mkdir(parents=True)
        for k in range(per_class):
            t = 1_600_000_000_000_000 + np.sort(rng.integers(0, 1_300_000, n_events))  # about 1.3 s, in us
            x, y = rng.integers(0, 128, (2, n_events))
            on = rng.integers(0, 2, n_events)
            write_aedat4(root / "CIFAR10DVS" / c / f"cifar10_{c}_{k}.aedat4", events_array(t, x, y, on))


def _one_line_naming(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


# --- registry --------------------------------------------------------------------------------------------


def test_registry_lists_every_data_set() -> None:
    assert {"mnist10k", "cifar10", "cifar100", "imagenet", "cifar10-dvs"} <= set(list_datasets())
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("imagenet").input_size == (224, 224)
    dvs = dataset_info("cifar10-dvs")
    assert (dvs.encoding, dvs.in_channels, dvs.default_time_steps) == (Encoding.FRAMES, 2, 10)
    assert dvs.input_size == (48, 48)


def test_registry_lists_the_new_data_sets_and_imports_no_reader() -> None:
    assert {"imagefolder", "npz", "nmnist", "dvs128-gesture"} <= set(list_datasets())
    code = ("import sys, realspike_cli.core.datasets as d\n"
            "d.list_datasets(); d.dataset_info('imagefolder'); d.dataset_info('nmnist')\n"
            "heavy = [m for m in ('torchvision', 'tonic', 'PIL', 'aedat') if m in sys.modules]\n"
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_options_for_a_model_follow_its_shape_only_where_the_data_set_adapts() -> None:
    from realspike_cli.core.datasets import options_for_model
    from realspike_cli.core.specs import ModelSpec

    spec = ModelSpec("small_convnet", 3, 3, (20, 16), 2)
    folder = options_for_model("imagefolder", spec, data_dir=Path("d"))
    assert (folder.image_size, folder.channels, folder.time_steps, folder.augment) == ((20, 16), 3, 2, "none")
    assert folder.data_dir == Path("d")
    frames = options_for_model("nmnist", ModelSpec("small_convnet", 10, 2, (17, 17), 5, encoding="frames"))
    assert (frames.image_size, frames.channels, frames.time_steps) == ((17, 17), None, 5)
    fixed = options_for_model("cifar10", spec)
    assert (fixed.image_size, fixed.channels) == (None, None)  # left to the compatibility check


def test_plugins_are_looked_up_only_for_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from realspike_cli.core import plugins

    groups = []
    monkeypatch.setattr(plugins, "load_group", lambda group: groups.append(group) or [])
    dataset_info("mnist10k")
    assert groups == []
    with pytest.raises(UnknownNameError):
        dataset_info("mydata")
    assert groups == [plugins.DATASET_GROUP]


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'cifar10'"):
        load_dataset("cifar1O")


def test_data_dir_defaults_to_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALSPIKE_DATA", str(tmp_path))
    assert resolve_dir(dataset_info("cifar10"), DataOptions()) == tmp_path / "cifar10"
    write_cifar10(tmp_path / "cifar10")
    assert len(load_dataset("cifar10", DataOptions(augment="none")).test) == 4


# --- CIFAR -----------------------------------------------------------------------------------------------


def test_cifar10_reads_the_pickle_release(tmp_path: Path) -> None:
    arrays = write_cifar10(tmp_path)
    splits = load_dataset("cifar10", DataOptions(data_dir=tmp_path, augment="none"))
    assert (len(splits.train), len(splits.test)) == (10, 4)
    x, y = splits.test[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int) and 0 <= y < 10
    raw = torch.from_numpy(arrays["test_batch"][1].reshape(3, 32, 32)).float() / 255
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    torch.testing.assert_close(x, (raw - mean[:, None, None]) / std[:, None, None], rtol=0, atol=1e-5)
    # augment="none": the training split is as plain as the test split, so every read is the same.
    torch.testing.assert_close(splits.train[3][0], splits.train[3][0])


def test_cifar10_standard_augmentation_is_random_on_train_only(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    splits = load_dataset("cifar10", DataOptions(data_dir=tmp_path))
    torch.manual_seed(0)
    draws = [splits.train[0][0] for _ in range(3)]
    assert draws[0].shape == (3, 32, 32)
    assert not torch.equal(draws[0], draws[1]) or not torch.equal(draws[1], draws[2])
    torch.testing.assert_close(splits.test[0][0], splits.test[0][0])
    names = [type(t).__name__ for t in splits.train.transform.transforms]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "AutoAugment", "ToTensor", "Normalize", "Cutout"]


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    splits = load_dataset("cifar100", DataOptions(data_dir=tmp_path, augment="none"))
    assert (len(splits.train), len(splits.test)) == (6, 3)
    assert max(splits.train.targets) >= 5  # fine labels run to 99; coarse ones stop at 19
    assert splits.train[0][0].shape == (3, 32, 32)


def test_cifar_missing_data_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", DataOptions(data_dir=tmp_path / "nowhere"))
    _one_line_naming(error, str(tmp_path / "nowhere"), "--download", "cifar-10-batches-py/")
    with pytest.raises(DataError) as error:
        load_dataset("cifar100", DataOptions(data_dir=tmp_path))
    _one_line_naming(error, str(tmp_path), "--download", "cifar-100-python/")


def test_cifar_corrupt_file_is_a_data_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", DataOptions(data_dir=tmp_path))
    _one_line_naming(error, "corrupt", "cifar-10-batches-py")


def test_cifar_download_checks_the_archive_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.utils as tv_utils

    seen = {}

    def fake_download(url: str, root: str, filename: str, md5: str) -> None:
        seen["md5"] = md5
        raise RuntimeError("no network here")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", DataOptions(data_dir=tmp_path, download=True))
    _one_line_naming(error, "could not download CIFAR-10", str(tmp_path))
    assert seen["md5"] == tv_cifar.CIFAR10.tgz_md5


def test_batch_stream_over_cifar10(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    train = load_dataset("cifar10", DataOptions(data_dir=tmp_path, augment="none")).train
    stream = BatchStream(train, 4, shuffle=True, seed=1, epoch=0, workers=0)
    batches = list(stream)
    assert len(stream) == len(batches) == 3
    assert [b[0].shape for b in batches] == [(4, 3, 32, 32), (4, 3, 32, 32), (2, 3, 32, 32)]
    assert batches[0][1].dtype == torch.int64
    again = list(BatchStream(train, 4, shuffle=True, seed=1, epoch=0, workers=0, start_batch=1))
    torch.testing.assert_close(again[0][0], batches[1][0])


# --- ImageNet --------------------------------------------------------------------------------------------


def test_imagenet_reads_class_folders(tmp_path: Path) -> None:
    write_imagenet(tmp_path)
    splits = load_dataset("imagenet", DataOptions(data_dir=tmp_path, augment="none"))
    assert (len(splits.train), len(splits.test)) == (6, 3)
    assert [y for _, y in splits.test.samples] == [0, 1, 2]
    x, y = splits.test[2]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == 2
    torch.testing.assert_close(splits.train[1][0], splits.train[1][0])
    standard = load_dataset("imagenet", DataOptions(data_dir=tmp_path)).train
    names = [type(t).__name__ for t in standard.transform.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]


def test_imagenet_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_dataset("imagenet", DataOptions(data_dir=tmp_path))
    _one_line_naming(error, str(tmp_path), "train/<wnid>/*.JPEG", "image-net.org")
    write_imagenet(tmp_path)
    (tmp_path / "val" / "n01440764").rename(tmp_path / "val" / "n99999999")
    with pytest.raises(DataError) as error:
        load_dataset("imagenet", DataOptions(data_dir=tmp_path))
    _one_line_naming(error, "different class folders")
    (tmp_path / "val" / "n99999999").rename(tmp_path / "val" / "n01440764")
    bad = tmp_path / "val" / "n01443537" / "n01443537_0.JPEG"
    bad.write_bytes(bad.read_bytes()[:50])
    splits = load_dataset("imagenet", DataOptions(data_dir=tmp_path))
    with pytest.raises(DataError) as error:
        splits.test[1]
    _one_line_naming(error, str(bad))


# --- CIFAR10-DVS -----------------------------------------------------------------------------------------


def test_aedat4_fixture_round_trips_through_tonic(tmp_path: Path) -> None:
    pytest.importorskip("aedat")
    from tonic.io import read_aedat4

    t = np.arange(100, dtype=np.int64) * 1000 + 5
    x, y, on = np.arange(100) % 128, (np.arange(100) * 7) % 128, np.arange(100) % 2
    write_aedat4(tmp_path / "a.aedat4", events_array(t, x, y, on), per_packet=30)
    events = read_aedat4(str(tmp_path / "a.aedat4"))
    assert len(events) == 100
    assert (events["t"] == t).all() and (events["x"] == x).all() and (events["y"] == y).all()
    assert (events["on"] == on.astype(bool)).all()


def test_cifar10_dvs_frames_and_split(tmp_path: Path) -> None:
    pytest.importorskip("aedat")
    write_cifar10dvs(tmp_path)
    splits = load_dataset("cifar10-dvs", DataOptions(data_dir=tmp_path, augment="none"))
    assert (len(splits.train), len(splits.test)) == (10, 10)
    assert sorted(y for _, y in (splits.test[i] for i in range(10))) == list(range(10))
    x, y = splits.train[0]
    assert x.shape == (10, 2, 48, 48) and x.dtype == torch.float32 and y == 0
    # Frames hold event counts: resizing keeps the mean, so the total shrinks by the area ratio.
    assert 0.8 * 300 < float(x.sum()) * (128 / 48) ** 2 <= 300 * 1.05
    torch.testing.assert_close(splits.train[0][0], x)
    again = load_dataset("cifar10-dvs", DataOptions(data_dir=tmp_path, time_steps=4))
    assert again.test.indices == splits.test.indices  # the split does not depend on options
    assert again.train[0][0].shape == (4, 2, 48, 48)
    # "standard": the training frames move (flip and shift), the test frames never do.
    torch.manual_seed(0)
    draws = [again.train[0][0] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert again.test.augment is None


def test_loaded_splits_survive_pickling(tmp_path: Path) -> None:
    """DataLoader workers started by spawn or forkserver receive the data set pickled."""
    write_cifar10(tmp_path / "cifar10")
    cifar = load_dataset("cifar10", DataOptions(data_dir=tmp_path / "cifar10", augment="none")).train
    torch.testing.assert_close(pickle.loads(pickle.dumps(cifar))[2][0], cifar[2][0])
    pytest.importorskip("aedat")
    write_cifar10dvs(tmp_path / "dvs", per_class=1, n_events=20)
    dvs = load_dataset("cifar10-dvs", DataOptions(data_dir=tmp_path / "dvs", augment="none")).train
    torch.testing.assert_close(pickle.loads(pickle.dumps(dvs))[3][0], dvs[3][0])


def test_cifar10_dvs_errors(tmp_path: Path) -> None:
    pytest.importorskip("aedat")
    with pytest.raises(DataError) as error:
        load_dataset("cifar10-dvs", DataOptions(data_dir=tmp_path))
    _one_line_naming(error, str(tmp_path), "--download", "CIFAR10DVS/airplane/*.aedat4")
    write_cifar10dvs(tmp_path, per_class=1, n_events=20)
    bad = tmp_path / "CIFAR10DVS" / "airplane" / "cifar10_airplane_0.aedat4"
    bad.write_bytes(bad.read_bytes()[:200])
    splits = load_dataset("cifar10-dvs", DataOptions(data_dir=tmp_path))
    with pytest.raises(DataError) as error:
        splits.train[0]
    _one_line_naming(error, str(bad), "unreadable")


# --- transforms ------------------------------------------------------------------------------------------


def test_cutout_zeroes_one_clipped_square_in_every_channel() -> None:
    torch.manual_seed(0)
    for _ in range(20):
        out = Cutout(holes=1, length=16)(torch.ones(3, 32, 32))
        zeros = out == 0
        assert torch.equal(zeros[0], zeros[1]) and torch.equal(zeros[0], zeros[2])
        assert 64 <= int(zeros[0].sum()) <= 256


def test_frame_flip_shift_moves_all_steps_alike() -> None:
    torch.manual_seed(0)
    frames = torch.zeros(3, 2, 48, 48)
    frames[:, :, 10, 20] = 1
    out = RandomFrameFlipShift(shift=5)(frames)
    assert out.sum() == frames.sum() and torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
