"""core.graph: one pass-through vocabulary that reparam, energy and the NIR export agree on; the spike recorder;
and an unregistered user network (grouped conv, residual adds, AvgPool, negative coefficients) that converts
exactly, is counted as a hand computation says and exports to NIR that snnTorch runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from realspike_cli.core.conversion import reparameterize
from realspike_cli.core.energy import count_forms
from realspike_cli.core.energy_estimate import count_operations, estimate_energy
from realspike_cli.core.errors import ReparamError
from realspike_cli.core.graph import ModelGraph, is_flatten, trace
from realspike_cli.core.neuron import LIFNeuron, RealSpike, SpikeActivation
from realspike_cli.core.reparam import plan_folds, to_inference
from realspike_cli.core.specs import NeuronSpec, Spike
from realspike_cli.core.spike_recorder import SpikeRecorder
from tests.conftest import randomize_batchnorm

T = 2
pytestmark = pytest.mark.usefixtures("one_thread")


class UserNet(nn.Module):
    """Registered nowhere: direct encoding, a grouped conv, a residual add into a neuron, a SEW-style add of
    two spike sources before an AvgPool, dropout and flatten(1), time averaged at the end."""

    def __init__(self, spike: Spike) -> None:
        super().__init__()
        lif = NeuronSpec()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.act1 = SpikeActivation(lif, T, spike, (4, 8, 8))
        self.conv2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False), nn.BatchNorm2d(4))
        self.neuron2, self.coeff2 = LIFNeuron(lif, T), RealSpike(spike, (4, 8, 8))
        self.pool = nn.AvgPool2d(2)
        self.conv3 = nn.Conv2d(4, 6, 3, padding=1)
        self.act3 = SpikeActivation(lif, T, spike, (6, 4, 4))
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.act1(self.stem(x).repeat(T, 1, 1, 1))
        s2 = self.coeff2(self.neuron2(self.conv2(s1) + s1))
        s3 = self.act3(self.conv3(self.pool(s2 + s1)))
        return self.fc(self.drop(torch.flatten(s3, 1))).unflatten(0, (T, -1)).mean(0)


def user_net(spike: Spike, seed: int = 0) -> UserNet:
    """float64, eval mode, BatchNorm statistics and coefficients of both signs (a ~ U(−1.5, 1.5))."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = UserNet(spike).double().eval()
    with torch.no_grad():
        model.conv3.bias.fill_(0.4)  # keeps act3 firing under negative coefficients
        for m in model.modules():
            randomize_batchnorm(m, g)
            if isinstance(m, RealSpike):
                m.a.uniform_(-1.5, 1.5, generator=g)
    return model


def images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def neuron_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every LIFNeuron's output, recorded by hooks written here (not the recorder under test)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: seen.__setitem__(n, o.detach()))
             for n, m in model.named_modules() if isinstance(m, LIFNeuron)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("spike", [Spike.LAYER, Spike.CHANNEL, Spike.ELEMENT])
