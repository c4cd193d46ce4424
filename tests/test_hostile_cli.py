"""Hostile command lines, through the real CLI: one `error:` line, a non-zero exit, no traceback, nothing saved.

Classes (docs/robustness.md, "Clear errors on the command line"): a loss that becomes non-finite, an
allocation that fails, a bad $REALSPIKE_LIF_BACKEND, bad settings under torchrun, bare `realspike`,
values of the wrong type, `--help` of boolean flags, output outside a terminal, and junk paths.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from realspike_cli.cli.app import main
from realspike_cli.core.checkpoint import CheckpointMeta, save_checkpoint
from realspike_cli.core.models import build_model
from tests.conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "mnist10k", "--width", "0.25", "--t", "1", "--epochs", "1", "--batch-size", "250", "--device", "cpu"]


def cli(capsys, *argv: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_error(code: int, err: str, *expected: str, exit_code: int | None = None) -> None:
    """Non-zero (or exactly `exit_code`), no traceback, exactly one non-blank stderr line, `error: ...`."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code not in (0, None) and (exit_code is None or code == exit_code), (code, err)
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error:"), err
    for text in expected:
        assert text in lines[0], err


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "COLUMNS")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


def run_cli(*argv: object, preexec=None, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realspike_cli", *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env=env or child_env(), preexec_fn=preexec, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    spec = tiny_spec("small_convnet")
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(path, build_model(spec), CheckpointMeta(spec=spec, dataset="mnist10k"))
    return path


def non_finite_tensors(folder: Path) -> dict[str, list[str]]:
    """For every .safetensors file under `folder`, the names of its tensors holding NaN or ±inf (read with
    safetensors and torch.isfinite, not with realspike's loader)."""
    found = {}
    for path in folder.rglob("*.safetensors"):
        found[path.name] = [name for name, t in load_file(path).items()
                            if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    return found


# --- 1. a loss that becomes non-finite --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("lr", ["100", "30"])  # 100, the largest --lr accepted, diverges here
def test_diverging_training_stops_and_saves_nothing_non_finite(capsys, tmp_path, lr):
    out = tmp_path / "run"
    code, _, err = cli(capsys, *TRAIN, "--lr", lr, "--save-every", "1", "--out", out)
    assert_one_error(code, err, "training diverged", "epoch 1, step", "lower --lr", exit_code=1)
    # --save-every 1 saved a resume point after every finite step; no weights file may hold a non-finite value
    assert all(not bad for bad in non_finite_tensors(tmp_path).values()), non_finite_tensors(tmp_path)
    assert not (out / "best.safetensors").exists() and not (out / "last.safetensors").exists()
    if (out / "resume.pt").exists():
        state = torch.load(out / "resume.pt", weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.mark.slow
def test_weights_that_turn_non_finite_in_the_last_step_are_not_saved(capsys, tmp_path, monkeypatch):
    """The loss of the last step was finite but its update was not: the epoch's checkpoints are refused."""
    import realspike_cli.core.train as train_module

    real_end_epoch = train_module.Trainer.end_epoch

    def poisoned(self):
        with torch.no_grad():
            next(self.model.parameters()).view(-1)[0] = float("inf")
        return real_end_epoch(self)

    monkeypatch.setattr(train_module.Trainer, "end_epoch", poisoned)
    out = tmp_path / "run"
    code, _, err = cli(capsys, *TRAIN, "--out", out)
    assert_one_error(code, err, "training diverged", "holds non-finite values", exit_code=1)
    assert not any(out.glob("*.safetensors")) if out.exists() else True


# --- 2. an allocation that fails ------------------------------------------------------------------------

def test_out_of_memory_in_a_training_step_names_the_batch_size(capsys, tmp_path, monkeypatch):
    import realspike_cli.core.train as train_module

    def no_memory(self, x, y):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(train_module.Trainer, "_forward_backward", no_memory)
    out = tmp_path / "run"
    code, _, err = cli(capsys, *TRAIN, "--batch-size", "1000000", "--out", out)
    assert_one_error(code, err, "out of memory", "batch size 1000000", "--batch-size 500000", exit_code=1)
    assert not (out / ".lock").exists() and not any(out.glob("*")) if out.exists() else True
    # the folder is free again: the same --out trains at once
    monkeypatch.undo()
    code, _, err = cli(capsys, *TRAIN, "--max-steps", "1", "--out", out)
    assert code == 0, err


def _address_space(limit_bytes: int):
    def preexec() -> None:  # in the child only: allocations past the limit fail at once (no swapping, no OOM kill)
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return preexec


@pytest.mark.slow
@pytest.mark.parametrize("argv, expected", [
    (["energy", "{ckpt}", "--random", "--batch-size", "100000000", "--device", "cpu"], "--batch-size"),
    (["reparam", "{ckpt}", "--random", "--batch-size", "100000000", "-o", "{tmp}/x.safetensors"], "--batch-size"),
])
def test_real_failed_allocations_are_one_line(checkpoint, tmp_path, argv, expected):
    """A real DefaultCPUAllocator failure in a child limited to 6 GiB of address space (torch maps ~3.3 GiB)."""
    argv = [a.format(ckpt=checkpoint, tmp=tmp_path) for a in argv]
    done = run_cli(*argv, preexec=_address_space(6 << 30))
    assert_one_error(done.returncode, done.stderr, "out of memory", "DefaultCPUAllocator", expected)
    assert not (tmp_path / "x.safetensors").exists()


# --- 3. $REALSPIKE_LIF_BACKEND ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "energy", "eval"])
def test_bogus_lif_backend_is_one_line_before_any_work(capsys, tmp_path, checkpoint, monkeypatch, command):
    monkeypatch.setenv("REALSPIKE_LIF_BACKEND", "bogus")
    out = tmp_path / "run"
    argv = {"train": [*TRAIN, "--max-steps", "1", "--out", out],
            "energy": ["energy", checkpoint, "--random", "--batches", "1", "--device", "cpu"],
            "eval": ["eval", checkpoint, "--device", "cpu"]}[command]
    code, stdout, err = cli(capsys, *argv)
    assert_one_error(code, err, "REALSPIKE_LIF_BACKEND='bogus'", "eager, compiled", exit_code=1)
    assert not out.exists() and "new run" not in stdout  # refused when the model is built, before the run


# --- 4. torchrun with bad settings ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("flags, expected", [
    (["--arch", "bogus"], "unknown architecture 'bogus'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda:1"], "cuda:LOCAL_RANK"),
])
def test_torchrun_bad_settings_are_one_line_from_one_rank(tmp_path, flags, expected):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
           "realspike_cli", *TRAIN[:-2], "--max-steps", "1", "--out", str(tmp_path / "run"), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env(), timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and len(errors) == 1 and expected in errors[0], done.stderr[-3000:]
    # torchrun's own launcher prints a ChildFailedError summary; no worker prints a traceback of realspike code
    assert "realspike_cli/" not in done.stderr and "rank 1:" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "run").exists()


