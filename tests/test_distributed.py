"""DDP under torchrun on 2 CPU processes (gloo): lockstep ranks, rank-0 files, sharded evaluation, resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from realspike_cli.cli.app import main
from realspike_cli.core.checkpoint import load_checkpoint, read_meta
from realspike_cli.core.datasets import DataOptions, load_dataset
from realspike_cli.core.datasets.loaders import BatchStream
from realspike_cli.core.distributed import TIMEOUT_ENV, DistContext, _mirror, device_kind, timeout_seconds
from realspike_cli.core.errors import CheckpointError, ConfigError
from realspike_cli.core.evaluate import evaluate
from realspike_cli.core.models import build_model
from tests.conftest import tiny_spec
from tests.ddp_probe import state_digest

ROOT = Path(__file__).resolve().parents[1]
PROBE = [str(ROOT / "tests" / "ddp_probe.py")]  # the CLI's own main(), plus a per-rank state report
CLI = ["-m", "realspike_cli"]
TRAIN = ["train", "mnist10k", "--width", "0.25", "--t", "2", "--epochs", "2", "--device", "cpu"]
BATCH = 250  # per process: 8,000 images / (2 × 250) = 16 steps per epoch
STEPS = 16


def torchrun(target: list[str], args: list[str], probe_dir: Path | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200")  # COLUMNS: no wrapped lines
    if probe_dir is not None:
        env["PROBE_DIR"] = str(probe_dir)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *target, *args]
    # A session of its own, like a terminal's foreground job: a signal to its group reaches torchrun only.
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 150) -> SimpleNamespace:
    """Wait with a limit, so a hung rank fails the test instead of blocking it."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun passes SIGTERM on to its workers, then SIGKILLs them after 30 s
        try:
            out, err = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout}s:\n{err[-3000:]}")
    return SimpleNamespace(rc=proc.returncode, out=out, err=err)


def ranks(probe_dir: Path) -> list[dict]:
    return [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in range(2)]


