"""Hostile files, disks and signals, through the real CLI: one `error:` line, a non-zero exit, nothing lost.

Classes (docs/robustness.md, "Files, disks and signals"): names that try to leave their folder, filesystem
failures of every writer (a folder where a file is expected, a path under a file, an unwritable folder, a
full disk), runs that share or replace a run directory, interrupted writers, corrupted tensors, file
permissions, signals, and the zoo without a network. Full disks are simulated with RLIMIT_FSIZE in a
child process (EFBIG: the kernel refuses to let the file grow, as ENOSPC would), read-only folders with
chmod, or, for root (whom chmod does not stop), with `chattr +i`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from realspike_cli.cli.app import main
from realspike_cli.core.checkpoint import CheckpointMeta, save_checkpoint
from realspike_cli.core.models import build_model
from tests.conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "mnist10k", "--width", "0.25", "--t", "1", "--epochs", "1", "--batch-size", "250"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_error(code: int, err: str, *expected: str) -> None:
    """Non-zero, no traceback, exactly one `error:` line (the last), naming what `expected` says."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code not in (0, None) and "Traceback" not in err, err
    assert lines and lines[-1].startswith("error:") and sum(line.startswith("error:") for line in lines) == 1, err
    flat = " ".join(err.split())
    for text in expected:
        assert text in flat, err


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for folders): the oracle for "nothing written"."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "REALSPIKE_ZOO"))}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def limit_file_size(max_bytes: int):
    def preexec() -> None:  # in the child only: files may not grow past max_bytes (writes fail with EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return preexec


def run_cli(*argv: object, preexec=None, env: dict[str, str] | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realspike_cli", *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env=env or child_env(), preexec_fn=preexec, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small training-form checkpoint (small_convnet, T=2, element-wise Real Spike), untrained: every command
    here needs a file it can load, not a good model."""
    torch.manual_seed(0)
    spec = tiny_spec("small_convnet")
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(path, build_model(spec), CheckpointMeta(spec=spec, dataset="mnist10k"))
    return path


@pytest.fixture
def unwritable(tmp_path):
    """A folder no file can be created in: chmod 0555, or for root (chmod does not stop root) `chattr +i`."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root, where chmod does not stop writes, and chattr +i is not available here")
    assert not os.access(folder, os.W_OK)
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


# --- 1. names that try to leave their folder ---------------------------------------------------------------

BAD_FILES = ["../../x.safetensors", "/tmp/x.safetensors", "sub/x.safetensors", "..", "README.md",
             "x.safetensors/..", ".hidden.safetensors", "a\\..\\x.safetensors"]
BAD_REPOS = ["../x", "a/../../b", "/abs/x", "a/b/c", "a", "a--b/c", "a/..", "./x"]


@pytest.mark.parametrize("bad", BAD_FILES)
def test_push_file_names_never_leave_the_folder(tmp_path, capsys, checkpoint, bad):
    mirror = tmp_path / "deep" / "mirror"
    mirror.mkdir(parents=True)
    (tmp_path / "README.md").write_text("keep me")  # what `../../README.md` would have replaced
    before = tree(tmp_path)
    code, _, err = cli(capsys, "zoo", "push", checkpoint, "--repo", "lab/m", "--to", mirror, "--file", bad)
    assert_one_error(code, err, "--file must be a plain file name ending in .safetensors")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("bad", BAD_REPOS)
def test_push_repo_ids_never_leave_the_folder(tmp_path, capsys, checkpoint, bad):
    mirror = tmp_path / "deep" / "mirror"
    mirror.mkdir(parents=True)
    before = tree(tmp_path)
    code, _, err = cli(capsys, "zoo", "push", checkpoint, "--repo", bad, "--to", mirror)
    assert_one_error(code, err, "--repo must look like OWNER/NAME")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("key, value", [("file", "../../../secret.safetensors"), ("repo", "../../etc")])
def test_catalogue_names_never_leave_the_mirror(tmp_path, capsys, monkeypatch, key, value):
    from realspike_cli.core.zoo import load_catalogue

    entry = next(e for e in load_catalogue().entries if e.forms)
    text = (ROOT / "zoo" / "catalogue.toml").read_text()
    weights = entry.forms[next(iter(entry.forms))]
    old = f'file = "{weights.file}"' if key == "file" else f'repo = "{entry.repo}"'
    assert old in text
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text(text.replace(old, f'{key} = "{value}"', 1))
    monkeypatch.setenv("REALSPIKE_ZOO_CATALOGUE", str(catalogue))
    code, _, err = cli(capsys, "zoo", "pull", entry.name, "--mirror", tmp_path / "mirror")
    assert_one_error(code, err, f"{key} must")


# --- 2. every writer's filesystem failures --------------------------------------------------------------

