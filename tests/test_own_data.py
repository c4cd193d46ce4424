"""A user's own data: `imagefolder` (class folders of image files) and `npz` (arrays in one archive).

Oracles: pixels and statistics recomputed here with PIL and numpy from the files the test wrote (float64,
one naive pass), resizing by torchvision's own `Resize`, grey conversion by PIL's documented formula, the
split by counting. The CLI test trains on PNG digits and checks eval's accuracy against a plain loop.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from realspike_cli.core.datasets import DataOptions, dataset_info, load_dataset
from realspike_cli.core.errors import ConfigError, DataError
from tests.fixtures.data_writers import mnist_digits, write_png_folder


def pixels(path: Path | str) -> np.ndarray:
    """[C, H, W] float64 in [0, 1], read by PIL alone."""
    from PIL import Image

    array = np.asarray(Image.open(path), dtype=np.float64) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def numpy_stats(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.stack([pixels(p) for p in paths])  # [N, C, H, W]
    return stacked.mean(axis=(0, 2, 3)), stacked.std(axis=(0, 2, 3))


def normalized(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((raw - mean[:, None, None]) / std[:, None, None]).float()


def one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.strip(), message
    for part in parts:
        assert part in message, message


RAW = {"mean": (0.0,), "std": (1.0,)}  # normalization that leaves pixels as they are, to compare them raw


# --- imagefolder -------------------------------------------------------------------------------------------


def test_imagefolder_info_and_pixels_match_pil_and_numpy(tmp_path: Path) -> None:
    written = write_png_folder(tmp_path, per_class={"train": 4, "test": 2})
    assert dataset_info("imagefolder").from_data and dataset_info("imagefolder").num_classes == 0  # reads nothing
    options = DataOptions(data_dir=tmp_path, augment="none")
    info = dataset_info("imagefolder", options)
    assert (info.num_classes, info.in_channels, info.input_size) == (3, 1, (28, 28))
    splits = load_dataset("imagefolder", options)
    assert splits.info == info and splits.train.classes == ["0", "1", "2"]
    assert (len(splits.train), len(splits.test)) == (12, 6)
    mean, std = numpy_stats(written["train"])
    torch.testing.assert_close(splits.train.transform.transforms[-1].mean.flatten().double(),
                               torch.from_numpy(mean), rtol=0, atol=1e-6)
    for i in (0, 5):
        path, label = splits.test.samples[i]
        x, y = splits.test[i]
        assert y == label == int(Path(path).parent.name)
        torch.testing.assert_close(x, normalized(pixels(path), mean, std), rtol=0, atol=1e-5)


def test_imagefolder_without_split_holds_out_a_tenth_of_each_class(tmp_path: Path) -> None:
    written = write_png_folder(tmp_path, per_class={"train": 12}, split=False)
    splits = load_dataset("imagefolder", DataOptions(data_dir=tmp_path, augment="none"))
    train, test = {p for p, _ in splits.train.samples}, {p for p, _ in splits.test.samples}
    assert not train & test and train | test == {str(p) for p in written["train"]}
    assert sorted(y for _, y in splits.test.samples) == [0, 1, 2]  # round(12 / 10) = 1 per class
    again = load_dataset("imagefolder", DataOptions(data_dir=tmp_path, augment="none"))
    assert again.test.samples == splits.test.samples  # the same split on every load


def test_imagefolder_colour_detected_and_channels_forced(tmp_path: Path) -> None:
    write_png_folder(tmp_path, per_class={"train": 2, "test": 1}, mode="RGB")
    rgb = load_dataset("imagefolder", DataOptions(data_dir=tmp_path, augment="none", **RAW))
    assert rgb.info.in_channels == 3
    path = rgb.test.samples[1][0]
    torch.testing.assert_close(rgb.test[1][0], torch.from_numpy(pixels(path)).float(), rtol=0, atol=1e-6)
    grey = load_dataset("imagefolder", DataOptions(data_dir=tmp_path, augment="none", channels=1, **RAW))
    r, g, b = pixels(path) * 255
    luma = (r * 299 + g * 587 + b * 114) / 1000 / 255  # PIL's documented RGB → L conversion
    assert grey.info.in_channels == 1 and grey.test[1][0].shape == (1, 28, 28)
    torch.testing.assert_close(grey.test[1][0][0], torch.from_numpy(luma).float(), rtol=0, atol=1.01 / 255)


def test_imagefolder_resizes_as_torchvision_and_refuses_mixed_sizes(tmp_path: Path) -> None:
    from torchvision.transforms import functional as TF

    written = write_png_folder(tmp_path, per_class={"train": 2, "test": 1})
    small = write_png_folder(tmp_path / "extra", per_class={"train": 1}, split=False, size=(20, 24))
    os.replace(small["train"][0], tmp_path / "train" / "0" / "small.png")
    with pytest.raises(DataError) as error:
        dataset_info("imagefolder", DataOptions(data_dir=tmp_path))
    one_line(error, "differ in size", "small.png", "20×24", "--image-size")
    splits = load_dataset("imagefolder", DataOptions(data_dir=tmp_path, augment="none", image_size=(16, 12), **RAW))
    assert splits.info.input_size == (16, 12)
    for path in (tmp_path / "train" / "0" / "small.png", written["test"][0]):
        train_paths, test_paths = ([p for p, _ in s.samples] for s in (splits.train, splits.test))
        x = splits.train[train_paths.index(str(path))][0] if str(path) in train_paths else \
            splits.test[test_paths.index(str(path))][0]
        expected = TF.resize(torch.from_numpy(pixels(path)).float(), [16, 12], antialias=True)
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-5)


def test_imagefolder_normalization_given_stored_or_refused(tmp_path: Path) -> None:
    write_png_folder(tmp_path, per_class={"train": 2, "test": 1})
    path = load_dataset("imagefolder", DataOptions(data_dir=tmp_path)).test.samples[0][0]
    given = load_dataset("imagefolder", DataOptions(data_dir=tmp_path, mean=0.5, std=0.25))
    torch.testing.assert_close(given.test[0][0], normalized(pixels(path), np.array([0.5]), np.array([0.25])))
    (tmp_path / "normalization.json").write_text(json.dumps({"mean": [0.2], "std": [0.4]}))
    stored = load_dataset("imagefolder", DataOptions(data_dir=tmp_path))
    torch.testing.assert_close(stored.test[0][0], normalized(pixels(path), np.array([0.2]), np.array([0.4])))
    for bad in ('{"mean": [NaN], "std": [1]}', '{"mean": [0.1], "std": [0]}', "[1, 2]", '{"mean": [0.1]}'):
        (tmp_path / "normalization.json").write_text(bad)
        with pytest.raises(DataError) as error:
            load_dataset("imagefolder", DataOptions(data_dir=tmp_path))
        one_line(error, "normalization.json", "not a valid normalization file")
    with pytest.raises(ConfigError, match="3 values for 1-channel"):
        load_dataset("imagefolder", DataOptions(data_dir=tmp_path, mean=(0.1, 0.2, 0.3), std=(1, 1, 1)))


def brute_force_shift(plain: np.ndarray, moved: np.ndarray, limit: int) -> tuple[int, int] | None:
    """The (dy, dx) with |dy|, |dx| <= limit that turns `plain` [H, W] into `moved` with zero fill, if any."""
    height, width = plain.shape
    for dy in range(-limit, limit + 1):
        for dx in range(-limit, limit + 1):
            out = np.zeros_like(plain)
            for r in range(height):
                for c in range(width):
                    if 0 <= r - dy < height and 0 <= c - dx < width:
                        out[r, c] = plain[r - dy, c - dx]
            if np.allclose(out, moved, atol=1e-6):
                return dy, dx
    return None


def test_imagefolder_standard_augmentation_shifts_training_images_only(tmp_path: Path) -> None:
    write_png_folder(tmp_path, per_class={"train": 2, "test": 1})
    splits = load_dataset("imagefolder", DataOptions(data_dir=tmp_path, **RAW))
    plain = pixels(splits.train.samples[0][0])[0]
    torch.manual_seed(3)
    shifts = {brute_force_shift(plain, splits.train[0][0][0].numpy(), 4) for _ in range(4)}
    assert None not in shifts and len(shifts) > 1  # a shift of at most 28 / 8 = 4 pixels, drawn per read
    torch.testing.assert_close(splits.test[0][0], splits.test[0][0])
    assert brute_force_shift(plain, np.roll(plain, 5, axis=0), 4) is None  # the oracle can say no


def test_imagefolder_refuses_bad_folders_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(root: Path, *parts: str, **options) -> None:
        with pytest.raises((DataError, ConfigError)) as error:
            load_dataset("imagefolder", DataOptions(data_dir=root, **options))
        one_line(error, *parts)

    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "holds no class folders")
    refused(tmp_path / "nowhere", "is not a folder", "--data-dir")
    write_png_folder(tmp_path / "d", per_class={"train": 2, "test": 1})
    (tmp_path / "d" / "train" / "3").mkdir()
    refused(tmp_path / "d", "class folder", "train/3", "holds no")
    (tmp_path / "d" / "train" / "3").rmdir()
    corrupt = tmp_path / "d" / "test" / "1" / "000.png"
    original = corrupt.read_bytes()
    corrupt.write_bytes(b"not an image at all")
    refused(tmp_path / "d", str(corrupt), "unreadable")
    corrupt.write_bytes(original[:60])  # the header survives, the pixels do not: found when read
    splits = load_dataset("imagefolder", DataOptions(data_dir=tmp_path / "d"))
    with pytest.raises(DataError) as error:
        splits.test[[p for p, _ in splits.test.samples].index(str(corrupt))]
    one_line(error, str(corrupt), "unreadable")
    corrupt.write_bytes(original)
    (tmp_path / "d" / "val").mkdir()
    refused(tmp_path / "d", "both test/ and val/")
    (tmp_path / "d" / "val").rmdir()
    os.rename(tmp_path / "d" / "test" / "2", tmp_path / "d" / "test" / "7")
    refused(tmp_path / "d", "expected class folders", "'2' is missing")
    os.rename(tmp_path / "d" / "test" / "7", tmp_path / "d" / "test" / "2")
    monkeypatch.setattr("realspike_cli.core.datasets.files.MAX_CLASSES", 2)
    refused(tmp_path / "d", "3 class folders, more than 2")
    monkeypatch.undo()
    write_png_folder(tmp_path / "one", per_class={"train": 3}, classes=1, split=False)
    refused(tmp_path / "one", "one class folder", "two or more")
    (tmp_path / "d" / "train" / "bad\nname").mkdir()
    refused(tmp_path / "d", "control characters")
    (tmp_path / "d" / "train" / "bad\nname").rmdir()
    (tmp_path / "d" / "train" / "0" / "bad\rname.png").write_bytes(b"")
    refused(tmp_path / "d", "control characters")


def test_an_image_over_the_decompression_bomb_limit_is_unreadable(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    write_png_folder(tmp_path, per_class={"train": 1, "test": 1}, classes=2)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # a 28×28 digit is then over twice the limit
    with pytest.raises(DataError) as error:
        load_dataset("imagefolder", DataOptions(data_dir=tmp_path))
    one_line(error, "unreadable", "DecompressionBombError")


def test_imagefolder_links_must_stay_inside_the_folder(tmp_path: Path) -> None:
    outside = write_png_folder(tmp_path / "elsewhere", per_class={"train": 1}, split=False)["train"][0]
    write_png_folder(tmp_path / "d", per_class={"train": 2, "test": 1})
    inner = tmp_path / "d" / "train" / "0" / "inner.png"
    inner.symlink_to(tmp_path / "d" / "train" / "1" / "000.png")  # a link inside the folder is fine
    assert len(load_dataset("imagefolder", DataOptions(data_dir=tmp_path / "d")).train) == 7
    escaping = tmp_path / "d" / "train" / "0" / "escape.png"
    escaping.symlink_to(outside)
    with pytest.raises(DataError) as error:
        load_dataset("imagefolder", DataOptions(data_dir=tmp_path / "d"))
    one_line(error, str(escaping), "links outside the data folder")
    escaping.unlink()
    (tmp_path / "d" / "train" / "0" / "loop").symlink_to(tmp_path / "d" / "train")  # a loop is read once
    assert len(load_dataset("imagefolder", DataOptions(data_dir=tmp_path / "d")).train) > 7
    (tmp_path / "d" / "train" / "0" / "loop").unlink()
    (tmp_path / "d" / "train" / "0" / "up").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DataError) as error:
        load_dataset("imagefolder", DataOptions(data_dir=tmp_path / "d"))
    one_line(error, "links outside the data folder")


def test_folder_and_array_splits_survive_pickling(tmp_path: Path) -> None:
    """DataLoader workers started by spawn or forkserver receive the data set pickled."""
    import pickle

    write_png_folder(tmp_path / "d", per_class={"train": 2, "test": 1})
    folder = load_dataset("imagefolder", DataOptions(data_dir=tmp_path / "d", augment="none")).train
    torch.testing.assert_close(pickle.loads(pickle.dumps(folder))[3][0], folder[3][0])
    arrays = load_dataset("npz", DataOptions(data_dir=write_npz(tmp_path / "a.npz", **digits_arrays()))).train
    assert pickle.loads(pickle.dumps(arrays)).augment.shift == 4


def test_fixed_data_sets_refuse_shape_options() -> None:
    with pytest.raises(ConfigError, match="'cifar10' is always 3×32×32: it cannot be resized to 28×28"):
        dataset_info("cifar10", DataOptions(image_size=(28, 28)))
    with pytest.raises(ConfigError, match="has 1 channels, not 3"):
        load_dataset("mnist10k", DataOptions(channels=3))
    with pytest.raises(ConfigError, match="mean/std cannot be given"):
        load_dataset("mnist10k", DataOptions(mean=0.5, std=0.5))
    assert dataset_info("mnist10k", DataOptions(image_size=(28, 28), channels=1)).input_size == (28, 28)


@pytest.mark.parametrize("fields, message", [
    ({"image_size": (0, 5)}, "image side must be a whole number from 1 to 4096"),
    ({"image_size": (5000, 5)}, "from 1 to 4096"),
    ({"image_size": (True, 5)}, "image side"),
    ({"channels": 2}, "channels must be 1"),
    ({"mean": (0.1,)}, "give both mean and std"),
    ({"mean": (float("nan"),), "std": (1.0,)}, "finite"),
    ({"mean": (0.1,), "std": (-1.0,)}, "std must be positive"),
    ({"time_steps": 0}, "time steps"),
])
def test_data_options_are_validated(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DataOptions(**fields)


# --- npz ---------------------------------------------------------------------------------------------------


def digits_arrays(n_train: int = 30, n_test: int = 9) -> dict[str, np.ndarray]:
    d = mnist_digits()
    keep = lambda s, n: np.flatnonzero(d[f"y_{s}"] < 3)[:n]  # noqa: E731
    return {"x_train": d["x_train"][keep("train", n_train)], "y_train": d["y_train"][keep("train", n_train)],
            "x_test": d["x_test"][keep("test", n_test)], "y_test": d["y_test"][keep("test", n_test)]}


def test_npz_layouts_and_scales_agree_with_numpy(tmp_path: Path) -> None:
    a = digits_arrays()
    rgb = {k: (np.stack([v, 255 - v, v // 2], axis=-1) if k.startswith("x") else v) for k, v in a.items()}
    cases = {
        "nhw": (a, 1), "nhwc1": ({k: v[..., None] if k.startswith("x") else v for k, v in a.items()}, 1),
        "nchw1": ({k: v[:, None] if k.startswith("x") else v for k, v in a.items()}, 1),
        "nhwc3": (rgb, 3), "nchw3": ({k: v.transpose(0, 3, 1, 2) if k.startswith("x") else v
                                     for k, v in rgb.items()}, 3),
    }
    for name, (arrays, channels) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays, class_names=np.array(["zero", "one", "two"]))
        splits = load_dataset("npz", DataOptions(data_dir=tmp_path / f"{name}.npz", augment="none"))
        assert (splits.info.num_classes, splits.info.in_channels, splits.info.input_size) == (3, channels, (28, 28))
        assert splits.train.classes == ["zero", "one", "two"]
        source = a if channels == 1 else rgb
        x = source["x_train"].astype(np.float64) / 255
        x = x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)
        mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
        got, labels = splits.train.batch(torch.arange(len(x)))
        expected = (x - mean[None, :, None, None]) / std[None, :, None, None]
        torch.testing.assert_close(got, torch.from_numpy(expected).float(), rtol=0, atol=1e-5)
        assert labels.tolist() == a["y_train"].tolist()


def test_npz_floats_resize_and_augmentation(tmp_path: Path) -> None:
    from torchvision.transforms import functional as TF

    a = digits_arrays()
    floats = {**a, "x_train": a["x_train"].astype(np.float32) * 3 - 7, "x_test": a["x_test"].astype(np.float32)}
    np.savez(tmp_path / "f.npz", **floats, mean=np.array([1.0]), std=np.array([2.0]))
    splits = load_dataset("npz", DataOptions(data_dir=tmp_path, augment="none"))  # the folder's one .npz
    torch.testing.assert_close(splits.train[4][0], torch.from_numpy((floats["x_train"][4][None] - 1) / 2))
    resized = load_dataset("npz", DataOptions(data_dir=tmp_path, augment="none", image_size=(14, 20)))
    expected = (TF.resize(torch.from_numpy(floats["x_test"][2][None]), [14, 20], antialias=True) - 1) / 2
    torch.testing.assert_close(resized.test[2][0], expected, rtol=0, atol=1e-4)
    standard = load_dataset("npz", DataOptions(data_dir=tmp_path))
    assert standard.train.augment.shift == 4 and standard.test.augment is None


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), "has no array 'y_test'"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.int16)), "x_train is int16; images must be uint8"),
    (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), "y_train must be integer labels"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), "holds 30 images and y_train 29 labels"),
    (lambda a: a.update(x_test=a["x_test"][:, :20]), "different shapes"),
    (lambda a: a.update(x_train=np.zeros((4, 3, 5, 3), np.uint8), y_train=np.zeros(4, np.int64)),
     "either axis 1 or axis 3 could be the channels"),
    (lambda a: a.update(x_train=np.zeros((4, 5), np.uint8)), "images must be [N, H, W]"),
    (lambda a: a.update(y_test=np.r_[-1, a["y_test"][1:].astype(np.int64)]), "labels run from -1"),
    (lambda a: a.update(y_train=a["y_train"] * 2), "no training image has label 1"),
    (lambda a: a.update(class_names=np.array(["a", "b"])), "they must be 0 to 1 (one per class name)"),
    (lambda a: a.update(y_train=a["y_train"] * 0, y_test=a["y_test"] * 0), "needs 2 to"),
    (lambda a: a.update(x_train=np.full((30, 28, 28), np.nan, np.float32)), "NaN or infinite"),
    (lambda a: a.update(mean=np.array([0.5])), "arrays mean and std must both be there"),
])
def test_npz_refusals_are_one_line(tmp_path: Path, change, message: str) -> None:
    arrays = digits_arrays()
    change(arrays)
    path = write_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError) as error:
        load_dataset("npz", DataOptions(data_dir=path))
    one_line(error, message)


def test_npz_files_that_are_not_archives_or_lie(tmp_path: Path) -> None:
    def refused(path: Path, *parts: str) -> None:
        with pytest.raises(DataError) as error:
            load_dataset("npz", DataOptions(data_dir=path))
        one_line(error, *parts)

    (tmp_path / "plain.npz").write_bytes(b"hello")
    refused(tmp_path / "plain.npz", "not a readable .npz archive")
    write_npz(tmp_path / "two.npz", **digits_arrays())
    refused(tmp_path, "exactly one .npz file", "plain.npz, two.npz")
    refused(tmp_path / "none", "does not exist")
    # A header that claims a million images, on 30 images of data: refused before anything is allocated.
    import zipfile

    with zipfile.ZipFile(tmp_path / "two.npz") as z:
        members = {n: z.read(n) for n in z.namelist()}
    # Same header length: the 4 extra digits take 4 of the padding spaces.
    header = members["x_train.npy"]
    assert b"(30, 28, 28), }    " in header
    members["x_train.npy"] = header.replace(b"(30, 28, 28), }    ", b"(999999, 28, 28), }", 1)
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    refused(tmp_path / "lie.npz", "header describes (999999, 28, 28)", "holds 23,520 bytes")


def test_npz_channel_conversion_is_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", **digits_arrays())
    with pytest.raises(ConfigError, match="1-channel images; they are used as they are"):
        dataset_info("npz", DataOptions(data_dir=path, channels=3))


# --- through the CLI ---------------------------------------------------------------------------------------


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    from realspike_cli.cli.app import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def naive_accuracy(checkpoint: Path, inputs: list[torch.Tensor], labels: list[int]) -> float:
    from realspike_cli.core.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint, "cpu")
    model.eval()
    with torch.no_grad():
        hits = [int(model(x[None]).argmax(1)) == y for x, y in zip(inputs, labels, strict=True)]
    return sum(hits) / len(hits)


TRAIN = ["--arch", "small_convnet", "--width", "0.25", "--t", "2", "--epochs", "1", "--batch-size", "20",
         "--lr", "0.05"]


def test_cli_trains_and_evaluates_a_folder_of_png_images(tmp_path: Path, capsys) -> None:
    written = write_png_folder(tmp_path / "digits", per_class={"train": 20, "test": 5})
    data = str(tmp_path / "digits")
    code, _, err = cli(capsys, "train", "imagefolder", "--data-dir", data, *TRAIN, "--out", str(tmp_path / "run"))
    assert code == 0, err
    best = tmp_path / "run" / "best.safetensors"
    code, out, err = cli(capsys, "eval", str(best), "--data-dir", data, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"] == "imagefolder" and report["images"] == 15
    mean, std = numpy_stats(written["train"])
    tests = sorted(written["test"])
    inputs = [normalized(pixels(p), mean, std) for p in tests]
    assert report["top1"] == pytest.approx(naive_accuracy(best, inputs, [int(p.parent.name) for p in tests]))
    code, out, err = cli(capsys, "reparam", str(best), "--data-dir", data, "--json")
    assert code == 0, err
    assert json.loads(out)["probe"].endswith("imagefolder test images")
    code, out, err = cli(capsys, "energy", str(best), "--data-dir", data, "--json", "-")
    assert code == 0 and json.loads(out)["inputs"]["source"] == "imagefolder test set", err
    code, out, err = cli(capsys, "export", str(best), "--format", "onnx", "--data-dir", data, "--json")
    assert code == 0, err
    assert json.loads(out)["probe"].endswith("imagefolder test images")


def test_cli_image_size_and_channels_are_recorded_and_reused(tmp_path: Path, capsys) -> None:
    write_png_folder(tmp_path / "digits", per_class={"train": 10, "test": 2})
    data = str(tmp_path / "digits")
    code, _, err = cli(capsys, "train", "imagefolder", "--data-dir", data, *TRAIN, "--image-size", "20x16",
                       "--channels", "3", "--out", str(tmp_path / "run"))
    assert code == 0, err
    code, out, err = cli(capsys, "eval", str(tmp_path / "run" / "best.safetensors"), "--data-dir", data, "--json")
    assert code == 0 and json.loads(out)["images"] == 6, err  # eval loads at the checkpoint's 3×20×16
    code, _, err = cli(capsys, "train", "imagefolder", "--data-dir", data, "--image-size", "20by16")
    assert code == 2 and "is not HEIGHTxWIDTH" in err
    code, _, err = cli(capsys, "train", "cifar10", "--image-size", "28")
    assert code == 1 and err.startswith("error: data set 'cifar10' is always 3×32×32") and "Traceback" not in err


def test_cli_trains_on_an_npz_archive(tmp_path: Path, capsys) -> None:
    path = write_npz(tmp_path / "digits.npz", **digits_arrays(40, 12))
    code, _, err = cli(capsys, "train", "npz", "--data-dir", str(path), *TRAIN, "--out", str(tmp_path / "run"))
    assert code == 0, err
    code, out, err = cli(capsys, "eval", str(tmp_path / "run" / "best.safetensors"), "--data-dir", str(path),
                         "--json")
    assert code == 0 and json.loads(out)["images"] == 12, err
