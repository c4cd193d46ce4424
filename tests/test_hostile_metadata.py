"""Crafted checkpoint metadata, absurd or non-finite flag values and resume files of the wrong structure,
through the CLI: each is one `error:` line naming the field, before anything is built or trained.

The crafted files are a real tiny checkpoint with one metadata field changed (its tensors untouched), written
with safetensors itself; the "nothing allocated" claim is judged by the child process's peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests.test_hostile_files import ROOT, TRAIN, assert_one_error, checkpoint, cli, tree  # noqa: F401


def crafted(source: Path, folder: Path, change, raw: str | None = None) -> Path:
    """`source` with its realspike metadata changed by `change(meta_dict)` (or replaced by `raw` JSON text)."""
    with safe_open(str(source), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    if raw is None:
        meta = json.loads(header["realspike"])
        change(meta)
        raw = json.dumps(meta)
    header["realspike"] = raw
    path = folder / "crafted.safetensors"
    save_file(tensors, str(path), metadata=header)
    return path


def model_field(key: str, value):
    def change(meta: dict) -> None:
        meta["model"][key] = value
    return change


METADATA_CASES = {  # name: (change, text the error must contain)
    "T = 1e9": (model_field("time_steps", 10**9), "time_steps"),
    "T = 0": (model_field("time_steps", 0), "time_steps"),
    "T = 4.7 (not coerced to 4)": (model_field("time_steps", 4.7), "time_steps must be an integer"),
    "T = true (not coerced to 1)": (model_field("time_steps", True), "time_steps must be an integer"),
    "negative input_size": (model_field("input_size", [-28, 28]), "input_size"),
    "1-D input_size": (model_field("input_size", [28]), "input_size"),
    "in_channels = -1": (model_field("in_channels", -1), "in_channels"),
    "width not a number": (model_field("arch_kwargs", {"width": "wide"}), "width"),
    # json.dumps writes NaN / Infinity literals, which strict JSON lacks: refused while parsing, named as such
    "num_classes NaN": (model_field("num_classes", float("nan")), "NaN"),
    "v_th inf": (lambda m: m["model"]["neuron"].update(v_th=float("inf")), "Infinity"),
    "v_th 0": (lambda m: m["model"]["neuron"].update(v_th=0.0), "v_th"),
    "schema 0": (lambda m: m.update(schema=0), "schema"),
    "schema -3": (lambda m: m.update(schema=-3), "schema"),
    "schema Infinity": (lambda m: m.update(schema=float("inf")), "Infinity"),
    "schema a string": (lambda m: m.update(schema="1"), "schema"),
    "spike setting unknown": (model_field("spike", "quaternary"), "spike"),
    "model not an object": (lambda m: m.update(model=[1, 2]), "model"),
}


@pytest.mark.parametrize("case", list(METADATA_CASES))
def test_crafted_metadata_is_one_error_line(case, checkpoint, tmp_path, capsys):  # noqa: F811
    change, expected = METADATA_CASES[case]
    path = crafted(checkpoint, tmp_path, change)
    code, out, err = cli(capsys, "eval", path)
    assert_one_error(code, err, expected)
    assert out == ""


@pytest.mark.parametrize(("case", "raw", "expected"), [
    ("deeply nested JSON", "[" * 100_000 + "]" * 100_000, "nest"),
    ("NaN literal", '{"schema": NaN}', "NaN"),
    ("not JSON", "{schema: 1", "metadata"),
])
def test_malformed_metadata_text_is_one_error_line(case, raw, expected, checkpoint, tmp_path, capsys):  # noqa: F811
    path = crafted(checkpoint, tmp_path, None, raw=raw)
    code, _, err = cli(capsys, "eval", path)
    assert_one_error(code, err)
    assert expected.lower() in err.lower(), err


def test_a_huge_input_size_is_refused_before_anything_is_allocated(checkpoint, tmp_path):  # noqa: F811
    """The issue's case: a small file whose input_size 2800×2800 made eval allocate 2.9 GB before refusing."""
    path = crafted(checkpoint, tmp_path, model_field("input_size", [2800, 2800]))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"}
    # A fresh parent, so the peak RSS it reports is that of this one eval only, not of earlier tests' children.
    wrapper = ("import resource, subprocess, sys; done = subprocess.run([sys.executable, '-m', 'realspike_cli', "
               f"'eval', {str(path)!r}], capture_output=True, text=True); sys.stderr.write(done.stderr); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")
    done = subprocess.run([sys.executable, "-c", wrapper], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)
    assert_one_error(done.returncode, done.stderr, "input_size")
    peak_mb = int(done.stdout.strip()) / 1024
    assert peak_mb < 1500, f"peak RSS {peak_mb:.0f} MB"  # the import of torch is ~400-650 MB; 2.9 GB is refused