def _commands(checkpoint: Path, out: Path) -> dict[str, list[object]]:
    """Each writer with `out` as its output (for train and zoo push, the folder it writes into)."""
    return {
        "train": [*TRAIN, "--max-steps", "1", "--out", out],
        "reparam": ["reparam", checkpoint, "--random", "--check-batches", "1", "--batch-size", "2", "-o", out],
        "export": ["export", checkpoint, "--format", "onnx", "--random", "--probe-images", "2", "-o", out],
        "energy --json": ["energy", checkpoint, "--random", "--batches", "1", "--batch-size", "2", "--json", out],
        "energy --plot": ["energy", checkpoint, "--random", "--batches", "1", "--batch-size", "2", "--plot", out],
        "zoo push": ["zoo", "push", checkpoint, "--repo", "lab/m", "--to", out],
    }


FILE_WRITERS = ["reparam", "export", "energy --json", "energy --plot"]
ALL_WRITERS = ["train", *FILE_WRITERS, "zoo push"]


@pytest.mark.parametrize("command", FILE_WRITERS)
def test_an_output_that_is_a_folder_is_refused(tmp_path, capsys, checkpoint, command):
    (tmp_path / "out").mkdir()
    before = tree(tmp_path)
    code, _, err = cli(capsys, *_commands(checkpoint, tmp_path / "out")[command], "--overwrite")
    assert_one_error(code, err, f"{tmp_path / 'out'} is a folder; give a file name")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ["train", "zoo push"])
def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys, checkpoint, command):
    (tmp_path / "out").write_text("a file, not a folder")
    before = tree(tmp_path)
    code, _, err = cli(capsys, *_commands(checkpoint, tmp_path / "out")[command])
    assert_one_error(code, err, "is a file, not a folder")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ALL_WRITERS)
def test_an_output_under_a_file_is_refused(tmp_path, capsys, checkpoint, command):
    (tmp_path / "plain").write_text("a file")
    before = tree(tmp_path)
    code, _, err = cli(capsys, *_commands(checkpoint, tmp_path / "plain" / "sub" / "out.x")[command])
    assert_one_error(code, err, f"{tmp_path / 'plain'} is a file, not a folder")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ALL_WRITERS)
def test_an_unwritable_folder_is_refused(tmp_path, capsys, checkpoint, unwritable, command):
    code, _, err = cli(capsys, *_commands(checkpoint, unwritable / "out.x")[command])
    assert_one_error(code, err, f"cannot write in {unwritable}")
    assert list(unwritable.iterdir()) == []


# A child process each (about 4 s): train, the JSON report and zoo push in the default run, the rest marked slow.
FULL_DISK = ["train", "energy --json", "zoo push",
             *(pytest.param(c, marks=pytest.mark.slow) for c in ("reparam", "export", "energy --plot"))]


@pytest.mark.parametrize("command", FULL_DISK)
@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, checkpoint, command):
    """RLIMIT_FSIZE of 4 kB: smaller than every output (the JSON report is the smallest), not than the lock."""
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out.x"
    started = time.monotonic()
    done = run_cli(*_commands(checkpoint, out)[command], preexec=limit_file_size(4096))
    assert_one_error(done.returncode, done.stderr, "file too large")
    assert list(work.iterdir()) == [], "a partial output or a temporary file was left"
    if command == "train":  # checked before the first step, not after an epoch
        assert "cannot write in" in done.stderr and "step" not in done.stdout + done.stderr.split("error:")[0]
        assert time.monotonic() - started < 60


def test_an_existing_output_is_never_replaced_without_overwrite(tmp_path, capsys, checkpoint):
    for command in FILE_WRITERS:
        target = tmp_path / f"{command.replace(' ', '_')}.out"
        target.write_text("keep me")
        code, _, err = cli(capsys, *_commands(checkpoint, target)[command])
        assert_one_error(code, err, f"{target} already exists")
        assert target.read_text() == "keep me"


# --- 3. run directories: one run at a time, --overwrite loses nothing ------------------------------------

