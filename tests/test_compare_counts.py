"""`eval --compare` refuses unrelated checkpoints (unless --unrelated-ok), and `train` and `reparam` print
parameter counts with one definition: checked against counts taken by hand from the loaded models."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace

import pytest
from torch import nn

from realspike_cli.cli.app import main
from realspike_cli.core.checkpoint import load_checkpoint, read_meta
from realspike_cli.core.lineage import relation

TINY = ["train", "mnist10k", "--width", "0.25", "--t", "2", "--epochs", "1", "--batch-size", "250"]
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    """A second tiny run, trained separately with another seed; returns its folder and what train printed."""
    out = tmp_path_factory.mktemp("other")
    code, printed = run_main([*TINY, "--seed", "7", "--out", str(out)])
    assert code == 0, printed
    return out, printed


@pytest.fixture(scope="module")
def inference(trained_run, tmp_path_factory):
    """`reparam` of the shared run's best checkpoint: the output path and the table it printed."""
    out = tmp_path_factory.mktemp("reparam") / "best.inference.safetensors"
    code, printed = run_main(["reparam", str(trained_run / "best.safetensors"), "--random", "--out", str(out)])
    assert code == 0, printed
    return out, printed


def run_main(argv: list[str]) -> tuple[int, str]:
    """main(argv) with stdout and stderr captured together (for module-scoped fixtures, where capsys is not)."""
    buffer = io.StringIO()
    with redirect_stdout(buffer), redirect_stderr(buffer), pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, buffer.getvalue()


def hand_counts(path) -> tuple[int, int]:
    """Trainable elements, and BatchNorm running means and variances, counted here from the loaded model."""
    model, _ = load_checkpoint(path)
    parameters = sum(p.numel() for p in model.parameters())
    statistics = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                     if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None)
    return parameters, statistics


@pytest.mark.slow
def test_separately_trained_runs_are_refused_unless_asked(trained_run, other_run, capsys):
    a, b = str(trained_run / "best.safetensors"), str(other_run[0] / "best.safetensors")
    code, out, err = cli(capsys, "eval", a, "--compare", b)
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "unrelated" in err and "neither is derived from the other" in flat(err)
    assert "Traceback" not in err and out == ""
    code, out, err = cli(capsys, "eval", a, "--compare", b, "--unrelated-ok", "--json")
    assert code == 0, err
    assert "comparing unrelated checkpoints (neither is derived" in flat(err)
    assert 0.0 <= json.loads(out)["agreement"] <= 1.0


@pytest.mark.slow
def test_a_checkpoint_and_its_inference_form_compare(trained_run, inference, capsys):
    path, _ = inference
    code, out, err = cli(capsys, "eval", str(path), "--compare", str(trained_run / "best.safetensors"), "--json")
    assert code == 0, err
    assert "unrelated" not in err
    result = json.loads(out)
    assert result["images"] == 2000 and result["agreement"] >= 0.99
    assert read_meta(path).parent_sha256 is not None


@pytest.mark.slow
def test_train_prints_the_hand_counted_parameters(other_run):
    out, printed = other_run
    parameters, statistics = hand_counts(out / "best.safetensors")
    assert statistics > 0
    assert f"{parameters:,} parameters (+ {statistics:,} buffer values: BatchNorm statistics)" in flat(printed)


@pytest.mark.slow
def test_reparam_prints_both_forms_counted_the_same_way(trained_run, inference):
    path, printed = inference
    before, statistics = hand_counts(trained_run / "best.safetensors")
    after, after_statistics = hand_counts(path)
    text = flat(printed)
    assert f"training form {before:,} parameters (+ {statistics:,} buffer values: BatchNorm statistics)" in text
    assert after_statistics == 0 and re.search(rf"inference form {after:,} parameters(?! \(\+)", text)
    assert after < before  # BatchNorm folded into biases, Real Spike coefficients into weights


def test_relation_names_the_first_difference():
    base = read_meta_like()
    other_t = replace(base, spec=replace(base.spec, time_steps=4))
    assert relation(base, SHA_A, other_t, SHA_B) == "different T (2 and 4)"
    other_arch = replace(base, spec=replace(base.spec, arch="vgg11"))
    assert relation(base, SHA_A, other_arch, SHA_B).startswith("different architectures (small_convnet and vgg11)")
    assert relation(base, SHA_A, replace(base, dataset="fashion"), SHA_B).startswith("different data sets")
    assert "neither is derived" in relation(base, SHA_A, base, SHA_B)


def test_relation_accepts_parent_child_siblings_and_identical_files():
    base = read_meta_like()
    child = replace(base, parent_sha256=SHA_A)
    assert relation(base, SHA_A, child, SHA_B) is None  # reparam of A
    assert relation(child, SHA_B, base, SHA_A) is None
    assert relation(child, SHA_B, replace(base, parent_sha256=SHA_A), SHA_C) is None  # two forms of one parent
    assert relation(base, SHA_A, base, SHA_A) is None  # the same file
    assert relation(child, SHA_B, replace(base, parent_sha256=SHA_C), "d" * 64) is not None  # other parents


def read_meta_like():
    from realspike_cli.core.checkpoint import CheckpointMeta
    from realspike_cli.core.specs import ModelSpec

    return CheckpointMeta(spec=ModelSpec("small_convnet", 10, 1, (28, 28), 2), dataset="mnist10k")
