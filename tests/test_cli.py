"""The command line: the main job end to end, and one clear error line (no traceback) for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from realspike_cli.cli.app import main


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_error_line(code: int, err: str, expected: str, exit_code: int = 1) -> None:
    assert code == exit_code, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(" ".join(lines)) and lines[0].startswith("error:"), err
    assert expected in " ".join(err.split()), err


@pytest.fixture
def trained(trained_run):
    return trained_run


@pytest.mark.slow
def test_train_then_eval_json(trained, capsys):
    assert (trained / "best.safetensors").exists() and (trained / "resume.pt").exists()
    code, out, _ = cli(capsys, "eval", str(trained / "best.safetensors"), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["images"] == 2000 and report["form"] == "train" and 0.1 < report["top1"] <= 1.0
    assert report["top5"] is not None and len(report["firing_rates"]) == 3
    assert json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])["test_top1"] == report["top1"]


@pytest.mark.slow
def test_eval_table(trained, capsys):
    code, out, _ = cli(capsys, "eval", str(trained / "last.safetensors"))
    assert code == 0 and "top-1" in out and "body.0.neuron" in out


@pytest.mark.slow
def test_refuses_to_overwrite_a_run(trained, capsys):
    code, _, err = cli(capsys, "train", "mnist10k", "--width", "0.25", "--out", str(trained))
    assert_one_error_line(code, err, "already holds a run")


@pytest.mark.parametrize(
    "argv, expected, exit_code",
    [
        (["eval", "missing.safetensors"], "checkpoint not found: missing.safetensors", 1),
        (["train", "mnist"], "did you mean 'nmnist', 'mnist10k'", 1),
        (["train", "mnist10k", "--arch", "resnet91"], "did you mean 'resnet19'", 1),
        (["train", "mnist10k", "--spike", "sometimes"], "unknown spike setting 'sometimes'", 1),
        (["train", "mnist10k", "--optimizer", "lion", "--max-steps", "1"], "unknown optimizer 'lion'", 1),
        (["train", "mnist10k", "--bogus"], "No such option: --bogus", 2),
        (["train", "mnist10k", "--t", "0"], "invalid value for '--t': '0' is below the minimum 1", 2),
        (["train", "mnist10k", "--device", "tpu"], "unknown device 'tpu'", 1),
        (["train", "mnist10k", "--lif-backend", "fused", "--max-steps", "1"], "unknown LIF backend 'fused'", 1),
        (["eval"], "missing argument 'checkpoint'", 2),
    ],
)
def test_bad_input_gives_one_error_line(capsys, argv, expected, exit_code):
    code, _, err = cli(capsys, *argv)
    assert_one_error_line(code, err, expected, exit_code)


def test_corrupt_checkpoint(capsys, tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, _, err = cli(capsys, "eval", str(path))
    assert_one_error_line(code, err, "is not a readable safetensors file")


@pytest.mark.slow
def test_checkpoint_on_a_data_set_of_another_shape(trained, capsys):
    code, _, err = cli(capsys, "eval", str(trained / "best.safetensors"), "--dataset", "cifar10")
    assert_one_error_line(code, err, "does not fit the checkpoint")


def test_missing_data_names_the_directory(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "cifar10", "--arch", "vgg16", "--t", "5", "--data-dir", str(tmp_path))
    assert_one_error_line(code, err, f"not found in {tmp_path}")


def test_help_does_not_import_torch():
    code = "import sys; from realspike_cli.cli.app import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_never_imports_the_cli_layer():
    import ast

    core = Path(__file__).parents[1] / "realspike_cli" / "core"
    for source in core.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("typer", "rich", "realspike_cli.cli")), f"{source}: imports {name}"


def test_train_cifar10_vgg16_starts_on_a_cifar_format_directory(capsys, tmp_path):
    from tests.test_datasets import write_cifar10

    write_cifar10(tmp_path / "cifar10", per_batch=4, n_test=4)  # the real python-pickle release layout
    out = tmp_path / "run"
    argv = ["train", "cifar10", "--arch", "vgg16", "--t", "5", "--data-dir", str(tmp_path / "cifar10")]
    argv += ["--width", "0.0625", "--batch-size", "4", "--max-steps", "2", "--out", str(out)]
    code, text, err = cli(capsys, *argv)
    assert code == 0, err
    assert "vgg16 on cifar10: T=5, spike=element" in " ".join(text.split())
    assert (out / "resume.pt").exists()
