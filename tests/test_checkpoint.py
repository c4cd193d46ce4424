"""Checkpoint round trip, and a clear CheckpointError for every kind of bad file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from realspike_cli.core.checkpoint import SCHEMA, CheckpointMeta, load_checkpoint, read_meta, save_checkpoint
from realspike_cli.core.errors import CheckpointError, OutputError
from realspike_cli.core.models import build_model
from tests.conftest import tiny_spec


@pytest.fixture
def saved(tmp_path):
    spec = tiny_spec("resnet20", "channel")
    model = build_model(spec).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    meta = CheckpointMeta(spec=spec, dataset="cifar10", metrics={"test_top1": 0.5}, recipe={"command": "x"})
    path = save_checkpoint(tmp_path / "model.safetensors", model, meta)
    return path, model, meta


def test_round_trip_rebuilds_the_model_from_the_file_alone(saved):
    path, model, meta = saved
    loaded, read = load_checkpoint(path)
    assert read.spec == meta.spec and read.dataset == "cifar10" and read.metrics == {"test_top1": 0.5}
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    header = read_meta(path).to_dict()
    assert header["schema"] == SCHEMA and header["form"] == "train" and header["input_shape"] == [3, 32, 32]
    assert header["model"]["neuron"] == {
        "kind": "lif",
        "decay": 0.25,
        "v_th": 0.5,
        "surrogate_width": 1.0,
        "reset": "hard",
        "detach_reset": False,
        "reset_value": 0.0,
        "surrogate": "rectangular",
    }


def test_never_overwrites_silently(saved):
    path, model, meta = saved
    with pytest.raises(OutputError, match="already exists"):  # any writer's refusal, not a checkpoint problem
        save_checkpoint(path, model, meta)
    save_checkpoint(path, model, meta, overwrite=True)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_meta(tmp_path / "nope.safetensors")


def test_truncated_file(saved):
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|not a readable"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_meta(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a realspike checkpoint"):
        read_meta(path)


def _rewrite_header(path, tmp_path, edit):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = json.loads(f.metadata()["realspike"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(raw)
    out = tmp_path / "edited.safetensors"
    save_file(tensors, str(out), metadata={"format": "pt", "realspike": json.dumps(raw)})
    return out


def test_newer_format_is_refused(saved, tmp_path):
    out = _rewrite_header(saved[0], tmp_path, lambda raw: raw.update(schema=SCHEMA + 1))
    with pytest.raises(CheckpointError, match="newer than this realspike reads"):
        read_meta(out)


def test_weights_for_another_architecture(saved, tmp_path):
    def swap(raw):
        raw["model"]["arch"] = "resnet19"

    out = _rewrite_header(saved[0], tmp_path, swap)
    with pytest.raises(CheckpointError, match="do not match architecture 'resnet19'"):
        load_checkpoint(out)


def test_bad_metadata_values(saved, tmp_path):
    out = _rewrite_header(saved[0], tmp_path, lambda raw: raw["model"].update(spike="sometimes"))
    with pytest.raises(CheckpointError, match="unknown spike setting"):
        read_meta(out)
    out = _rewrite_header(saved[0], tmp_path, lambda raw: raw.pop("model"))
    with pytest.raises(CheckpointError, match="invalid metadata: model is missing"):
        read_meta(out)
