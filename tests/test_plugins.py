"""A third-party architecture installed as a package (tests/fixtures/plugin) is known to every command.

The fixture package is installed with pip into a temporary folder, exactly as a user's `pip install` would lay
it out (code + dist-info with its entry point), and the real CLI is run in subprocesses with that folder on
the path: train → reparam → eval --compare → energy → export. Without it, its checkpoint names what to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(FIXTURE)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return target


def realspike(*args: str, site: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    paths = [str(ROOT)] + ([str(site)] if site else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "realspike_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(site, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("work")
    done = realspike("train", "mnist10k", "--arch", "tinynet", "--t", "2", "--spike", "element", "--epochs", "1",
                     "--batch-size", "250", "--lr", "0.1", "--out", "run", site=site, cwd=work)
    assert done.returncode == 0, done.stderr
    return work


@pytest.mark.slow
def test_plugin_architecture_is_listed_and_recorded(site, trained):
    from safetensors import safe_open

    with safe_open(str(trained / "run" / "best.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["realspike"])
    assert meta["model"]["arch"] == "tinynet"
    assert meta["provider"] == {"distribution": "realspike-tinynet", "version": "0.3.1"}


@pytest.mark.slow
def test_plugin_model_through_every_command(site, trained):
    best = "run/best.safetensors"
    done = realspike("reparam", best, "--json", site=site, cwd=trained)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["spikes_binary"] and report["agreement"] == 1.0 and report["layout"] == "factorized"

    done = realspike("eval", best, "--compare", "run/best.inference.safetensors", "--json", site=site, cwd=trained)
    assert done.returncode == 0, done.stderr
    compared = json.loads(done.stdout)
    assert compared["images"] == 2000 and compared["disagreements"] == 0
    assert compared["checkpoints"][0]["top1"] > 0.5  # it learned: 10 classes, chance is 0.1

    done = realspike("energy", best, "--batches", "1", "--json", "-", site=site, cwd=trained)
    assert done.returncode == 0, done.stderr
    forms = json.loads(done.stdout)["forms"]
    assert forms["train"]["totals"]["spikes"] == forms["inference"]["totals"]["spikes"] > 0

    for fmt, out in (("onnx", "m.onnx"), ("nir", "m.nir")):
        done = realspike("export", best, "--format", fmt, "-o", out, "--json", site=site, cwd=trained)
        assert done.returncode == 0, done.stderr
        assert (trained / out).is_file() and json.loads(done.stdout)["checks"]["agreement"] == 1.0


@pytest.mark.slow
def test_checkpoint_without_its_plugin_names_the_package(trained):
    done = realspike("eval", "run/best.safetensors", site=None, cwd=trained)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "comes from the package 'realspike-tinynet' 0.3.1" in lines[0]
    assert "pip install 'realspike-tinynet==0.3.1'" in lines[0]
