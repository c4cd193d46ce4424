"""`realspike reparam` and `eval --compare` on a model trained here: 100 % agreement, and clear refusals."""

from __future__ import annotations

import json

import pytest
import torch

from realspike_cli.cli.app import main
from realspike_cli.core.checkpoint import CheckpointMeta, file_sha256, load_checkpoint, read_meta, save_checkpoint
from realspike_cli.core.models import build_model
from tests.conftest import tiny_spec


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("materialize", [False, True])
@pytest.mark.slow
def test_inference_form_agrees_on_every_test_image(trained_run, capsys, materialize):
    source = trained_run / "best.safetensors"
    out = trained_run / f"inference-{materialize}.safetensors"
    flags = ["--materialize"] if materialize else []
    code, text, err = cli(capsys, "reparam", source, "-o", out, "--json", *flags)
    assert code == 0, err
    report = json.loads(text)
    assert report["spikes_binary"] and report["relative_diff"] < 1e-5 and report["agreement"] == 1.0
    assert report["layout"] == ("materialized" if materialize else "factorized")
    meta = read_meta(out)
    assert meta.form.value == "inference" and meta.parent_sha256 == file_sha256(source)
    assert meta.equivalence["probe"].endswith("mnist10k test images")
    code, text, err = cli(capsys, "eval", "--compare", source, out, "--json", "--batch-size", "500")
    assert code == 0, err
    result = json.loads(text)
    assert result["images"] == 2000 and result["agreement"] == 1.0 and result["disagreements"] == 0
    assert result["checkpoints"][0]["top1"] == result["checkpoints"][1]["top1"]
    # judged here, not by the reports above: both files run on the test images, logits compared directly
    want, got = direct_logits(source), direct_logits(out)
    assert torch.equal(got.argmax(1), want.argmax(1))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * float(want.abs().max()))


def direct_logits(path, images: int = 500) -> torch.Tensor:
    """A checkpoint's logits on the first mnist10k test images, run as stored (float32)."""
    from realspike_cli.core.datasets import DataOptions, load_dataset

    model, _ = load_checkpoint(path)
    x, _ = load_dataset("mnist10k", DataOptions(augment="none")).test.batch(torch.arange(images))
    with torch.no_grad():
        return torch.cat([model.eval()(chunk) for chunk in x.split(500)])


@pytest.mark.slow
def test_reparam_refuses_what_it_cannot_do(trained_run, capsys, tmp_path):
    source = trained_run / "best.safetensors"
    out = tmp_path / "inf.safetensors"
    code, _, err = cli(capsys, "reparam", source, "-o", out, "--tolerance", "0")
    assert code == 1 and "above the tolerance" in err and not out.exists()
    assert cli(capsys, "reparam", source, "-o", out)[0] == 0
    code, _, err = cli(capsys, "reparam", source, "-o", out)
    assert code == 1 and "already exists" in err
    code, _, err = cli(capsys, "reparam", out, "-o", tmp_path / "again.safetensors")
    assert code == 1 and "already in the inference form" in err


def test_reparam_names_the_layer_it_cannot_fold(capsys, tmp_path):
    spec = tiny_spec("sew_resnet18", "element")
    path = save_checkpoint(tmp_path / "sew.safetensors", build_model(spec).eval(), CheckpointMeta(spec, "cifar10"))
    code, _, err = cli(capsys, "reparam", path, "--random")
    assert code == 1 and "body.0.coeff" in err and "MaxPool2d" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.inference*"))


@pytest.mark.slow
def test_random_probe_when_data_is_missing(capsys, tmp_path):
    spec = tiny_spec("resnet20", "channel")
    model = build_model(spec).eval()
    path = save_checkpoint(tmp_path / "r20.safetensors", model, CheckpointMeta(spec, "cifar10"))
    code, text, err = cli(capsys, "reparam", path, "--json", "--data-dir", tmp_path / "nowhere")
    assert code == 0, err
    assert json.loads(text)["probe"].startswith("random inputs (CIFAR-10 not found")
    inference, meta = load_checkpoint(tmp_path / "r20.inference.safetensors")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(inference(x), model(x), rtol=1e-4, atol=1e-5)


def test_reparameterize_any_module():
    """From Python, without a checkpoint: verified on the inputs given, on random inputs shaped like an
    example, or on random inputs of a SpikingNetwork's spec; refused when it cannot be checked or differs."""
    from realspike_cli.core.conversion import reparameterize
    from realspike_cli.core.errors import ConfigError, ReparamError
    from realspike_cli.core.specs import Spike
    from tests.test_graph import images, user_net

    model = user_net(Spike.ELEMENT)
    x = images()
    inference, report = reparameterize(model, x)
    with torch.no_grad():
        torch.testing.assert_close(inference(x), model(x), rtol=1e-12, atol=1e-12)
    assert report.relative_diff < 1e-12 and report.spikes_binary
    _, report = reparameterize(model, example_input=x[:1])
    assert report.agreement == 1.0 and report.relative_diff < 1e-12
    with pytest.raises(ReparamError, match="cannot verify the inference form of UserNet: pass inputs="):
        reparameterize(model)
    with pytest.raises(ReparamError, match=r"inputs must be a non-empty batch tensor \[B, \.\.\.\], got a list"):
        reparameterize(model, [x])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tolerance must be a finite number"):
        reparameterize(model, x, tolerance=float("nan"))
    from tests.test_export import randomize

    network = randomize(build_model(tiny_spec("resnet20", "channel")))  # float32: the folds round a little
    inference, report = reparameterize(network)  # random inputs of its spec
    assert 0 < report.relative_diff < 1e-4 and report.agreement == 1.0
    with pytest.raises(ReparamError, match="above the tolerance 0e\\+00; refused"):
        reparameterize(network, tolerance=0.0)
