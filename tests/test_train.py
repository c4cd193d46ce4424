"""Training on the embedded mnist10k: it learns, it resumes bit-exactly mid-epoch, it protects run directories."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from realspike_cli.core.checkpointer import Checkpointer
from realspike_cli.core.datasets import load_dataset
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.events import EpochDone, Finished, Stopped
from realspike_cli.core.specs import TrainConfig
from realspike_cli.core.train import RunOptions, make_optimizer, train_events
from tests.conftest import tiny_spec

SPEC = tiny_spec("small_convnet", "element", time_steps=2, num_classes=10, in_channels=1)
CFG = TrainConfig(epochs=2, batch_size=256, lr=0.05, seed=3, augment="none")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist10k")


def run(data, out, cfg=CFG, resume=False, overwrite=False, **opts):
    files = Checkpointer(out, resume=resume, overwrite=overwrite)
    return list(train_events(SPEC, data, cfg, options=RunOptions(**opts), callbacks=[files]))


def metrics(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_stopped_mid_epoch_then_resumed_equals_uninterrupted(mnist, tmp_path):
    events = run(mnist, tmp_path / "a")
    assert isinstance(events[-1], Finished)
    assert [e.epoch for e in events if isinstance(e, EpochDone)] == [1, 2]
    stopped = run(mnist, tmp_path / "b", max_steps=40)  # 32 steps per epoch: stops inside epoch 2
    assert isinstance(stopped[-1], Stopped) and (stopped[-1].epoch, stopped[-1].step) == (1, 8)
    resumed = run(mnist, tmp_path / "b", resume=True)
    assert isinstance(resumed[-1], Finished)
    assert [e.epoch for e in resumed if isinstance(e, EpochDone)] == [2]
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(tmp_path / "a" / "metrics.jsonl") == metrics(tmp_path / "b" / "metrics.jsonl")
    # It learned something real in 64 steps of a tiny network.
    assert events[-1].best_top1 > 0.8


def test_refuses_to_reuse_a_run_directory(mnist, tmp_path):
    run(mnist, tmp_path, max_steps=1)
    with pytest.raises(ConfigError, match="already holds a run"):
        run(mnist, tmp_path)
    with pytest.raises(ConfigError, match="different training recipe"):
        run(mnist, tmp_path, cfg=replace(CFG, lr=0.1), resume=True)
    events = run(mnist, tmp_path, overwrite=True, max_steps=1)
    assert isinstance(events[-1], Stopped)


def test_weight_decay_only_on_conv_and_linear_weights():
    from realspike_cli.core.models import build_model

    model = build_model(tiny_spec("resnet20", "element"))
    decayed, plain = make_optimizer(model, CFG).param_groups
    assert decayed["weight_decay"] == CFG.weight_decay and plain["weight_decay"] == 0.0
    assert all(p.ndim in (2, 4) for p in decayed["params"])
    coefficient_ids = {id(m.a) for m in model.modules() if hasattr(m, "a")}
    assert coefficient_ids and coefficient_ids <= {id(p) for p in plain["params"]}


@pytest.mark.slow
def test_channels_last_trains_and_saves_standard_checkpoints(mnist, tmp_path):
    events = run(mnist, tmp_path, cfg=replace(CFG, epochs=1), channels_last=True)
    assert isinstance(events[-1], Finished) and events[-1].best_top1 > 0.5
    from realspike_cli.core.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "last.safetensors")  # plain (NCHW) model, strict load
    assert all(p.is_contiguous() for p in model.parameters())


def test_lif_backend_option_applies_to_this_model_only():
    from realspike_cli.core import kernels
    from realspike_cli.core.models import build_model
    from realspike_cli.core.neuron import LIFNeuron
    from realspike_cli.core.train import use_lif_backend

    model, other = build_model(SPEC), build_model(SPEC)
    use_lif_backend(model, "compiled")
    assert {m.backend for m in model.modules() if isinstance(m, LIFNeuron)} == {"compiled"}
    assert {m.backend for m in other.modules() if isinstance(m, LIFNeuron)} == {None}
    assert kernels.default_backend() == "eager"
    with pytest.raises(ConfigError, match="unknown LIF backend 'fused'"):
        use_lif_backend(model, "fused")


def test_compile_option_trains_through_the_compiled_module_and_saves_plain_names(mnist, tmp_path, monkeypatch):
    # torch.compile replaced by a wrapper with its parameter naming (`_orig_mod.`): the wiring is what is
    # tested here, without minutes of inductor; the opt-in test below compiles for real.
    from realspike_cli.core.events import Compiled, StepDone

    wrapped = []

    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self._orig_mod = module

        def forward(self, *args):
            wrapped.append(len(args))
            return self._orig_mod(*args)

    monkeypatch.setattr(torch, "compile", Wrapper)
    events = run(mnist, tmp_path / "compiled", max_steps=3, compile=True)
    plain = run(mnist, tmp_path / "plain", max_steps=3)
    assert len(wrapped) == 3  # every training step went through the compiled module (eval stays eager)
    kinds = [type(e) for e in events if isinstance(e, (Compiled, StepDone))]
    assert kinds == [Compiled, StepDone, StepDone, StepDone]
    assert not any(isinstance(e, Compiled) for e in plain)
    state = torch.load(tmp_path / "compiled" / "resume.pt", weights_only=True)["model"]
    want = torch.load(tmp_path / "plain" / "resume.pt", weights_only=True)["model"]
    assert state.keys() == want.keys() and not any("_orig_mod" in k for k in state)
    assert all(torch.equal(state[k], want[k]) for k in want)


@pytest.mark.skipif(
    not os.environ.get("REALSPIKE_TEST_COMPILE"),
    reason="compiles with inductor: seconds with a warm cache, minutes cold; set REALSPIKE_TEST_COMPILE=1",
)
def test_compile_option_with_inductor_matches_eager(mnist, tmp_path):
    # One step: inductor rounds BatchNorm differently, so over several steps a membrane sitting on the
    # threshold can flip a spike and the runs drift apart (as with --channels-last); one step must agree.
    run(mnist, tmp_path / "compiled", max_steps=1, compile=True)
    run(mnist, tmp_path / "plain", max_steps=1)
    state = torch.load(tmp_path / "compiled" / "resume.pt", weights_only=True)["model"]
    want = torch.load(tmp_path / "plain" / "resume.pt", weights_only=True)["model"]
    for k in want:
        torch.testing.assert_close(state[k], want[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_compile_failure_is_one_error_line_and_changes_nothing(tmp_path, monkeypatch, capsys):
    from tests.test_cli import assert_one_error_line, cli

    class Broken(torch.nn.Module):  # what a machine without a C++ compiler gets from inductor
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\nlong compiler output")

    monkeypatch.setattr(torch, "compile", Broken)
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "mnist10k", "--compile", "--max-steps", "2", "--out", str(out))
    assert_one_error_line(code, err, "--compile failed at the first step (RuntimeError: InductorError")
    assert "long compiler output" not in err
    assert not (out / "resume.pt").exists() and not (out / "last.safetensors").exists()


def test_recorded_command_reproduces_the_neuron_options(tmp_path, capsys):
    """The command a checkpoint records, run through the real CLI, builds the same spec (soft reset etc.)."""
    import shlex

    from realspike_cli.cli.app import main
    from realspike_cli.core.specs import ModelSpec, NeuronSpec
    from realspike_cli.core.train import recipe_command

    neuron = NeuronSpec(reset="soft", detach_reset=True, surrogate_width=0.5)
    spec = ModelSpec("small_convnet", 10, 1, (28, 28), 2, spike="channel", neuron=neuron, arch_kwargs={"width": 0.25})
    tokens = shlex.split(recipe_command("mnist10k", spec, replace(CFG, epochs=1)))[1:]  # drop "realspike"
    with pytest.raises(SystemExit) as stop:
        main([*tokens, "--max-steps", "1", "--out", str(tmp_path)])
    assert stop.value.code == 0, capsys.readouterr().err
    saved = json.loads(torch.load(tmp_path / "resume.pt", weights_only=True)["spec"])
    assert saved == spec.to_dict()


def test_recorded_command_names_the_shape_of_a_folder_data_set():
    from realspike_cli.core.specs import ModelSpec
    from realspike_cli.core.train import recipe_command

    spec = ModelSpec("small_convnet", 3, 1, (20, 24), 2)
    assert recipe_command("imagefolder", spec, CFG).endswith("--image-size 20x24 --channels 1")
    assert "--image-size" not in recipe_command("mnist10k", replace(spec, input_size=(28, 28)), CFG)
