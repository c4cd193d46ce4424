"""The neuron family (ternary spikes, MPBN, reset options) against naive loops written here, independently.

The oracles below share no code with realspike: their own surrogate Function (a window written as two
comparisons per threshold), their own reset formula (h − h·s instead of h·(1 − s)) and a BatchNorm computed
by hand from its definition. Each comparator is first shown to catch a planted difference.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from torch import nn

from realspike_cli.core import kernels, kernels_fused
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.neuron import (
    LIFNeuron,
    MPBNNeuron,
    SpikeActivation,
    autograd_multistep,
    build_neuron,
    membrane_thresholds,
)
from realspike_cli.core.specs import ModelSpec, NeuronSpec, Spike

OPTIONS = list(itertools.product((False, True), ("hard", "soft"), (False, True)))  # ternary, reset, detach


def option_id(option) -> str:
    ternary, reset, detach = option
    return f"{'ternary' if ternary else 'binary'}-{reset}{'-detached' if detach else ''}"


# --- the oracle -----------------------------------------------------------------------------------------


class OracleSpike(torch.autograd.Function):
    """s = [h ≥ v] (− [h ≤ −v] for ternary); ds/dh = 1 on [v − w/2, v + w/2] (and on its mirror)."""

    @staticmethod
    def forward(ctx, h, v, half, ternary):
        ctx.save_for_backward(h)
        ctx.consts = (v, half, ternary)
        s = torch.zeros_like(h)
        s[h >= v] = 1.0
        if ternary:
            s[h <= -v] = -1.0
        return s

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        v, half, ternary = ctx.consts
        inside = (h >= v - half) & (h <= v + half)
        if ternary:
            inside = inside | ((h >= -v - half) & (h <= -v + half))
        return grad * inside, None, None, None


def oracle(x, spec: NeuronSpec, ternary: bool, bn=None):
    """Spikes and pre-reset membranes of the neuron described in docs/neurons.md, one step at a time."""
    u, spikes, membranes = 0.0, [], []
    for t in range(x.shape[0]):
        h = u * spec.decay + x[t]
        s = OracleSpike.apply(h if bn is None else bn(h), spec.v_th, spec.surrogate_width / 2, ternary)
        r = s.detach() if spec.detach_reset else s
        if spec.reset == "soft":
            u = h - r * spec.v_th
        else:  # the authors' codes: mem·(1 − spike) (Real Spike), mem·(1 − |spike|) (Ternary Spike)
            u = h - h * (r.abs() if ternary else r)
        spikes.append(s)
        membranes.append(h)
    return torch.stack(spikes), torch.stack(membranes)


class HandBN:
    """BatchNorm from its definition: per-channel batch statistics over all but dim 1 in training (running
    statistics updated with momentum 0.1 and the unbiased variance), running statistics in eval."""

    def __init__(self, channels: int, generator: torch.Generator, training: bool = True) -> None:
        self.gamma = (torch.rand(channels, dtype=torch.float64, generator=generator) * 2 - 1).requires_grad_()
        self.beta = (torch.rand(channels, dtype=torch.float64, generator=generator) - 0.5).requires_grad_()
        self.mean = torch.rand(channels, dtype=torch.float64, generator=generator) - 0.5
        self.var = torch.rand(channels, dtype=torch.float64, generator=generator) + 0.5
        self.training, self.calls, self.eps = training, 0, 1e-5
        self.pooled = False  # planted error: statistics over all time steps at once

    def __call__(self, h):
        dims = [0] + list(range(2, h.dim()))
        view = [1, h.shape[1]] + [1] * (h.dim() - 2)
        if self.training:
            mean, var = h.mean(dims), h.var(dims, unbiased=False)
            n = h.numel() / h.shape[1]
            self.mean = 0.9 * self.mean + 0.1 * mean.detach()
            self.var = 0.9 * self.var + 0.1 * var.detach() * n / (n - 1)
            self.calls += 1
        else:
            mean, var = self.mean, self.var
        return (h - mean.view(view)) / torch.sqrt(var.view(view) + self.eps) * self.gamma.view(view) + self.beta.view(
            view)

    def load_into(self, norm: nn.Module) -> None:
        with torch.no_grad():
            norm.weight.copy_(self.gamma)
            norm.bias.copy_(self.beta)
            norm.running_mean.copy_(self.mean)
            norm.running_var.copy_(self.var)


def inputs(steps: int, *shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, *shape, dtype=torch.float64, generator=g) * 0.9 + 0.1
    x.view(steps, -1)[0, :6] = torch.tensor([0.5, -0.5, 0.0, 1.0, -1.0, 0.3], dtype=torch.float64)  # edges
    return x


def neuron_grads(neuron: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    leaf = x.flatten(0, 1).clone().requires_grad_()
    out = neuron(leaf)
    out.backward(grad.flatten(0, 1))
    return out.detach().unflatten(0, x.shape[:2]), leaf.grad.unflatten(0, x.shape[:2])


def oracle_grads(x, grad, spec, ternary, bn=None):
    leaf = x.clone().requires_grad_()
    spikes, membranes = oracle(leaf, spec, ternary, bn)
    (spikes * grad).sum().backward()
    return spikes.detach(), membranes.detach(), leaf.grad


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=0, atol=1e-12))


# --- LIF / IF with every option -----------------------------------------------------------------------


@pytest.mark.parametrize("option", OPTIONS, ids=option_id)
@pytest.mark.parametrize("constants", [{}, {"decay": 0.7, "v_th": 0.3, "surrogate_width": 0.4}, {"kind": "if"}],
                         ids=["default", "narrow", "if"])
def test_lif_options_equal_the_naive_loop(option, constants):
    ternary, reset, detach = option
    spec = NeuronSpec(reset=reset, detach_reset=detach, **constants)
    x = inputs(5, 6, 3, 4)
    grad = torch.randn_like(x)
    want_s, want_h, want_g = oracle_grads(x, grad, spec, ternary)
    assert want_s.abs().sum() > 0 and (not ternary or (want_s < 0).any())  # the input really fires
    params = LIFNeuron(spec, 5, ternary=ternary).params()
    for backend in ("eager", "compiled-math"):
        if backend == "eager":
            got_s, got_g = neuron_grads(LIFNeuron(spec, 5, "eager", ternary=ternary), x, grad)
            saved = kernels.forward_eager(x, params)[1]
            got_h = saved if ternary else -saved  # the eager binary kernel keeps −h
        else:  # the functions the compiled backend hands to inductor, run eagerly
            got_s, got_h = kernels_fused.fused_forward(x, spec.decay, spec.v_th, ternary, reset == "soft")
            got_g = kernels_fused.fused_backward(got_h, grad, *params)
        assert torch.equal(got_s, want_s), backend
        assert close(got_h, want_h) and close(got_g, want_g), backend


def test_the_comparator_catches_a_planted_reset_difference():
    x = inputs(5, 6, 3, 4)
    grad = torch.randn_like(x)
    for ternary in (False, True):
        spec = NeuronSpec()
        _, got = neuron_grads(LIFNeuron(spec, 5, ternary=ternary), x, grad)
        for planted in (NeuronSpec(detach_reset=True), NeuronSpec(reset="soft"), NeuronSpec(surrogate_width=0.9)):
            assert not close(got, oracle_grads(x, grad, planted, ternary)[2])
        assert close(got, oracle_grads(x, grad, spec, ternary)[2])
    binary_s, _ = neuron_grads(LIFNeuron(NeuronSpec(), 5), x, grad)
    assert not torch.equal(binary_s, oracle_grads(x, grad, NeuronSpec(), True)[0])  # ternary ≠ binary


# --- MPBN ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", OPTIONS, ids=option_id)
@pytest.mark.parametrize("features", [(3, 4, 5), (7,)], ids=["conv", "linear"])
def test_mpbn_training_step_equals_hand_batchnorm_loop(option, features):
    ternary, reset, detach = option
    spec = NeuronSpec("mpbn", reset=reset, detach_reset=detach)
    steps, g = 3, torch.Generator().manual_seed(1)
    x = inputs(steps, 8, *features, seed=2)
    grad = torch.randn_like(x)
    hand = HandBN(features[0], g)
    neuron = MPBNNeuron(spec, steps, features, ternary=ternary).double().train()
    hand.load_into(neuron.norm)
    want_s, want_h, want_g = oracle_grads(x, grad, spec, ternary, hand)
    got_s, got_g = neuron_grads(neuron, x, grad)
    assert torch.equal(got_s, want_s) and close(got_g, want_g)
    assert close(neuron.norm.weight.grad, hand.gamma.grad) and close(neuron.norm.bias.grad, hand.beta.grad)
    assert close(neuron.norm.running_mean, hand.mean) and close(neuron.norm.running_var, hand.var)
    assert int(neuron.norm.num_batches_tracked) == hand.calls == steps  # one update per time step
    _, got_h = autograd_multistep(x, spec, ternary=ternary, norm=neuron.norm.eval())
    assert close(got_h, oracle(x, spec, ternary, _eval_copy(hand))[1])


def _eval_copy(hand: HandBN) -> HandBN:
    copy = HandBN.__new__(HandBN)
    copy.__dict__.update(hand.__dict__, training=False)
    return copy


@pytest.mark.parametrize("ternary", [False, True])
def test_mpbn_eval_mode_uses_running_statistics(ternary):
    spec, steps = NeuronSpec("mpbn"), 4
    x = inputs(steps, 5, 3, 2, 2, seed=3)
    hand = HandBN(3, torch.Generator().manual_seed(4), training=False)
    neuron = MPBNNeuron(spec, steps, (3, 2, 2), ternary=ternary).double().eval()
    hand.load_into(neuron.norm)
    with torch.no_grad():
        got = neuron(x.flatten(0, 1)).unflatten(0, x.shape[:2])
    assert torch.equal(got, oracle(x, spec, ternary, hand)[0])
    assert int(neuron.norm.num_batches_tracked) == 0


def test_mpbn_comparator_catches_other_statistics():
    # A planted difference: normalising with other statistics (the inputs', pooled over T·B·H·W) than each
    # step's own batch statistics of the membrane, as the authors' code does.
    spec, steps = NeuronSpec("mpbn"), 3
    x = inputs(steps, 8, 3, 4, 5, seed=5)
    hand = HandBN(3, torch.Generator().manual_seed(6))
    neuron = MPBNNeuron(spec, steps, (3, 4, 5)).double().train()
    hand.load_into(neuron.norm)
    with torch.no_grad():
        got = neuron(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        pooled_stats = x.transpose(0, 1).flatten(0, 1)  # stand-in: normalise with the statistics of the input
        mean, var = pooled_stats.mean((0, 2, 3)), pooled_stats.var((0, 2, 3), unbiased=False)
    planted = _eval_copy(hand)
    planted.mean, planted.var = mean, var
    assert not torch.equal(got, oracle(x, spec, False, planted)[0])
    assert torch.equal(got, oracle(x, spec, False, hand)[0])


def test_mpbn_neuron_is_built_for_the_feature_shape():
    assert isinstance(build_neuron(NeuronSpec("mpbn"), 2, (4, 3, 3)).norm, nn.BatchNorm2d)
    assert isinstance(build_neuron(NeuronSpec("mpbn"), 2, (16,)).norm, nn.BatchNorm1d)
    assert build_neuron(NeuronSpec(), 2, (16,)).norm is None
    act = SpikeActivation(NeuronSpec("mpbn"), 2, "ternary-element", (4, 3, 3))
    assert isinstance(act.neuron, LIFNeuron) and act.neuron.ternary and act.coeff.a.shape == (4, 3, 3)
    with pytest.raises(ConfigError, match="needs its feature shape"):
        LIFNeuron(NeuronSpec("mpbn"), 2)
    with pytest.raises(ConfigError, match=r"\[C, H, W\]"):
        build_neuron(NeuronSpec("mpbn"), 2, (2, 3, 4, 5))


# --- thresholds of an eval-mode MPBN neuron --------------------------------------------------------------


def mpbn_with(gamma, beta, mean, var, eps=1e-5, ternary=False) -> MPBNNeuron:
    neuron = MPBNNeuron(NeuronSpec("mpbn"), 1, (len(gamma),), ternary=ternary).double().eval()
    with torch.no_grad():
        neuron.norm.eps = eps
        for name, value in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)):
            getattr(neuron.norm, name).copy_(torch.tensor(value, dtype=torch.float64))
    return neuron


def test_membrane_thresholds_by_hand():
    # √(σ² + ε) = 0.4 (σ² = 0.16 − ε), V_th = 0.5, μ = 0.3:
    # γ = 2, β = 0.1: θ′ = 0.3 + 0.4·0.4/2 = 0.38; lower: 0.3 + (−0.6)·0.4/2 = 0.18; h ≥ 0.38 fires.
    # γ = −2, β = 0.1: m ≥ 0.5 ⟺ h ≤ 0.22, i.e. −h ≥ −0.22; m ≤ −0.5 ⟺ h ≥ 0.42, i.e. −h ≤ −0.42.
    # γ = 0: m = β; β = 0.7 fires at every step (upper −inf), β = 0.2 never (+inf); β = −0.6 fires −1 always.
    eps = 1e-5
    neuron = mpbn_with([2.0, -2.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.7, 0.2, -0.6], [0.3] * 5, [0.16 - eps] * 5, eps)
    t = membrane_thresholds(neuron)
    assert t.sign.tolist() == [1.0, -1.0, 0.0, 0.0, 0.0]
    assert t.upper[:2].tolist() == pytest.approx([0.38, -0.22], abs=1e-12)
    assert t.lower[:2].tolist() == pytest.approx([0.18, -0.42], abs=1e-12)
    assert t.upper[2:].tolist() == [-math.inf, math.inf, math.inf]
    assert t.lower[2:].tolist() == [-math.inf, -math.inf, math.inf]


def test_membrane_thresholds_agree_with_the_batchnorm_itself():
    # The rule sign·h ≥ upper (ternary: sign·h ≤ lower) against BN(h) ≥ V_th on membranes around each threshold.
    eps = 1e-5
    neuron = mpbn_with([1.5, -0.7, 0.0, 0.3], [0.2, -0.1, 0.9, -0.4], [0.1, -0.2, 0.0, 0.5],
                       [0.3, 1.2, 0.5, 0.05], eps, ternary=True)
    t = membrane_thresholds(neuron)
    offsets = torch.tensor([-1e-3, 1e-3, -0.5, 0.5, -3.0, 3.0], dtype=torch.float64)
    for c in range(4):
        for edge in (t.upper[c], t.lower[c]):
            centre = edge * t.sign[c] if torch.isfinite(edge) else torch.tensor(0.0, dtype=torch.float64)
            h = torch.zeros(len(offsets), 4, dtype=torch.float64)
            h[:, c] = centre + offsets
            m = neuron.norm(h)[:, c]
            signed = t.sign[c] * h[:, c]
            assert ((m >= 0.5) == (signed >= t.upper[c])).all()
            assert ((m <= -0.5) == (signed <= t.lower[c])).all()


def test_membrane_thresholds_refuse_training_mode_and_plain_neurons():
    neuron = mpbn_with([1.0], [0.0], [0.0], [1.0]).train()
    with pytest.raises(ConfigError, match="eval mode"):
        membrane_thresholds(neuron)
    with pytest.raises(ConfigError, match="not an MPBN neuron"):
        membrane_thresholds(LIFNeuron(NeuronSpec(), 2))


# --- metadata ---------------------------------------------------------------------------------------------


def family_spec(**neuron) -> ModelSpec:
    return ModelSpec(arch="small_convnet", num_classes=10, in_channels=1, input_size=(28, 28), time_steps=2,
                     spike="ternary-channel", neuron=NeuronSpec(**neuron), arch_kwargs={"width": 0.25})


def test_spec_json_round_trip_records_every_option():
    spec = family_spec(kind="mpbn", decay=0.5, v_th=0.4, surrogate_width=0.8, reset="soft", detach_reset=True)
    d = spec.to_dict()
    assert d["spike"] == "ternary-channel"
    assert d["neuron"] == {"kind": "mpbn", "decay": 0.5, "v_th": 0.4, "surrogate_width": 0.8, "reset": "soft",
                           "detach_reset": True, "reset_value": None, "surrogate": "rectangular"}
    assert ModelSpec.from_dict(d) == spec


def test_old_metadata_reads_as_hard_differentiated_reset():
    old = {"kind": "lif", "decay": 0.25, "v_th": 0.5, "surrogate_width": 1.0, "reset": "hard", "reset_value": 0.0,
           "surrogate": "rectangular"}  # what every checkpoint written before these options holds
    for d in (old, {"kind": "if", "decay": 1.0, "v_th": 0.5}):
        spec = NeuronSpec.from_dict(d)
        assert (spec.reset, spec.detach_reset) == ("hard", False)


def test_a_checkpoint_file_written_before_the_options_loads_unchanged(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from realspike_cli.core.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
    from realspike_cli.core.models import build_model

    spec = dataclasses.replace(family_spec(), spike="element")
    model = build_model(spec).eval()
    new = save_checkpoint(tmp_path / "new.safetensors", model, CheckpointMeta(spec=spec, dataset="mnist10k"))
    meta = CheckpointMeta(spec=spec, dataset="mnist10k").to_dict()
    meta["model"]["neuron"] = {"kind": "lif", "decay": 0.25, "v_th": 0.5, "surrogate_width": 1.0, "reset": "hard",
                               "reset_value": 0.0, "surrogate": "rectangular"}  # the old writer's fields
    old = tmp_path / "old.safetensors"
    save_file(load_file(new), str(old), metadata={"format": "pt", "realspike": json.dumps(meta)})
    loaded, read = load_checkpoint(old)
    assert read.spec == spec and (read.spec.neuron.reset, read.spec.neuron.detach_reset) == ("hard", False)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpoint_round_trip_of_a_ternary_mpbn_model(tmp_path):
    from realspike_cli.core.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
    from realspike_cli.core.models import build_model

    spec = family_spec(kind="mpbn", reset="soft")
    model = build_model(spec)
    model.train()
    model(torch.randn(8, 1, 28, 28))  # running statistics of the membrane BatchNorms move
    model.eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, CheckpointMeta(spec=spec, dataset="mnist10k"))
    loaded, meta = load_checkpoint(path)
    assert meta.spec == spec
    norms = [m.norm for m in loaded.modules() if isinstance(m, MPBNNeuron)]
    assert len(norms) == 3 and all(int(n.num_batches_tracked) == 2 for n in norms)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    "neuron, message",
    [
        ({"reset": "sideways"}, "unknown reset 'sideways'"),
        ({"detach_reset": "yes"}, "detach_reset must be true or false"),
        ({"decay": "nan"}, "model.neuron.decay must be a finite number"),
        ({"v_th": float("inf")}, "invalid metadata"),  # json.dumps writes Infinity, which the reader refuses
        ({"surrogate_width": True}, "model.neuron.surrogate_width must be a finite number"),
        ({"kind": "mpbnx"}, "unknown neuron 'mpbnx'"),
    ],
)
def test_hostile_neuron_metadata_is_one_error(tmp_path, neuron, message):
    import json

    from safetensors.torch import save_file

    from realspike_cli.core.checkpoint import CheckpointMeta, read_meta
    from realspike_cli.core.errors import CheckpointError

    meta = CheckpointMeta(spec=family_spec(), dataset="mnist10k").to_dict()
    meta["model"]["neuron"].update(neuron)
    path = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "pt", "realspike": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=message):
        read_meta(path)


def test_unknown_spike_setting_lists_the_ternary_ones():
    with pytest.raises(ConfigError, match="ternary-layer, ternary-channel, ternary-element"):
        dataclasses.replace(family_spec(), spike="quaternary")


# --- the other passes (re-parameterization, energy, export) are tested in test_family_folds.py and
# test_family_export.py ---------------------------------------------------------------------------------------


def test_eval_firing_rate_of_ternary_neurons_counts_both_signs():
    from realspike_cli.core.evaluate import SpikeRecorder

    act = SpikeActivation(NeuronSpec(), 2, Spike.TERNARY, (64,))
    x = torch.randn(2 * 50, 64) * 2
    with SpikeRecorder(act) as rec, torch.no_grad():
        s = act(x)
    assert (s < 0).any() and rec.rates()["neuron"] == pytest.approx(float(s.abs().mean()))


# --- the command line ---------------------------------------------------------------------------------------

TINY = ["train", "mnist10k", "--width", "0.25", "--t", "2", "--epochs", "1", "--batch-size", "250"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    from realspike_cli.cli.app import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_train_flags_reach_the_recorded_spec(tmp_path, capsys):
    import json

    flags = ["--spike", "ternary-channel", "--neuron", "mpbn", "--reset", "soft", "--surrogate-width", "0.8",
             "--detach-reset", "--decay", "0.5", "--max-steps", "2", "--out", str(tmp_path)]
    code, _, err = cli(capsys, *TINY, *flags)
    assert code == 0, err
    state = torch.load(tmp_path / "resume.pt", weights_only=True)  # the run's own resume point
    spec = ModelSpec.from_dict(json.loads(state["spec"]))
    assert spec.spike is Spike.TERNARY_CHANNEL
    assert spec.neuron == NeuronSpec("mpbn", decay=0.5, surrogate_width=0.8, reset="soft", detach_reset=True)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--reset", "sideways"], "unknown reset 'sideways' (choose from: hard, soft)"),
        (["--surrogate-width", "nan"], "surrogate_width must be a finite number"),
        (["--neuron", "mpbnx"], "unknown neuron 'mpbnx' (choose from: lif, if, mpbn)"),
        (["--spike", "ternary-row"], "unknown spike setting 'ternary-row'"),
    ],
)
def test_bad_neuron_flags_are_one_error_line(tmp_path, capsys, flags, message):
    code, _, err = cli(capsys, *TINY, *flags, "--out", str(tmp_path / "run"))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err and lines[0].startswith("error:"), err
    assert message in " ".join(err.split()) and not (tmp_path / "run").exists()