def test_overwrite_keeps_the_previous_run_until_the_new_one_has_saved(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    code, _, err = cli(capsys, *TRAIN, "--max-steps", "1", "--out", out)
    assert code == 0, err
    old = tree(out)
    import realspike_cli.core.checkpointer as checkpointer

    def disk_full(state, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpointer, "_torch_save", disk_full)  # the new run's first save fails
    code, _, err = cli(capsys, *TRAIN, "--max-steps", "1", "--out", out, "--overwrite")
    assert_one_error(code, err, f"cannot write {out / 'resume.pt'}: no space left on the device")
    assert tree(out) == old  # the previous run is back, byte for byte, and nothing else is there
    monkeypatch.undo()
    code, _, err = cli(capsys, *TRAIN, "--max-steps", "2", "--out", out, "--overwrite")
    assert code == 0, err
    assert sorted(tree(out)) == ["resume.pt"] and tree(out) != old  # replaced; no .previous-run left
    assert torch.load(out / "resume.pt", weights_only=True)["position"][2] == 2


def test_a_run_set_aside_by_a_killed_overwrite_comes_back(tmp_path, capsys):
    """The state a run killed outright between moving the old run aside and its first save leaves."""
    out = tmp_path / "run"
    (out / ".previous-run").mkdir(parents=True)
    (out / ".previous-run" / "resume.pt").write_bytes(b"the old run")
    code, _, err = cli(capsys, *TRAIN, "--max-steps", "1", "--out", out)
    assert_one_error(code, err, "already holds a run (resume.pt)")
    assert tree(out) == {"resume.pt": b"the old run"}


def _start_training(out: Path, t: int = 2, batch: int = 250) -> subprocess.Popen:
    """A run long enough to be interrupted (one epoch: 32 steps of 250), saving its resume point at every step."""
    args = [sys.executable, "-m", "realspike_cli", "train", "mnist10k", "--width", "0.25", "--t", str(t),
            "--epochs", "1", "--batch-size", str(batch), "--save-every", "1", "--out", str(out)]
    return subprocess.Popen(args, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, code, reason", [(signal.SIGTERM, 143, "terminated"),
                                               (signal.SIGINT, 130, "interrupted")])
@pytest.mark.slow
def test_a_signal_stops_training_with_a_resume_point(tmp_path, capsys, sig, code, reason):
    """Also: a second run into the same folder fails at once while the first holds it."""
    out = tmp_path / "run"
    proc = _start_training(out)
    try:
        _wait_for(out / "resume.pt", proc)
        started = time.monotonic()
        second, _, err = cli(capsys, *TRAIN, "--out", out, "--overwrite")
        assert_one_error(second, err, f"run directory {out} is in use by another training run (process {proc.pid})")
        assert time.monotonic() - started < 5
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    line = next(t for t in (stdout + stderr).splitlines() if t.startswith(f"stopped ({reason})"))
    step = int(line.split("step ")[1].split(";")[0])
    state = torch.load(out / "resume.pt", weights_only=True)  # the resume point is that step's, read back
    assert [int(v) for v in state["position"][:2]] == [0, step] and step >= 1
    assert sorted(p.name for p in out.iterdir()) == ["resume.pt"]  # lock released, no temporary file


@pytest.mark.slow  # about 10 s: a run of one-second steps, so that the second signal comes mid-step
def test_a_second_interrupt_stops_at_once_with_one_line(tmp_path):
    out = tmp_path / "run"
    proc = _start_training(out, t=4, batch=500)  # steps of about a second: the second signal comes mid-step
    try:
        _wait_for(out / "resume.pt", proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)  # two signals sent together arrive as one (signals do not queue)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert_one_error(proc.returncode, stderr, "interrupted again: stopped at once")
    assert proc.returncode == 130 and took < 10
    assert not [p for p in out.iterdir() if p.name.endswith(".realspike-tmp")]
    torch.load(out / "resume.pt", weights_only=True)  # the last resume point saved is intact


# --- 4. interrupted writers leave nothing behind ----------------------------------------------------------

SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import realspike_cli.core.conversion as conversion
    from realspike_cli.cli.app import main
    write = conversion.write_checkpoint_file
    def slow(path, model, meta):  # the file is half way: written, not yet checked and renamed
        write(path, model, meta)
        Path(sys.argv[1]).write_text(str(path))
        time.sleep(60)
    conversion.write_checkpoint_file = slow
    main(sys.argv[2:])
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_an_interrupted_reparam_leaves_no_temporary_file(tmp_path, checkpoint, sig):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    marker = tmp_path / "writing"
    args = ["reparam", str(checkpoint), "--random", "--check-batches", "1", "--batch-size", "2",
            "-o", str(out_dir / "inf.safetensors")]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(marker), *args], cwd=ROOT, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(marker, proc)
        temp = Path(marker.read_text())
        assert temp.parent == out_dir and temp.exists()  # the test does catch a temporary file in the folder
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    if sig == signal.SIGTERM:  # the handler runs the writer's cleanup: nothing is left
        assert_one_error(proc.returncode, stderr, "terminated")
        assert proc.returncode == 143 and list(out_dir.iterdir()) == []
        return
    assert list(out_dir.iterdir()) == [temp]  # SIGKILL runs nothing: the next write into the folder cleans up
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["inf.safetensors"]


