"""Re-parameterization and counting of the neuron family: ternary spikes (a folded with either sign, spikes
exactly {−1, 0, 1}) and MPBN (membrane BatchNorm -> per-channel thresholds, γ < 0 by negating the input,
γ = 0 as a constant channel), with every spike setting and both resets.

Oracles: a hand computation of the thresholds and spikes; the training form itself, compared DIRECTLY with
the inference form in float64 (logits with torch.testing.assert_close, and every neuron's spikes recorded by
hooks written here, equal exactly); brute-force operation counts written here. Each comparator is shown to
catch a planted difference.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from realspike_cli.core.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from realspike_cli.core.conversion import convert_checkpoint, reparameterize
from realspike_cli.core.energy import count_forms
from realspike_cli.core.errors import ReparamError
from realspike_cli.core.models import build_model
from realspike_cli.core.neuron import LIFNeuron, MPBNNeuron, RealSpike, SpikeActivation
from realspike_cli.core.reparam import check_equivalence, plan_folds, to_inference
from realspike_cli.core.specs import ModelSpec, NeuronSpec, Spike
from realspike_cli.core.spike_recorder import SpikeRecorder
from realspike_cli.core.threshold_neuron import ThresholdLIF

pytestmark = pytest.mark.usefixtures("one_thread")
TERNARY = (-1.0, 0.0, 1.0)


# --- helpers written for these tests ---------------------------------------------------------------------


def randomize(model: nn.Module, seed: int = 0, *, nonnegative_a: bool = False) -> nn.Module:
    """float64, eval mode. Layer BatchNorms as the other reparam tests draw them; membrane BatchNorms with γ
    of both signs and γ = 0 on channel 0; Real Spike a ~ U(−1.5, 1.5) (U(0.2, 1.5) before a max pool)."""
    g = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    membrane = {id(m.norm) for m in model.modules() if isinstance(m, MPBNNeuron)}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.3, 0.3, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                if id(m) in membrane:
                    m.weight.uniform_(-1.5, 1.5, generator=g)
                    m.weight[0] = 0.0
                    m.weight[1] = -abs(float(m.weight[1])) - 0.1
                    m.bias.uniform_(-0.6, 0.6, generator=g)
                else:
                    m.weight.uniform_(0.6, 1.4, generator=g)
                    m.bias.uniform_(0.0, 0.6, generator=g)
            if isinstance(m, RealSpike):
                if nonnegative_a:
                    m.a.uniform_(0.2, 1.5, generator=g)
                else:
                    m.a.uniform_(-1.5, 1.5, generator=g)
    return model


def neuron_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and every LIFNeuron's output, by module name (hooks written here)."""
    seen: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, n=name: seen.__setitem__(n, o.detach().clone()))
               for name, m in model.named_modules() if isinstance(m, LIFNeuron)]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, seen


def assert_same_network(train: nn.Module, inference: nn.Module, x: torch.Tensor, rtol: float = 1e-12
                        ) -> dict[str, torch.Tensor]:
    """The two forms directly: logits close (float64 folds: 1e-12), every neuron's spikes identical."""
    want, want_spikes = neuron_outputs(train, x)
    got, got_spikes = neuron_outputs(inference, x)
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * float(want.abs().max()))
    assert sorted(got_spikes) == sorted(want_spikes)
    for name, s in want_spikes.items():
        assert torch.equal(got_spikes[name], s), name
    return want_spikes


def spec_of(arch: str, spike: str, kind: str = "mpbn", reset: str = "hard", width: float | None = None,
            **neuron) -> ModelSpec:
    size = {"small_convnet": 28, "resnet20": 16, "sew_resnet18": 32}.get(arch, 8)
    width = width or (0.25 if arch == "small_convnet" else 0.0625)
    return ModelSpec(arch, 10, 1 if arch == "small_convnet" else 3, (size, size), 2, spike=spike,
                     neuron=NeuronSpec(kind=kind, reset=reset, **neuron), arch_kwargs={"width": width})


def probe(spec: ModelSpec, n: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, spec.in_channels, *spec.input_size, generator=g, dtype=torch.float64) * 3 - 0.5


# --- a hand computation --------------------------------------------------------------------------------------


