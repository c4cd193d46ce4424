"""Hostile data folders: a data file can never run code, and no link leads a loader out of its folder.

Every payload here is first shown to work (an unrestricted `pickle.load` / `np.load(allow_pickle=True)` of
the same bytes does create its marker file), so a refusal proves the guard and not a broken payload.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from realspike_cli.core.datasets import DataOptions, load_dataset
from realspike_cli.core.datasets.safe_pickle import NotPlainData, load_plain_pickle
from realspike_cli.core.errors import DataError
from tests.fixtures.data_writers import (
    CIFAR10_NAMES,
    write_cifar10_py2,
    write_gesture,
    write_png_folder,
)

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs `call(*args)`: the classic code-execution pickle."""

    def __init__(self, call, *args) -> None:
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def payloads(marker: Path) -> dict[str, object]:
    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "builtins.open": Payload(open, str(marker), "w"),
        "builtins.exec": Payload(exec, f"open({str(marker)!r}, 'w').close()"),
    }


def cli(capsys, *argv: str) -> tuple[int, str]:
    from realspike_cli.cli.app import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


def assert_one_error(code: int, err: str, *parts: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    assert all(part in lines[0] for part in parts), err


# --- CIFAR: the python release is pickles ------------------------------------------------------------------


def test_cifar_real_format_loads_exactly_as_unrestricted_pickle_reads_it(tmp_path: Path) -> None:
    arrays = write_cifar10_py2(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for name in ("data_batch_3", "test_batch", "batches.meta"):
        raw = (folder / name).read_bytes()
        assert raw.startswith(b"\x80\x02}(U") and b"cnumpy.core.multiarray\n_reconstruct" in raw or "meta" in name
        theirs, ours = pickle.loads(raw, encoding="latin1"), load_plain_pickle(raw)  # stdlib as the oracle
        assert theirs.keys() == ours.keys()
        for key in theirs:
            assert np.array_equal(theirs[key], ours[key]) if key == "data" else theirs[key] == ours[key]
    splits = load_dataset("cifar10", DataOptions(data_dir=tmp_path, augment="none"))
    assert splits.train.classes == CIFAR10_NAMES and (len(splits.train), len(splits.test)) == (10, 3)
    x, y = splits.test[2]
    raw = torch.from_numpy(arrays["test_batch"][2].reshape(3, 32, 32)).float() / 255
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    torch.testing.assert_close(x, (raw - mean[:, None, None]) / std[:, None, None], rtol=0, atol=1e-5)
    assert y == int(arrays["test_batch_labels"][2])


@pytest.mark.parametrize("kind", ["os.system", "builtins.open", "builtins.exec"])
@pytest.mark.parametrize("victim", ["data_batch_1", "test_batch", "batches.meta"])
def test_a_crafted_cifar_file_is_refused_and_runs_nothing(tmp_path: Path, capsys, kind: str, victim: str) -> None:
    write_cifar10_py2(tmp_path / "data")
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps({"data": payloads(proof)[kind]}, protocol=2))
    assert proof.exists()  # the payload works when unpickled without restrictions
    marker = tmp_path / "pwned"
    crafted = {"batch_label": "x", "labels": [0], "data": payloads(marker)[kind], "label_names": CIFAR10_NAMES}
    (tmp_path / "data" / "cifar-10-batches-py" / victim).write_bytes(pickle.dumps(crafted, protocol=2))
    code, err = cli(capsys, "train", "cifar10", "--data-dir", str(tmp_path / "data"), "--max-steps", "1",
                    "--out", str(tmp_path / "run"))
    assert_one_error(code, err, victim, "is not plain data, refusing to load it")
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_the_unpickler_refuses_every_way_around_its_allow_list() -> None:
    attempts = {
        "object dtype": pickle.dumps({"data": np.array([1, "x"], dtype=object)}, protocol=2),
        "ndarray called": b"\x80\x02cnumpy\nndarray\nK\x05\x85R.",
        "reconstruct misused": b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nK\x01K\x02U\x01b\x87R.",
        "other encoder": b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.",
        "persistent id": b"\x80\x02X\x01\x00\x00\x00aQ.",
        "set state on a constructor": b"\x80\x02cnumpy\ndtype\n}X\x03\x00\x00\x00_fnK\x01sb.",
        "a set": pickle.dumps({"data": {1, 2}}, protocol=4),
    }
    for name, raw in attempts.items():
        with pytest.raises(NotPlainData):
            load_plain_pickle(raw)
        assert name


# --- arrays: npz and the DVS128 Gesture recordings ------------------------------------------------------------


def object_array(marker: Path) -> np.ndarray:
    array = np.empty(2, dtype=object)
    array[0], array[1] = Payload(os.system, f"touch {marker}"), 1
    return array


def test_an_npz_with_pickled_objects_is_refused_and_runs_nothing(tmp_path: Path, capsys) -> None:
    proof, marker = tmp_path / "proof", tmp_path / "pwned"
    np.savez(tmp_path / "proof.npz", x=object_array(proof))
    np.load(tmp_path / "proof.npz", allow_pickle=True)["x"]
    assert proof.exists()  # np.load would run it if it were allowed to unpickle
    labels = np.array([0, 1, 0, 1])
    np.savez(tmp_path / "d.npz", x_train=object_array(marker), y_train=labels[:2], x_test=np.zeros((4, 8, 8), np.uint8),
             y_test=labels)
    code, err = cli(capsys, "train", "npz", "--data-dir", str(tmp_path / "d.npz"), "--max-steps", "1")
    assert_one_error(code, err, "array 'x_train' holds Python objects (a pickle), refusing to load it")
    assert not marker.exists()


def test_a_gesture_recording_that_is_a_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    write_gesture(tmp_path, {"ibmGestureTrain": ["user01_led"], "ibmGestureTest": ["user24_led"]}, n_events=20)
    recording = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led" / "0.npy"
    proof, marker = tmp_path / "proof", tmp_path / "pwned"
    np.save(tmp_path / "proof.npy", object_array(proof), allow_pickle=True)
    np.load(tmp_path / "proof.npy", allow_pickle=True)
    assert proof.exists()
    for crafted in (lambda: np.save(recording, object_array(marker), allow_pickle=True),
                    lambda: recording.write_bytes(pickle.dumps(Payload(os.system, f"touch {marker}")))):
        crafted()
        splits = load_dataset("dvs128-gesture", DataOptions(data_dir=tmp_path, augment="none"))
        with pytest.raises(DataError, match="a pickle|not a readable .npy array"):
            splits.train[0]
        assert not marker.exists()


# --- links out of the folder -------------------------------------------------------------------------------


def test_imagenet_links_must_stay_inside_the_folder(tmp_path: Path) -> None:
    outside = write_png_folder(tmp_path / "elsewhere", per_class={"train": 1}, split=False)["train"][0]
    for split in ("train", "val"):
        write_png_folder(tmp_path / "imagenet" / "tmp", per_class={"train": 1}, classes=2, split=False)
        os.replace(tmp_path / "imagenet" / "tmp", tmp_path / "imagenet" / split)
    assert len(load_dataset("imagenet", DataOptions(data_dir=tmp_path / "imagenet")).train) == 2
    link = tmp_path / "imagenet" / "val" / "1" / "stolen.png"
    link.symlink_to(outside)
    with pytest.raises(DataError, match="stolen.png links outside the data folder"):
        load_dataset("imagenet", DataOptions(data_dir=tmp_path / "imagenet"))


def test_cifar10_dvs_links_must_stay_inside_the_folder(tmp_path: Path) -> None:
    pytest.importorskip("aedat")
    from tests.test_datasets import write_cifar10dvs

    write_cifar10dvs(tmp_path / "dvs", per_class=1, n_events=10)
    write_cifar10dvs(tmp_path / "other", per_class=1, n_events=10)
    link = tmp_path / "dvs" / "CIFAR10DVS" / "cat" / "cifar10_cat_9.aedat4"
    link.symlink_to(tmp_path / "other" / "CIFAR10DVS" / "cat" / "cifar10_cat_0.aedat4")
    with pytest.raises(DataError, match="cifar10_cat_9.aedat4 links outside the data folder"):
        load_dataset("cifar10-dvs", DataOptions(data_dir=tmp_path / "dvs"))


# --- plugins -----------------------------------------------------------------------------------------------

PLUGIN = '''
import torch
from realspike_cli import DatasetInfo, register_dataset
from realspike_cli.core.datasets.loaders import InMemoryDataset

INFO = DatasetInfo(name="mydata", num_classes=2, in_channels=1, input_size=(8, 8))


@register_dataset(INFO)
def load(options):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    images = (torch.rand(40, 1, 8, 8, generator=g) * 100 + labels.view(-1, 1, 1, 1) * 150).to(torch.uint8)
    return (InMemoryDataset(images[:30], labels[:30], (0.5,), (0.3,)),
            InMemoryDataset(images[30:], labels[30:], (0.5,), (0.3,)))
'''

DRIVER = '''
import sys
from realspike_cli.core.datasets import dataset_provider, list_datasets
from realspike_cli.cli.app import main
assert "mydata" in list_datasets(), list_datasets()
provider = dataset_provider("mydata")
assert (provider.distribution, provider.version) == ("realspike-mydata", "0.2"), provider
main(["train", "mydata", "--arch", "small_convnet", "--width", "0.25", "--t", "2", "--epochs", "1",
      "--batch-size", "10", "--out", sys.argv[1]])
'''


def install_plugin(site: Path) -> None:
    """What `pip install realspike-mydata` leaves in site-packages: the module and its dist-info."""
    (site / "realspike_mydata").mkdir(parents=True)
    (site / "realspike_mydata" / "__init__.py").write_text(PLUGIN)
    info = site / "realspike_mydata-0.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: realspike-mydata\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text("[realspike.datasets]\nmydata = realspike_mydata\n")
    (info / "top_level.txt").write_text("realspike_mydata\n")
    (info / "RECORD").write_text("realspike_mydata/__init__.py,,\nrealspike_mydata-0.2.dist-info/METADATA,,\n")


@pytest.mark.slow
def test_a_plugin_data_set_is_known_to_every_command(tmp_path: Path) -> None:
    install_plugin(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path / "site")])}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "best.safetensors").exists()