def one_process_eval(path: Path) -> dict:
    model, meta = load_checkpoint(path)
    data = load_dataset("mnist10k", DataOptions(augment="none", time_steps=meta.spec.time_steps))
    return evaluate(model, BatchStream(data.test, 256, shuffle=False), "cpu").to_dict()


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Launch 1 (`-m realspike_cli`): epoch 1, its evaluation, 2 steps of epoch 2, stop. Launch 2 (probe):
    `--resume` to the end of epoch 2."""
    root = tmp_path_factory.mktemp("ddp")
    out, args = root / "run", [*TRAIN, "--batch-size", str(BATCH), "--out", str(root / "run")]
    first = finish(torchrun(CLI, [*args, "--max-steps", str(STEPS + 2)]))
    assert first.rc == 0, first.err[-3000:]
    after_first = SimpleNamespace(
        resume=torch.load(out / "resume.pt", weights_only=True),
        metrics=metrics(out),
        last=one_process_eval(out / "last.safetensors"),
        keys=set(load_file(out / "last.safetensors")),
    )
    second = finish(torchrun(PROBE, [*args, "--resume"], probe_dir=root / "probe"))
    assert second.rc == 0, second.err[-3000:]
    return SimpleNamespace(out=out, first=first, second=second, after_first=after_first, ranks=ranks(root / "probe"))


@pytest.mark.slow
def test_first_launch_stops_all_ranks_at_the_same_step(ddp_run):
    resume = ddp_run.after_first.resume
    assert resume["position"] == [1, 2, STEPS + 2] and resume["world_size"] == 2
    assert len(resume["rank_rng"]) == 2
    assert "×2 processes (gloo), global batch 2 × 250 = 500" in ddp_run.first.out
    assert "stopped (max_steps) at epoch 2, step 2" in ddp_run.first.out


@pytest.mark.slow
def test_checkpoint_keys_are_those_of_a_single_process_model(ddp_run):
    single = set(build_model(read_meta(ddp_run.out / "last.safetensors").spec).state_dict())
    assert ddp_run.after_first.keys == single and not any(k.startswith("module.") for k in single)
    recipe = read_meta(ddp_run.out / "last.safetensors").recipe
    assert recipe["world_size"] == 2 and recipe["global_batch_size"] == 500
    assert recipe["command"].startswith("torchrun --nproc-per-node 2 -m realspike_cli train mnist10k")


@pytest.mark.slow
def test_two_rank_evaluation_equals_one_process_evaluation(ddp_run):
    for record, single in ((ddp_run.after_first.metrics[0], ddp_run.after_first.last),
                           (metrics(ddp_run.out)[-1], one_process_eval(ddp_run.out / "last.safetensors"))):
        assert single["images"] == 2000
        assert (record["test_top1"], record["test_top5"]) == (single["top1"], single["top5"])
        # float32 per-batch loss sums, batched differently: equal to rounding
        assert record["test_loss"] == pytest.approx(single["loss"], rel=1e-6)
    # Each rank evaluated its own half, and both reported the totals over all 2,000 test images.
    for rank in ddp_run.ranks:
        assert [(e["local_images"], e["images"]) for e in rank["evals"]] == [(1000, 2000)]


@pytest.mark.slow
def test_resumed_launch_continues_in_epoch_two(ddp_run):
    assert "resuming at epoch 2, step 2" in ddp_run.second.out
    assert [r["epoch"] for r in metrics(ddp_run.out)] == [1, 2]
    assert metrics(ddp_run.out)[0] == ddp_run.after_first.metrics[0]
    for rank in ddp_run.ranks:
        assert (rank["ended"], rank["position"], rank["world_size"]) == ("Finished", [2, 0, 2 * STEPS], 2)


@pytest.mark.slow
def test_ranks_hold_identical_state_equal_to_checkpoint_and_resume_file(ddp_run):
    r0, r1 = ddp_run.ranks
    resume = torch.load(ddp_run.out / "resume.pt", weights_only=True)
    assert r0["digest"] == r1["digest"]  # parameters and BatchNorm buffers, bit for bit
    assert state_digest(resume["model"]) == r0["digest"]
    assert state_digest(load_file(ddp_run.out / "last.safetensors")) == r0["digest"]


@pytest.mark.slow
def test_one_process_cannot_resume_a_two_process_run(ddp_run, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*TRAIN, "--batch-size", str(BATCH), "--resume", "--out", str(ddp_run.out)])
    assert stop.value.code == 1
    assert "written by a run of 2 process(es)" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    """SIGINT to rank 1 alone (as when Ctrl-C reaches one node of several): all ranks stop together, cleanly.

    (A terminal's Ctrl-C reaches torchrun, which forwards it to every worker: the easier case.)"""
    out, probe = tmp_path / "run", tmp_path / "probe"
    args = [*TRAIN, "--batch-size", "8", "--save-every", "1", "--out", str(out)]  # 500 short steps per epoch
    proc = torchrun(PROBE, args, probe_dir=probe)
    deadline = time.monotonic() + 90
    while not (out / "resume.pt").exists():  # written after a step both ranks took: handlers are installed
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    os.kill(int((probe / "pid1").read_text()), signal.SIGINT)
    done = finish(proc, timeout=60)
    # Every rank exits 130 (a stopped run, as in one process), which torchrun reports as a failed launch;
    # an abort at exit would show as exit code -6 / "terminate called" instead.
    assert done.rc != 0 and "terminate called" not in done.out + done.err, done.err[-3000:]
    exit_codes = re.findall(r"exitcode\s*:\s*(-?\d+)", done.err)
    assert exit_codes and set(exit_codes) == {"130"}, done.err[-3000:]
    r0, r1 = ranks(probe)
    assert (r0["ended"], r0["reason"]) == (r1["ended"], r1["reason"]) == ("Stopped", "interrupted")
    assert r0["position"] == r1["position"] and r0["digest"] == r1["digest"]
    resume = torch.load(out / "resume.pt", weights_only=True)
    assert resume["position"] == r0["position"] and state_digest(resume["model"]) == r0["digest"]
    assert "stopped (interrupted)" in done.out


@pytest.mark.parametrize("env", [{}, {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}])
def test_sync_bn_on_cpu_is_one_error_line(env, monkeypatch, capsys, tmp_path):
    for name, value in env.items():  # under torchrun too: refused before joining the group, so nothing hangs
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stop:
        main([*TRAIN, "--sync-bn", "--max-steps", "1", "--out", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 1 and len(lines) == 1
    assert lines[0].startswith("error: --sync-bn needs CUDA")


def test_other_ranks_leave_shared_errors_to_rank_0(monkeypatch, capsys, tmp_path):
    for name, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stop:
        main([*TRAIN, "--sync-bn", "--out", str(tmp_path)])
    assert stop.value.code == 1 and capsys.readouterr().err == ""


def test_two_ddp_steps_need_no_neuron_reset(tmp_path):
    """Neurons keep their membrane inside one forward call: consecutive DDP iterations share no graph."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ctx = DistContext(world_size=1, backend="gloo")
        model = build_model(tiny_spec("small_convnet", "element"))
        net = ctx.wrap(model)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        for _ in range(2):  # no reset_net() between steps, and no "backward through the graph a second time"
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            assert torch.equal(net(x), net(x))  # the same input gives the same output: no state carried over
    finally:
        dist.destroy_process_group()


def test_single_process_context_is_a_no_op():
    ctx = DistContext()
    assert not ctx.enabled and ctx.is_main
    assert torch.equal(ctx.all_reduce(torch.ones(3)), torch.ones(3)) and ctx.gather(7) == [7]
    assert ctx.from_main(lambda: 5) == 5 and ctx.main_first(lambda: 6) == 6
    model = torch.nn.Linear(2, 2)
    assert ctx.wrap(model) is model


def test_rank_0_errors_are_mirrored_with_their_class():
    exc = _mirror(("CheckpointError", "resume.pt is corrupt", True))
    assert isinstance(exc, CheckpointError) and str(exc) == "resume.pt is corrupt" and exc.reported_by_rank0
    assert str(_mirror(("OSError", "disk full", False))) == "rank 0 failed: OSError: disk full"


def test_bad_launch_settings_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="cuda:LOCAL_RANK"):
        device_kind("cuda:1")  # under torchrun every process picks its own GPU
    with pytest.raises(ConfigError, match="unknown device"):
        device_kind("tpu")
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match=TIMEOUT_ENV):
        timeout_seconds()
    monkeypatch.setenv(TIMEOUT_ENV, "60")
    assert timeout_seconds() == 60.0