def test_tensors_of_another_width_name_the_first_mismatch(checkpoint, tmp_path, capsys):  # noqa: F811
    path = crafted(checkpoint, tmp_path, model_field("arch_kwargs", {"width": 0.5}))
    code, _, err = cli(capsys, "eval", path)
    assert_one_error(code, err, "shape")
    assert "stem" in err or "weight" in err, err


def test_a_comparator_that_accepts_everything_would_be_caught(checkpoint, tmp_path, capsys):  # noqa: F811
    """The oracle's own check: the unchanged metadata written the same way loads and evaluates (exit 0)."""
    path = crafted(checkpoint, tmp_path, lambda meta: None)
    code, _, err = cli(capsys, "eval", path, "--batch-size", "500")
    assert code == 0, err


FLAG_CASES = {  # extra train flags: text the error must contain
    "--lr nan": (["--lr", "nan"], "lr"),
    "--lr inf": (["--lr", "inf"], "lr"),
    "--lr -1": (["--lr", "-1"], "lr"),
    "--momentum -1": (["--momentum", "-1"], "momentum"),
    "--momentum nan": (["--momentum", "nan"], "momentum"),
    "--weight-decay nan": (["--weight-decay", "nan"], "weight"),
    "--v-th nan": (["--v-th", "nan"], "v_th"),
    "--width inf": (["--width", "inf"], "width"),
    "--width 0": (["--width", "0"], "width"),
    "--seed 2**70": (["--seed", str(2**70)], "seed"),
    "--t 10000000": (["--t", "10000000"], "t"),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_absurd_or_non_finite_flags_are_refused_before_training(case, tmp_path, capsys):
    extra, expected = FLAG_CASES[case]
    out = tmp_path / "run"
    args = [a for a in TRAIN if a not in ("--width", "0.25")] if "--width" in extra else list(TRAIN)
    code, stdout, err = cli(capsys, *args, *extra, "--out", out)
    assert_one_error(code, err, expected)
    assert not out.exists() or tree(out) == {}, tree(out)  # nothing trained, nothing saved
    assert "epoch" not in stdout.lower()


RESUME_CASES = {
    "a list": ([1, 2, 3], "not a realspike resume file"),
    "no spec": ({"model": {}}, "no 'spec' entry"),
    "spec not text": ({"spec": 4, "config": "{}", "dataset": "mnist10k", "model": {}, "optimizer": {},
                       "scheduler": {}, "scaler": {}, "position": [0, 0, 0], "best": [0.0, 0], "history": "[]",
                       "torch_rng": torch.zeros(1)}, "'spec'"),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_a_resume_file_of_another_structure_is_one_error_line(case, tmp_path, capsys):
    state, expected = RESUME_CASES[case]
    out = tmp_path / "run"
    out.mkdir()
    torch.save(state, out / "resume.pt")
    before = tree(out)
    code, _, err = cli(capsys, *TRAIN, "--out", out, "--resume")
    assert_one_error(code, err, "resume.pt", expected)
    assert tree(out) == before  # the file is not replaced, nothing else written