# --- 5. what is written: permissions and a verified digest -------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_get_the_umask_permissions(tmp_path, capsys, checkpoint, mask):
    previous = os.umask(mask)
    try:
        assert cli(capsys, *_commands(checkpoint, tmp_path / "inf.safetensors")["reparam"])[0] == 0
        assert cli(capsys, *_commands(checkpoint, tmp_path / "mirror")["zoo push"])[0] == 0
        assert cli(capsys, *_commands(checkpoint, tmp_path / "e.json")["energy --json"])[0] == 0
    finally:
        os.umask(previous)
    written = [tmp_path / "inf.safetensors", tmp_path / "e.json", *(tmp_path / "mirror" / "lab" / "m").iterdir()]
    assert len(written) == 4
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o666 & ~mask)}


def _data_offset(path: Path) -> int:
    """Where the tensor bytes start: after the 8-byte header length and the JSON header (safetensors format)."""
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + length


def test_the_recorded_digest_is_the_sha256_of_the_tensors(checkpoint):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(checkpoint), framework="np") as f:
        recorded = f.metadata()["realspike_tensors_sha256"]
    arrays = load_file(str(checkpoint))  # numpy, not torch: an independent reading of the same bytes
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        digest.update(f"{name}|torch.{a.dtype}|{tuple(a.shape)}|".encode())
        digest.update(a.tobytes(order="C"))
    assert recorded == digest.hexdigest()


def test_flipped_tensor_bytes_are_one_error_line(tmp_path, capsys, checkpoint):
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(checkpoint.read_bytes())
    data[_data_offset(checkpoint) + 100] ^= 0x10  # one bit of one weight: the header still parses
    damaged.write_bytes(bytes(data))
    for command in (["energy", damaged, "--random", "--batches", "1", "--batch-size", "2"],
                    ["reparam", damaged, "--random", "-o", tmp_path / "x"],
                    ["zoo", "push", damaged, "--repo", "lab/m", "--to", tmp_path / "mirror"]):
        code, _, err = cli(capsys, *command)
        assert_one_error(code, err, f"{damaged} is corrupt: its tensor data does not match the sha256")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.safetensors"]  # nothing written, nothing pushed


def test_a_checkpoint_without_a_digest_still_loads(tmp_path, capsys, checkpoint):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(checkpoint), framework="pt") as f:
        header = {k: v for k, v in f.metadata().items() if k != "realspike_tensors_sha256"}
    old = tmp_path / "old.safetensors"  # as every realspike before the digest wrote it
    save_file(load_file(str(checkpoint)), str(old), metadata=header)
    code, out, err = cli(capsys, "energy", old, "--random", "--batches", "1", "--batch-size", "2", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["checkpoint"] == str(old)


def test_push_refuses_a_checkpoint_that_does_not_load(tmp_path, capsys, checkpoint):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(checkpoint), framework="pt") as f:
        header = {k: v for k, v in f.metadata().items() if k != "realspike_tensors_sha256"}
    tensors = load_file(str(checkpoint))
    tensors.pop(sorted(tensors)[0])  # its metadata reads fine; its weights do not fit its architecture
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=header)
    code, _, err = cli(capsys, "zoo", "push", broken, "--repo", "lab/m", "--to", tmp_path / "mirror")
    assert_one_error(code, err, "refusing to publish a checkpoint that does not load", "tensor(s) missing")
    assert not (tmp_path / "mirror").exists()


# --- 6. the zoo without a network ---------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.parametrize("offline", ["no network", "HF_HUB_OFFLINE=1"])
def test_pull_without_a_network_says_so_at_once(tmp_path, offline):
    from realspike_cli.core.zoo import load_catalogue

    entry = next(e for e in load_catalogue().entries if e.forms)
    catalogue = tmp_path / "catalogue.toml"  # a repository the source tree does not ship a copy of
    catalogue.write_text((ROOT / "zoo" / "catalogue.toml").read_text().replace(entry.repo, "someone/elsewhere"))
    env = child_env(REALSPIKE_ZOO_CATALOGUE=str(catalogue), HF_HOME=str(tmp_path / "hf"),
                    HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    if offline != "no network":
        env["HF_HUB_OFFLINE"] = "1"
    started = time.monotonic()
    done = run_cli("zoo", "pull", entry.name, env=env, timeout=60)
    took = time.monotonic() - started
    expected = "cannot reach the Hugging Face Hub" if offline == "no network" else "offline mode is on"
    assert_one_error(done.returncode, done.stderr, expected, "--mirror DIR")
    assert len(done.stderr.strip().splitlines()) == 1 and "Retry" not in done.stderr  # no hub warnings
    assert took < 15, f"took {took:.1f} s"


@pytest.mark.slow
def test_metrics_file_is_whole_json_lines(trained_run):
    """metrics.jsonl is rewritten atomically: every line parses (a torn append would not)."""
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