# --- 5. bare `realspike` -----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [[], ["zoo"]])
@pytest.mark.slow
def test_bare_command_prints_help_and_exits_0(argv):
    done = run_cli(*argv)
    assert done.returncode == 0 and "error" not in done.stderr and "Usage: realspike" in done.stdout, done


# --- 6. a value of the wrong type --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["train", "--t", "abc"], "invalid value for '--t': 'abc' is not a valid integer"),
    (["train", "--epochs", "1.5"], "invalid value for '--epochs': '1.5' is not a valid integer"),
    (["train", "--lr", "x"], "invalid value for '--lr': 'x' is not a valid number"),
    (["train", "--lr", ""], "invalid value for '--lr': '' is not a valid number"),
    (["train", "--seed", "1e3"], "invalid value for '--seed': '1e3' is not a valid integer"),
    (["train", "--batch-size", "0"], "invalid value for '--batch-size': '0' is below the minimum 1"),
    (["train", "--label-smoothing", "2"], "invalid value for '--label-smoothing': '2' is above the maximum 1"),
    (["eval", "x.safetensors", "--batch-size", "many"], "invalid value for '--batch-size': 'many' is not a valid"),
    (["energy", "x.safetensors", "--batches", "two"], "invalid value for '--batches': 'two' is not a valid"),
    (["list", "bogus"], "invalid value for 'kind': 'bogus' is not one of"),
    (["eval"], "missing argument"),
    (["train", "--t"], "requires an argument"),
])
def test_wrong_types_name_the_flag_and_quote_the_value(capsys, argv, expected):
    code, out, err = cli(capsys, *argv)
    assert_one_error(code, err, expected, exit_code=2)
    assert out == ""
    if argv[-1] != "--t":  # the parser's own errors (an option without its value) come without a command
        assert f"(see 'realspike {argv[0]} --help')" in err