def test_user_network_converts_exactly(spike):
    model, x = user_net(spike), images()
    inference, report = reparameterize(model, x)
    assert not any(isinstance(m, (RealSpike, nn.modules.batchnorm._BatchNorm)) for m in inference.modules())
    with torch.no_grad():
        want, got = model(x), inference(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    planted = to_inference(model)
    with torch.no_grad():
        planted.get_submodule("fc").bias[0] += 1e-6  # the comparator must catch a difference this small
        with pytest.raises(AssertionError):
            torch.testing.assert_close(planted(x), want, rtol=1e-12, atol=1e-12)
    for name, spikes in neuron_outputs(inference, x).items():
        assert ((spikes == 0) | (spikes == 1)).all(), name
        assert 0 < float(spikes.mean()) < 1, f"{name} never or always fires: the test would be trivial"
    assert report.spikes_binary and report.agreement == 1.0


def test_user_network_energy_counts_by_hand():
    """ACs of the inference form from the recorded spikes by convolutions with all-ones kernels (one AC per
    (spike, reached neuron) pair); the training form's MACs are the same numbers; the ANN by hand."""
    model, x = user_net(Spike.CHANNEL), images()
    n = len(x)
    train, inference = count_operations(model, x)
    spikes = neuron_outputs(to_inference(model), x)
    s1, s2, s3 = spikes["act1.neuron"], spikes["neuron2"], spikes["act3.neuron"]
    want = {
        "conv2.0": F.conv2d(s1, torch.ones(4, 2, 3, 3, dtype=s1.dtype), padding=1, groups=2).sum(),
        "neuron2 (identity)": s1.sum(),  # each shortcut spike adds a once into neuron2
        # kernel = stride = 2: every spike lies in one pooling window, so window sums count the pairs exactly
        "conv3": F.conv2d(F.avg_pool2d(s1 + s2, 2) * 4, torch.ones(6, 4, 3, 3, dtype=s1.dtype), padding=1).sum(),
        "fc": s3.sum() * 5,
    }
    by_name = {c.name: c for c in inference.layers}
    for name, acs in want.items():
        assert by_name[name].acs == pytest.approx(float(acs) / n, rel=1e-12) and by_name[name].macs == 0, name
    assert by_name["stem.0"].macs == (8 * 3 - 2) ** 2 * 4  # per-axis reach 2,3,...,3,2 (padding), 4 channels
    trained = {c.name: c for c in train.layers}
    for name, acs in want.items():
        assert trained[name].macs == pytest.approx(float(acs) / n, rel=1e-12) and trained[name].acs == 0, name
    assert (trained["stem.1"].macs, trained["conv2.1"].macs) == (4 * 8 * 8, T * 4 * 8 * 8)  # BN per element
    report = estimate_energy(model, x)
    assert report.ann_macs == 1936 + 4 * 2 * 22 * 22 + 6 * 4 * 10 * 10 + 96 * 5 and report.ann_acs == 4 * 8 * 8


def test_user_network_exports_to_nir_and_snntorch_agrees(tmp_path):
    pytest.importorskip("nir")
    from realspike_cli.core.export import export
    from tests.oracles import snntorch_run

    model, x = user_net(Spike.CHANNEL).float(), images(40).float()
    result = export(model, "nir", tmp_path / "user.nir", example_input=x)
    assert result.source_form == "train" and result.checks["mode"] == "layers"
    logits, counts = snntorch_run(result.output, x, T)  # the file read by a third-party simulator
    spikes = neuron_outputs(to_inference(model), x)
    assert torch.equal(logits.argmax(1), model(x).argmax(1))
    for name, s in spikes.items():
        want, got = float(s.sum()), float(counts[name.replace(".", "_")])
        assert want > 0 and abs(got - want) <= 1e-3 * want, (name, want, got)
    element = user_net(Spike.ELEMENT).float()
    dense = export(element, "nir", tmp_path / "element.nir", example_input=x[:8])
    assert dense.checks["mode"] == "dense" and dense.checks["spike_count_diff"] == 0


# --- one vocabulary ------------------------------------------------------------------------------------------


class Fn(nn.Module):
    """A function of the spikes, traced as the call it makes (torch.flatten, x.flatten, +, ...)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class OpNet(nn.Module):
    """neuron → (RealSpike) → op → conv or linear, direct encoding and a time-averaged output."""

    def __init__(self, op: nn.Module, coeff: bool) -> None:
        super().__init__()
        self.neuron = LIFNeuron(NeuronSpec(), T)
        self.coeff = RealSpike(Spike.CHANNEL, (2, 4, 4)) if coeff else None
        if coeff:
            nn.init.constant_(self.coeff.a, 0.5)
        self.op = op
        out = op(torch.zeros(1, 2, 4, 4))
        self.layer = nn.Conv2d(2, 3, 3, padding=1) if out.dim() == 4 else nn.Linear(out.shape[-1], 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.neuron(x.repeat(T, 1, 1, 1))
        if self.coeff is not None:
            s = self.coeff(s)
        return self.layer(self.op(s)).flatten(1).unflatten(0, (T, -1)).mean(0)


OPS = {  # name -> (op, carried through by design)
    "Identity": (nn.Identity(), True), "Dropout": (nn.Dropout(), True), "Dropout2d": (nn.Dropout2d(), True),
    "AlphaDropout": (nn.AlphaDropout(), True), "AvgPool2d": (nn.AvgPool2d(2), True),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d(2), True), "MaxPool2d": (nn.MaxPool2d(2), True),
    "AdaptiveMaxPool2d": (nn.AdaptiveMaxPool2d(2), True), "Flatten": (nn.Flatten(), True),
    "torch.flatten(x, 1)": (Fn(lambda s: torch.flatten(s, 1)), True),
    "x.flatten(start_dim=1)": (Fn(lambda s: s.flatten(start_dim=1)), True),
    "x + x": (Fn(lambda s: s + s), True), "x.add(x)": (Fn(lambda s: s.add(s)), True),
    "ReLU": (nn.ReLU(), False), "sigmoid": (Fn(torch.sigmoid), False), "Flatten(2)": (nn.Flatten(2), False),
    "torch.add(x, x, alpha=2)": (Fn(lambda s: torch.add(s, s, alpha=2)), False),
}


@pytest.mark.parametrize("name", list(OPS))
def test_every_pass_agrees_on_the_pass_through_ops(name, tmp_path):
    """reparam folds through an op exactly when energy counts spikes through it, and NIR exports it (max
    pooling aside: NIR has no max-pooling node); the expected answer is the list above, written by hand."""
    op, passes = OPS[name]
    x = torch.rand(4, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * 2
    real = OpNet(op, coeff=True).eval()
    try:
        folds = plan_folds(real)
        folded = any(f.layer == "layer" and set(f.sources) == {"coeff"} for f in folds)
    except ReparamError:
        folded = False
    (form,) = count_forms({"m": real}, [x])
    counted = next(c for c in form.layers if c.name == "layer").input == "a·spikes"
    assert folded == counted == passes, (folded, counted)
    nir = pytest.importorskip("nir")
    del nir
    from realspike_cli.core.export import ExportError, export

    binary = OpNet(op, coeff=False).eval()
    try:
        export(binary, "nir", tmp_path / "m.nir", example_input=x)
        exported = True
    except ExportError as exc:
        exported = False
        if passes:
            assert "NIR has no max-pooling node" in str(exc), exc
    assert exported == (passes and "MaxPool" not in name)


def test_walker_finds_every_spike_source_through_adds_and_pools():
    g = ModelGraph(trace(user_net(Spike.CHANNEL)))
    conv3 = next(n for n in g.gm.graph.nodes if n.target == "conv3")
    found = g.spike_inputs(conv3.args[0])
    assert not found.others and not found.mixed_max_pools
    terms = {(t.source.target, t.coeff.target, tuple(p.target for p in t.path)) for t in found.terms}
    assert terms == {("neuron2", "coeff2", ("pool",)), ("act1.neuron", "act1.coeff", ("pool",))}
    stem = next(n for n in g.gm.graph.nodes if n.target == "stem.0")
    assert not g.spike_inputs(stem.args[0]).terms  # the image is not spikes
    fc = next(n for n in g.gm.graph.nodes if n.target == "fc")
    (term,) = g.spike_inputs(fc.args[0]).terms  # dropout is an identity, flatten(1) a path op
    assert [p.name for p in term.path] == ["flatten"] and g.describe(term.path[0]) == "flatten (node flatten)"


def test_max_pool_over_a_sum_is_not_a_spike_term():
    class SumPool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = LIFNeuron(NeuronSpec(), T), LIFNeuron(NeuronSpec(), T)
            self.pool, self.conv = nn.MaxPool2d(2), nn.Conv2d(2, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.pool(self.a(x) + self.b(x)))

    g = ModelGraph(trace(SumPool()))
    conv = next(n for n in g.gm.graph.nodes if n.target == "conv")
    found = g.spike_inputs(conv.args[0])
    assert not found.terms and [n.target for n in found.mixed_max_pools] == ["pool"]
    with pytest.raises(ReparamError, match="MaxPool2d pool: it pools a sum of several inputs"):
        plan_folds(SumPool())


@pytest.mark.parametrize(("code", "flat"), [
    ("torch.flatten(x, 1)", True), ("torch.flatten(x, start_dim=1)", True), ("x.flatten(1, -1)", True),
    ("x.flatten(1, end_dim=-1)", True), ("torch.flatten(x)", False), ("x.flatten(2)", False),
    ("x.flatten(0, 1)", False),
])
def test_flatten_forms(code, flat):
    fn = eval(f"lambda x: {code}")  # noqa: S307 - literal test code above
    gm = trace(Fn(fn))
    (node,) = [n for n in gm.graph.nodes if n.op in ("call_function", "call_method")]
    assert is_flatten(node) is flat


# --- the spike recorder ----------------------------------------------------------------------------------------


def test_recorder_counts_what_hooks_written_here_see():
    model, x = to_inference(user_net(Spike.CHANNEL)), images()
    want = neuron_outputs(model, x)
    pool = nn.MaxPool2d(2)
    maps = {"act1 pooled": ("act1.neuron", (pool,)), "act1": ("act1.neuron", ())}
    with torch.no_grad(), SpikeRecorder(model, event_maps=maps, per_sample=True, check_alphabet=True) as rec:
        model(x)
        model(x[:2])
    s = want["act1.neuron"]
    assert rec.spikes["act1.neuron"] == float(s.sum() + s.unflatten(0, (T, -1))[:, :2].sum())
    assert rec.steps["neuron2"] == want["neuron2"].numel() * 8 // 6 and rec.shapes["act3.neuron"] == (6, 4, 4)
    assert rec.rates()["act3.neuron"] == pytest.approx(rec.spikes["act3.neuron"] / (T * 8 * 96))
    by_sample = s.unflatten(0, (T, -1)).sum((0, 2, 3, 4))
    assert torch.equal(rec.samples["act1.neuron"], torch.cat([by_sample, by_sample[:2]]))
    first = s.unflatten(0, (T, -1))[:, :2].flatten(0, 1)
    assert torch.equal(rec.maps["act1"], s.sum(0) + first.sum(0))
    assert torch.equal(rec.maps["act1 pooled"], F.max_pool2d(s, 2).sum(0) + F.max_pool2d(first, 2).sum(0))
    assert rec.non_binary == []
    assert not model.act1.neuron._forward_hooks, "hooks left behind"


def test_recorder_flags_real_valued_outputs():
    model, x = user_net(Spike.CHANNEL), images()
    with torch.no_grad(), SpikeRecorder(model, check_alphabet=True) as rec:
        model(x)
    assert rec.non_binary == ["act1.coeff", "coeff2", "act3.coeff"]