class Probe(nn.Module):
    """x (already time-folded, [T·B, 1]) -> Linear(1, 4) -> neuron: the neuron's spikes are the output."""

    def __init__(self, spec: NeuronSpec, ternary: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 4, bias=False)
        self.act = SpikeActivation(spec, 4, Spike.TERNARY if ternary else Spike.BINARY, (4,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


@pytest.mark.parametrize("ternary", [False, True], ids=["binary", "ternary"])
def test_mpbn_fold_by_hand(ternary):
    """σ² + ε = 0.25 (√ = 0.5), V_th = 0.5, decay 0.25, input h_t = x_t on every channel, x = 0.4, −0.3, 0.2, 0.5.

    ch 0: γ = 2, β = 0.1, μ = 0.2: +1 iff h ≥ 0.2 + 0.4·0.5/2 = 0.3; −1 iff h ≤ 0.2 − 0.6·0.5/2 = 0.05.
      h = 0.4 (+1, u=0), −0.3 (−1 if ternary, u=0; binary: u=−0.3), then ternary 0.2 (0, u=.2), 0.55 (+1);
      binary 0.25·(−0.3) + 0.2 = 0.125 (0), 0.03125 + 0.5 = 0.53125 (+1).
    ch 1: γ = −1, β = 0.3, μ = 0.1: m = −2(h − 0.1) + 0.3; +1 iff h ≤ 0 (ĥ = −h ≥ 0), −1 iff h ≥ 0.5.
      h = 0.4 (0, u=.4), 0.1 − 0.3 = −0.2 (+1, u=0), 0.2 (0, u=.2), 0.05 + 0.5 = 0.55 (ternary −1; binary 0).
    ch 2: γ = 0, β = 0.7: BN(h) = 0.7 ≥ 0.5 at every step: +1, +1, +1, +1.
    ch 3: γ = 0, β = −0.6: ternary −1 at every step; binary never.
    """
    spec = NeuronSpec(kind="mpbn")
    model = Probe(spec, ternary).double().eval()
    with torch.no_grad():
        model.fc.weight.fill_(1.0)
        norm = model.act.neuron.norm
        norm.running_var.fill_(0.25 - norm.eps)
        norm.running_mean.copy_(torch.tensor([0.2, 0.1, 0.0, 0.0]))
        norm.weight.copy_(torch.tensor([2.0, -1.0, 0.0, 0.0]))
        norm.bias.copy_(torch.tensor([0.1, 0.3, 0.7, -0.6]))
    x = torch.tensor([[0.4], [-0.3], [0.2], [0.5]], dtype=torch.float64)
    if ternary:
        want = [[1, 0, 1, -1], [-1, 1, 1, -1], [0, 0, 1, -1], [1, -1, 1, -1]]
    else:
        want = [[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0], [1, 0, 1, 0]]
    want = torch.tensor(want, dtype=torch.float64)
    inference = to_inference(model)
    folded = inference.get_submodule("act.neuron")
    assert isinstance(folded, ThresholdLIF) and not any(isinstance(m, nn.BatchNorm1d) for m in inference.modules())
    torch.testing.assert_close(folded.upper, torch.tensor([0.3, 0.0, -0.5, 0.5], dtype=torch.float64))
    if ternary:
        torch.testing.assert_close(folded.lower, torch.tensor([0.05, -0.5, -0.5, 0.5], dtype=torch.float64))
    assert inference.get_submodule("fc").weight.flatten().tolist() == [1.0, -1.0, 0.0, 0.0]
    with torch.no_grad():
        assert torch.equal(model(x), want)  # the training form (MPBNNeuron) agrees with the hand computation
        assert torch.equal(inference(x), want)


# --- random networks: every architecture, spike setting and reset ------------------------------------------

CASES = [
    (arch, spike, kind, reset)
    for arch in ("small_convnet", "resnet20", "resnet19", "vgg11", "sew_resnet18")
    for spike in ("ternary", "ternary-layer", "ternary-channel", "ternary-element", "binary", "channel", "element")
    for kind, reset in (("mpbn", "hard"), ("mpbn", "soft"), ("lif", "hard"))
    if not (arch == "sew_resnet18" and spike.endswith("element"))  # no fold through its max pool (refused below)
    if kind == "mpbn" or spike.startswith("ternary")
]


@pytest.mark.parametrize(("arch", "spike", "kind", "reset"), CASES)
def test_inference_form_equals_training_form(arch, spike, kind, reset):
    spec = spec_of(arch, spike, kind, reset)
    model = randomize(build_model(spec), nonnegative_a=arch == "sew_resnet18")
    x = probe(spec)
    inference = to_inference(model)
    spikes = assert_same_network(model, inference, x)
    neurons = [m for m in inference.modules() if isinstance(m, LIFNeuron)]
    assert not any(isinstance(m, (RealSpike, MPBNNeuron, nn.modules.batchnorm._BatchNorm))
                   for m in inference.modules())
    assert all(isinstance(m, ThresholdLIF) for m in neurons) == (kind == "mpbn")
    alphabet = TERNARY if spec.spike.ternary else (0.0, 1.0)
    for name, s in spikes.items():
        assert set(s.unique().tolist()) <= set(alphabet), name
    everything = torch.cat([s.flatten() for s in spikes.values()])
    assert 0.02 < float(everything.abs().mean()) < 0.98  # the network fires, not trivially
    if spec.spike.ternary:
        assert (everything < 0).any()
    if kind == "mpbn":  # the fold met negative and zero γ
        gammas = torch.cat([m.norm.weight.flatten() for m in model.modules() if isinstance(m, MPBNNeuron)])
        assert (gammas < 0).any() and (gammas == 0).any()
    report = check_equivalence(model, inference, x)
    assert report.spikes_in_alphabet and report.spike_alphabets == [list(alphabet)]
    assert report.spikes_binary == (not spec.spike.ternary) and report.agreement == 1.0


@pytest.mark.parametrize("spike", ["ternary-element", "element"])
def test_materialized_storage_of_mpbn_and_ternary(spike):
    spec = spec_of("resnet20", spike)
    model = randomize(build_model(spec))
    assert_same_network(model, to_inference(model, materialize=True), probe(spec))


def test_the_direct_comparison_catches_a_planted_threshold_difference():
    spec = spec_of("small_convnet", "ternary-channel")
    model = randomize(build_model(spec))
    inference = to_inference(model)
    with torch.no_grad():
        inference.get_submodule("body.3.neuron").upper[2] += 0.05
    with pytest.raises(AssertionError):
        assert_same_network(model, inference, probe(spec))


def test_reparameterize_and_plan_on_negative_gamma_and_coefficients():
    spec = spec_of("resnet20", "ternary-layer", reset="soft")
    model = randomize(build_model(spec))
    folds = plan_folds(model)
    thresholds = [f for f in folds if f.rule == "membrane-threshold"]
    assert len(thresholds) == sum(isinstance(m, MPBNNeuron) for m in model.modules())
    assert str(thresholds[0]) == "body.0.0.neuron: membrane-threshold <- body.0.0.neuron.norm via stem.0"
    inference, report = reparameterize(model, probe(spec))
    assert report.agreement == 1.0 and report.spikes_in_alphabet and report.relative_diff < 1e-12
    assert report.outside_alphabet_layers == [] and report.non_binary_layers  # ternary: −1s are not binary


def test_soft_reset_of_a_negated_channel_adds_v_th_back():
    """u = h − V_th·s on the raw membrane is û = ĥ − sign·V_th·s on the negated one (and 0 when γ = 0)."""
    spec = spec_of("small_convnet", "ternary", reset="soft", v_th=0.4)
    model = randomize(build_model(spec))
    neuron = to_inference(model).get_submodule("body.0.neuron")
    gamma = model.get_submodule("body.0.neuron").norm.weight.detach()
    assert torch.equal(neuron.reset_by.flatten(), torch.sign(gamma) * 0.4)


# --- what is refused ---------------------------------------------------------------------------------------------


class PooledMPBN(nn.Module):
    """conv -> BN -> max pool -> MPBN neuron: max does not commute with negating a channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.pool = nn.MaxPool2d(2)
        self.act = SpikeActivation(NeuronSpec(kind="mpbn"), 2, Spike.BINARY, (3, 4, 4))
        self.fc = nn.Linear(48, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.act(self.pool(self.bn(self.conv(x.repeat(2, 1, 1, 1)))))
        return self.fc(s.flatten(1)).unflatten(0, (2, -1)).mean(0)


def test_a_channel_sign_that_cannot_reach_the_input_is_refused_only_when_needed():
    model = randomize(PooledMPBN())
    with pytest.raises(ReparamError, match=r"cannot fold the membrane BatchNorm of MPBN neuron act.neuron: \d of its "
                       r"3 channel\(s\) have γ ≤ 0, .* comes from MaxPool2d pool, whose sign cannot be changed"):
        to_inference(model)
    with torch.no_grad():
        model.act.neuron.norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
    assert_same_network(model, to_inference(model), torch.rand(4, 1, 8, 8, dtype=torch.float64) * 3)


def test_ternary_refusals_name_the_layer():
    model = randomize(build_model(spec_of("sew_resnet18", "ternary-channel", kind="lif")))
    with pytest.raises(ReparamError, match=r"cannot fold body.0.coeff \(ternary-channel\) through MaxPool2d body.1: "
                       r"\d+ of its 4 coefficient\(s\) are negative"):
        to_inference(model)
    model = build_model(spec_of("sew_resnet18", "ternary-element", kind="lif")).eval()
    with pytest.raises(ReparamError, match="max pooling does not commute with per-position coefficients"):
        to_inference(model)


def test_membrane_without_running_statistics_is_refused():
    model = randomize(build_model(spec_of("small_convnet", "binary")))
    model.get_submodule("body.3.neuron").norm.track_running_stats = False
    model.get_submodule("body.3.neuron").norm.running_mean = None
    with pytest.raises(ReparamError, match="membrane BatchNorm of MPBN neuron body.3.neuron: MPBN thresholds need"):
        to_inference(model)


# --- checkpoints -----------------------------------------------------------------------------------------------


def test_inference_checkpoint_round_trip(tmp_path):
    """convert_checkpoint writes it (verified), load_checkpoint rebuilds the structure from the spec alone."""
    spec = spec_of("resnet20", "ternary-channel", reset="soft")
    model = randomize(build_model(spec)).float()
    path = save_checkpoint(tmp_path / "m.safetensors", model, CheckpointMeta(spec=spec, dataset="mnist10k"))
    done = convert_checkpoint(path, random_probe=True, probe_images=8)
    assert done.report.agreement == 1.0 and done.folds_by_rule["membrane-threshold"] == 19
    loaded, meta = load_checkpoint(done.output)
    assert meta.equivalence["spikes_in_alphabet"] and meta.equivalence["spike_alphabets"] == [list(TERNARY)]
    assert_same_network(model.double(), loaded.double(), probe(spec), rtol=1e-6)  # weights stored in float32


# --- the spike recorder's alphabet ---------------------------------------------------------------------------------


def test_recorder_checks_each_neuron_against_its_own_alphabet():
    ternary = LIFNeuron(NeuronSpec(), 2, ternary=True)
    binary = LIFNeuron(NeuronSpec(), 2)
    model = nn.ModuleDict({"t": ternary, "b": binary})
    x = torch.tensor([[0.9], [-0.9], [0.0], [0.6]])
    with SpikeRecorder(model, check_alphabet=True) as rec, torch.no_grad():
        assert ternary(x).flatten().tolist() == [1.0, -1.0, 0.0, 1.0]
        binary(x)
    assert rec.outside_alphabet == [] and rec.non_binary == ["t"] and rec.spikes["t"] == 3.0
    planted = binary.register_forward_hook(lambda _m, _i, o: o - 1)  # emits −1: outside {0, 1}
    with SpikeRecorder(model, check_alphabet=True) as rec, torch.no_grad():
        binary(x)
    planted.remove()
    assert rec.outside_alphabet == ["b"]


# --- energy: a brute-force count ---------------------------------------------------------------------------------


class CountNet(nn.Module):
    """stem conv -> MPBN ternary-channel neuron -> conv 3x3 stride 2 -> ternary LIF -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn1 = nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3)
        self.act1 = SpikeActivation(NeuronSpec(kind="mpbn"), 2, Spike.TERNARY_CHANNEL, (3, 6, 6))
        self.conv2, self.bn2 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4)
        self.act2 = SpikeActivation(NeuronSpec(), 2, Spike.TERNARY, (4, 3, 3))
        self.fc = nn.Linear(36, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.act1(self.bn1(self.stem(x)).repeat(2, 1, 1, 1))
        s2 = self.act2(self.bn2(self.conv2(s1)))
        return self.fc(s2.flatten(1)).unflatten(0, (2, -1)).mean(0)


def brute_fanout(shape: tuple[int, int, int]) -> torch.Tensor:
    """Targets of each input element of conv2 (3x3, stride 2, padding 1, 4 outputs), by one-hot probing."""
    fanout = torch.zeros(shape, dtype=torch.float64)
    for index in range(math.prod(shape)):
        one = torch.zeros(math.prod(shape), dtype=torch.float64)
        one[index] = 1.0
        out = F.conv2d(one.view(1, *shape), torch.ones(4, shape[0], 3, 3, dtype=torch.float64), stride=2, padding=1)
        fanout.view(-1)[index] = float((out != 0).sum())
    return fanout


def test_energy_counts_a_minus_one_as_an_accumulate_and_mpbn_as_a_compare():
    model = randomize(CountNet())
    x = torch.rand(5, 1, 6, 6, dtype=torch.float64) * 3
    inference = to_inference(model)
    _, spikes = neuron_outputs(model, x)
    s1, s2 = spikes["act1.neuron"], spikes["act2.neuron"]
    assert (s1 < 0).any() and (s1 > 0).any() and (s2 != 0).any()
    train, inf = count_forms({"train": model, "inference": inference}, [x])
    per_image = lambda v: float(v) / len(x)  # noqa: E731
    conv_ops = per_image((s1.ne(0).double() * brute_fanout((3, 6, 6))).sum())  # each ±1 spike: one op per target
    plus_only = per_image(((s1 > 0).double() * brute_fanout((3, 6, 6))).sum())
    assert plus_only < conv_ops  # the −1 spikes matter to the count
    fc_ops = per_image(s2.ne(0).sum() * 5)
    layers = {c.name: c for c in inf.layers}
    assert layers["conv2"].acs == pytest.approx(conv_ops) and layers["conv2"].macs == 0
    assert layers["fc"].acs == pytest.approx(fc_ops)
    assert {c.name for c in inf.layers if c.kind == "batchnorm"} == set()  # MPBN at inference: compares only
    train_layers = {c.name: c for c in train.layers}
    assert train_layers["conv2"].macs == pytest.approx(conv_ops) and train_layers["conv2"].acs == 0  # a·s
    assert train_layers["act1.neuron.norm"].macs == 2 * 3 * 6 * 6  # T · elements per image
    rates = {n.name: n.rate for n in inf.neurons}
    assert rates["act1.neuron"] == pytest.approx(float(s1.abs().mean()))


def test_energy_comparator_catches_a_planted_count():
    """Counting only +1 spikes (the planted error) disagrees with what realspike counts."""
    model = randomize(CountNet())
    x = torch.rand(5, 1, 6, 6, dtype=torch.float64) * 3
    _, spikes = neuron_outputs(model, x)
    (inf,) = count_forms({"inference": to_inference(model)}, [x])
    wrong = float(((spikes["act1.neuron"] > 0).double() * brute_fanout((3, 6, 6))).sum()) / len(x)
    assert {c.name: c for c in inf.layers}["conv2"].acs != pytest.approx(wrong)


def test_replaced_spec_keeps_the_neuron_constants():
    """The ThresholdLIF records a plain LIF/IF spec (decay, reset) and its alphabet; IF when decay is 1."""
    for decay, kind in ((0.25, "lif"), (1.0, "if")):
        spec = dataclasses.replace(spec_of("small_convnet", "ternary", decay=decay, reset="soft"))
        neuron = to_inference(randomize(build_model(spec))).get_submodule("body.0.neuron")
        assert neuron.spec.kind == kind and neuron.spec.decay == decay and neuron.spec.reset == "soft"
        assert neuron.ternary and neuron.spike_values == TERNARY
