"""What surrounds training: TensorBoard logs read back, `realspike plot`, progress outside a terminal,
`eval --t` against models built directly at that T, and `realspike list`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from realspike_cli.core.checkpointer import Checkpointer
from realspike_cli.core.datasets import load_dataset
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.events import StepDone
from realspike_cli.core.models import build_model
from realspike_cli.core.specs import TrainConfig
from realspike_cli.core.train import train_events
from tests.conftest import tiny_spec
from tests.test_cli import assert_one_error_line, cli

ROOT = Path(__file__).resolve().parents[1]
SPEC = tiny_spec("small_convnet", "element", time_steps=2, num_classes=10, in_channels=1)


def run_cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real program with stdout and stderr piped: neither is a terminal, as under SLURM or nohup."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "realspike_cli", *argv], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """Two epochs of a tiny element-wise run, with a Checkpointer and (where installed) a TensorBoardLogger."""
    from realspike_cli.core.datasets import DataSplits
    from realspike_cli.core.validation import subset

    root = tmp_path_factory.mktemp("logged")
    full = load_dataset("mnist10k")
    data = DataSplits(full.info, subset(full.train, list(range(0, 8000, 4))), full.test)
    cfg = TrainConfig(epochs=2, batch_size=200, lr=0.1, seed=2, augment="none")
    callbacks = [Checkpointer(root / "run")]
    try:
        from realspike_cli.core.tensorboard_log import TensorBoardLogger

        callbacks.append(TensorBoardLogger(root / "tb"))
    except ConfigError:  # tensorboard is not installed: its test below is skipped
        pass
    events = list(train_events(SPEC, data, cfg, callbacks=callbacks))
    return root, events, data, cfg


# TensorBoard --------------------------------------------------------------------------------------------
def test_tensorboard_scalars_and_histograms_read_back(logged_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, events = logged_run[:2]
    board = EventAccumulator(str(root / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    board.Reload()

    def values(tag):
        return [(e.step, e.value) for e in board.Scalars(tag)]

    f32 = lambda v: float(torch.tensor(float(v), dtype=torch.float32))  # noqa: E731  (event files hold float32)
    steps = [e for e in events if isinstance(e, StepDone)]
    assert values("train/loss") == [(i + 1, f32(e.loss)) for i, e in enumerate(steps)] and len(steps) == 20
    records = jsonl(root / "run" / "metrics.jsonl")
    for key in ("train_loss", "train_top1", "test_top1", "test_loss", "mean_firing_rate", "lr"):
        assert values(f"epoch/{key}") == [(r["epoch"], f32(r[key])) for r in records], key
    for layer in records[0]["firing_rates"]:
        assert values(f"firing_rate/{layer}") == [(r["epoch"], f32(r["firing_rates"][layer])) for r in records]
    last = load_file(root / "run" / "last.safetensors")  # the weights after epoch 2
    coefficients = [k for k in last if k.endswith(".a")]
    assert len(coefficients) == 3
    for key in coefficients:
        layer, a = key[: -len(".a")], last[key].double()
        for stat, want in (("mean", a.mean()), ("min", a.min()), ("max", a.max())):
            assert values(f"coefficient/{layer}/{stat}")[-1] == (2, pytest.approx(float(want), rel=1e-6)), stat
        histogram = board.Histograms(f"coefficient/{layer}")[-1].histogram_value
        assert (histogram.num, histogram.min, histogram.max) == (a.numel(), f32(a.min()), f32(a.max()))
    assert float(a.std()) > 0  # the coefficients did learn: the statistics above are not all 1


def test_a_resumed_run_continues_the_same_curves(logged_run, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from realspike_cli.core.tensorboard_log import TensorBoardLogger
    from realspike_cli.core.train import RunOptions

    data, cfg = logged_run[2], replace(logged_run[3], epochs=1)
    for options, resume in ((RunOptions(max_steps=5), False), (RunOptions(), True)):
        callbacks = [Checkpointer(tmp_path / "run", resume=resume), TensorBoardLogger(tmp_path / "tb")]
        list(train_events(SPEC, data, cfg, options=options, callbacks=callbacks))
    board = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    board.Reload()
    assert [e.step for e in board.Scalars("train/loss")] == list(range(1, 11))  # none lost, none twice


def test_missing_tensorboard_is_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what `import` sees when it is absent
    code, _, err = cli(capsys, "train", "mnist10k", "--max-steps", "1", "--tensorboard", str(tmp_path / "tb"),
                       "--out", str(tmp_path / "run"))
    assert_one_error_line(code, err, "--tensorboard needs the tensorboard package: pip install 'realspike[tensorboard")
    assert not (tmp_path / "run").exists()


# realspike plot -----------------------------------------------------------------------------------------
def test_plot_draws_metrics_jsonl(logged_run, tmp_path, capsys):
    from realspike_cli.core.plotting import plot_training

    run = logged_run[0] / "run"
    records = jsonl(run / "metrics.jsonl")
    series = plot_training(run, tmp_path / "curves.png")
    epochs = [float(r["epoch"]) for r in records]
    assert series["loss"] == {"train": (epochs, [r["train_loss"] for r in records]),
                              "test": (epochs, [r["test_loss"] for r in records])}
    assert series["top-1 accuracy"]["test"] == (epochs, [r["test_top1"] for r in records])
    assert series["learning rate (end of epoch)"]["lr"] == (epochs, [r["lr"] for r in records])
    rates = series["firing rate per layer (test set)"]
    layers = records[0]["firing_rates"]
    assert rates == {layer: (epochs, [r["firing_rates"][layer] for r in records]) for layer in layers}
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "cli.png"
    assert cli(capsys, "plot", str(run), "-o", str(out))[0] == 0 and out.read_bytes()[:4] == b"\x89PNG"
    before = out.read_bytes()
    code, _, err = cli(capsys, "plot", str(run), "-o", str(out))
    assert_one_error_line(code, err, "already exists; choose another output path or pass --overwrite")
    assert out.read_bytes() == before
    assert cli(capsys, "plot", str(run), "-o", str(out), "--overwrite")[0] == 0


@pytest.mark.parametrize("content, expected", [
    (None, "no metrics.jsonl in"),
    ("{not json\n", "line 1 is not JSON"),
    ('{"epoch": 1, "test_top1": "high"}\n', "line 1: test_top1 is not a number ('high')"),
    ('[1, 2]\n', "line 1 is not a JSON object"),
])
def test_plot_refuses_a_broken_run_directory(tmp_path, capsys, content, expected):
    if content is not None:
        (tmp_path / "metrics.jsonl").write_text(content)
    code, _, err = cli(capsys, "plot", str(tmp_path))
    assert_one_error_line(code, err, expected)
    assert not (tmp_path / "training.png").exists()


# progress outside a terminal ------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_logs_plain_lines_when_stdout_is_not_a_terminal(tmp_path):
    done = run_cli("train", "mnist10k", "--width", "0.25", "--t", "2", "--batch-size", "250", "--max-steps", "6",
                   "--log-every", "2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    steps = re.findall(r"^epoch 1/3 step (\d+)/32 loss \d+\.\d{4} \d+\.\d img/s eta \d+:\d\d:\d\d$",
                       done.stdout, re.MULTILINE)
    assert steps == ["2", "4", "6"], done.stdout
    assert "\r" not in done.stdout and "\x1b[" not in done.stdout  # no bar redraws, no colour codes


@pytest.mark.slow
def test_eval_reports_progress_on_stderr_and_keeps_json_clean(trained_run):
    done = run_cli("eval", str(trained_run / "best.safetensors"), "--batch-size", "500", "--log-interval", "0",
                   "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 2000
    assert re.findall(r"^eval: batch (\d)/4 ", done.stderr, re.MULTILINE) == ["1", "2", "3"]
    quiet = run_cli("eval", str(trained_run / "best.safetensors"), "--json")  # short inputs print nothing
    assert quiet.returncode == 0 and quiet.stderr == ""


# eval --t ---------------------------------------------------------------------------------------------
def direct_top1(checkpoint: Path, time_steps: int) -> tuple[float, float]:
    """A model built directly at `time_steps` with the checkpoint's weights; accuracy and loss by a naive loop."""
    from realspike_cli.core.checkpoint import read_meta

    meta = read_meta(checkpoint)
    model = build_model(replace(meta.spec, time_steps=time_steps))
    model.load_state_dict(load_file(checkpoint))
    model.eval()
    test = load_dataset("mnist10k").test
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(test), 400):
            x, y = test.batch(torch.arange(i, i + 400))
            logits = model(x)
            correct += int((logits.argmax(1) == y).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
    return correct / len(test), loss / len(test)


@pytest.mark.slow
def test_eval_at_other_time_steps_matches_models_built_at_that_t(trained_run, tmp_path, capsys):
    best = trained_run / "best.safetensors"
    code, out, err = cli(capsys, "eval", str(best), "--t", "1,2,4", "--json", "--plot", str(tmp_path / "t.png"))
    assert code == 0, err
    report = json.loads(out)
    assert report["trained_time_steps"] == 2 and [r["time_steps"] for r in report["results"]] == [1, 2, 4]
    for row in report["results"]:
        top1, loss = direct_top1(best, row["time_steps"])
        assert row["top1"] == top1 and row["loss"] == pytest.approx(loss, rel=1e-5)
    assert len({r["top1"] for r in report["results"]}) > 1  # T changes the result: the rebuild took effect
    _, plain, _ = cli(capsys, "eval", str(best), "--json")
    assert json.loads(plain)["top1"] == report["results"][1]["top1"]
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_eval_at_other_time_steps_works_on_the_inference_form(trained_run, tmp_path, capsys):
    inference = tmp_path / "inference.safetensors"
    assert cli(capsys, "reparam", str(trained_run / "best.safetensors"), "-o", str(inference))[0] == 0
    code, out, err = cli(capsys, "eval", str(inference), "--t", "3", "--json")
    assert code == 0, err
    row = json.loads(out)["results"][0]
    assert row["time_steps"] == 3 and row["top1"] == pytest.approx(direct_top1(trained_run / "best.safetensors", 3)[0],
                                                                   abs=1 / 2000)


@pytest.mark.parametrize("extra, expected", [
    (["--t", "0"], "--t takes time steps from 1 to 1024"),
    (["--t", "2,x"], "--t takes time steps from 1 to 1024"),
    (["--t", "5000"], "--t takes time steps from 1 to 1024"),
    (["--plot", "p.png"], "--plot draws accuracy against T: give the time steps with --t"),
    (["--t", "2", "--compare", "other.safetensors"], "--t and --compare do not combine"),
])
@pytest.mark.slow
def test_eval_t_refuses_bad_values(trained_run, capsys, extra, expected):
    code, _, err = cli(capsys, "eval", str(trained_run / "best.safetensors"), *extra)
    assert_one_error_line(code, err, expected)


# realspike list -----------------------------------------------------------------------------------------
def test_list_archs_counts_parameters_without_building_weights(capsys):
    code, out, _ = cli(capsys, "list", "archs", "--dataset", "mnist10k", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["entries"]}
    # small_convnet on 1×28×28, 10 classes, binary: conv 1→32 + BN, conv 32→64 + BN, FC 64·7·7→256 + BN, FC 256→10
    by_hand = 9 * 32 + 2 * 32 + 9 * 32 * 64 + 2 * 64 + 64 * 7 * 7 * 256 + 2 * 256 + 256 * 10 + 10
    assert rows["small_convnet"]["parameters"] == by_hand
    from realspike_cli.core.listing import parameter_count
    from realspike_cli.core.models import create_model

    for arch in ("resnet20", "sew_resnet18"):  # real allocations on the CPU, counted by torch
        model = create_model(arch, spike="element", num_classes=100, input_size=(32, 32), seed=0)
        assert parameter_count(arch, dataset="cifar100", spike="element") == sum(p.numel() for p in model.parameters())
    code, out, _ = cli(capsys, "list", "archs")
    assert code == 0 and "sew_resnet34" in out and "21,289,802" in out


def test_list_datasets_recipes_and_energy_profiles(capsys):
    from realspike_cli.core.datasets import dataset_info, list_datasets
    from realspike_cli.core.energy_profiles import presets
    from realspike_cli.core.recipes import RECIPES

    def entries(kind):
        code, out, _ = cli(capsys, "list", kind, "--json")
        assert code == 0
        return json.loads(out)["entries"]

    datasets = entries("datasets")
    assert [d["name"] for d in datasets] == list_datasets()
    assert all(d["num_classes"] == dataset_info(d["name"]).num_classes and d["description"] for d in datasets)
    recipes = entries("recipes")
    assert sorted(r["name"] for r in recipes) == sorted(RECIPES) and {r["selection"] for r in recipes} == {"test"}
    profiles = entries("energy-profiles")
    assert {p["name"]: (p["e_mac_pj"], p["e_ac_pj"]) for p in profiles} == {
        n: (p.e_mac_pj, p.e_ac_pj) for n, p in presets().items()}
    code, out, _ = cli(capsys, "list", "recipes")
    assert code == 0 and "cifar10-dvs-resnet19-t10" in out  # names are never cut in the table
    code, _, err = cli(capsys, "list", "models")
    assert_one_error_line(code, err, "'models' is not one of 'archs', 'datasets', 'recipes', 'energy-profiles'", 2)