# --- 7. --help of boolean flags ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["train"], ["eval"], ["reparam"], ["export"], ["energy"], ["zoo", "push"]])
@pytest.mark.slow
def test_help_shows_flags_without_a_value(command):
    done = run_cli(*command, "--help", env=child_env(COLUMNS="200"))
    assert done.returncode == 0 and "<bool>" not in done.stdout, done.stdout
    assert "--help" in done.stdout
    if command == ["train"]:
        line = next(line for line in done.stdout.splitlines() if "--amp" in line)
        assert "--no-amp" in line and "Mixed precision" in line


# --- 8. output outside a terminal --------------------------------------------------------------------------

@pytest.mark.slow
def test_long_paths_are_not_wrapped_in_a_pipe(tmp_path, checkpoint):
    deep = tmp_path / ("a" * 70) / ("b" * 70)
    deep.mkdir(parents=True)
    output = deep / "model.inference.safetensors"
    assert len(str(output)) > 120
    done = run_cli("reparam", checkpoint, "--random", "-o", output)  # stdout and stderr are pipes here
    assert done.returncode == 0, done.stderr
    assert f"wrote {output}" in done.stdout.splitlines()
    again = run_cli("reparam", checkpoint, "--random", "-o", output)  # exists: the error names the whole path
    assert_one_error(again.returncode, again.stderr, str(output))


@pytest.mark.slow
def test_columns_still_sets_the_width_in_a_pipe(checkpoint, tmp_path):
    output = tmp_path / ("c" * 100) / "x.safetensors"
    output.parent.mkdir()
    done = run_cli("reparam", checkpoint, "--random", "-o", output, env=child_env(COLUMNS="60"))
    assert done.returncode == 0 and max(len(line) for line in done.stdout.splitlines()) <= 60, done.stdout


# --- 9. junk paths -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["export", "", "--format", "onnx"], "checkpoint not found"),
    (["export", "{tmp}", "--format", "onnx"], "a folder, not a .safetensors file"),
    (["eval", "{tmp}"], "checkpoint not found"),
    (["reparam", "{ckpt}", "--random", "-o", "{tmp}"], "is a folder"),
    (["energy", "{ckpt}", "--random", "--json", "{tmp}"], "is a folder"),
    (["train", "mnist10k", "--init-from", "{tmp}/missing.safetensors"], "missing.safetensors"),
])
def test_junk_paths_are_one_line(capsys, tmp_path, checkpoint, argv, expected):
    argv = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in argv]
    before = sorted(tmp_path.rglob("*"))
    code, _, err = cli(capsys, *argv)
    assert_one_error(code, err, expected, exit_code=1)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("opset", ["99999", "7"])
def test_an_opset_the_exporter_refuses_is_one_line(capsys, tmp_path, checkpoint, opset):
    """torch's exporter would print its whole IR graph to stderr before raising; the range is checked first."""
    pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    code, _, err = cli(capsys, "export", checkpoint, "--format", "onnx", "--opset", opset, "--random", "-o", out)
    assert_one_error(code, err, f"--opset {opset} is not available", "choose from 13 to", exit_code=1)
    assert not out.exists()
