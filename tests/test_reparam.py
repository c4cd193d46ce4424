"""The inference form (paper Eq. 9–13): exact equivalence for every architecture and spike setting, refusals
naming the layer, factorized vs materialized storage, structure-only rebuilds and a hand-checked example."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from realspike_cli.core.errors import ReparamError
from realspike_cli.core.models import arch_entry, build_model, list_archs
from realspike_cli.core.neuron import LIFNeuron, RealSpike, SpikeActivation
from realspike_cli.core.reparam import (
    RULES,
    check_equivalence,
    plan_folds,
    to_inference,
    weight_layout,
)
from realspike_cli.core.specs import Encoding, ModelSpec, NeuronSpec, Spike
from realspike_cli.core.synapses import DenseSynapse, LocallyConnected2d, MaterializedSynapse
from tests.conftest import randomize_batchnorm
from tests.test_family_folds import assert_same_network

SETTINGS = ["binary", "layer", "channel", "element"]
TOL = 1e-9  # float64: the brief asks 1e-5; real folding bugs are O(1), rounding is ~1e-16
# Equivalence is judged DIRECTLY here: training form vs inference form in float64, logits with
# torch.testing.assert_close and every neuron's spikes equal (`assert_same_network`, hooks written in the tests).
# check_equivalence, the project's own comparator, is tested on its own at the end of this file.


pytestmark = pytest.mark.usefixtures("one_thread")


def make_spec(arch: str, spike: str, size: int | None = None, **kw) -> ModelSpec:
    small = arch == "small_convnet"
    size = size or (28 if small else 32)
    neuron = NeuronSpec(kind=arch_entry(arch).default_neuron)
    width = 0.25 if small else 0.125
    return ModelSpec(arch, 10, 1 if small else 3, (size, size), 2, spike=spike, neuron=neuron,
                     arch_kwargs={"width": width}, **kw)


def randomize(model: nn.Module, seed: int, stem_positive: bool = False) -> nn.Module:
    """Non-trivial BN statistics and coefficients of both signs (a ~ U(−1.5, 1.5)), float64, eval mode."""
    g = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for name, m in model.named_modules():
            randomize_batchnorm(m, g)
            if isinstance(m, RealSpike):
                m.a.uniform_(-1.5, 1.5, generator=g)
                if stem_positive and name == "body.0.coeff":  # SEW: the stem spikes go through a max pool
                    m.a.abs_().add_(0.05)
    return model


def inputs(spec: ModelSpec, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, spec.in_channels, *spec.input_size, generator=g, dtype=torch.float64)


def spike_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: seen.__setitem__(n, o))
             for n, m in model.named_modules() if isinstance(m, LIFNeuron)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("spike", SETTINGS)
@pytest.mark.parametrize("arch", list_archs())
def test_every_architecture_is_exact(arch: str, spike: str) -> None:
    spec = make_spec(arch, spike)
    sew = arch.startswith("sew")
    model = randomize(build_model(spec), seed=1, stem_positive=sew)
    if sew and spike == "element":  # per-position coefficients cannot pass the stem max pool
        with pytest.raises(ReparamError, match=r"body\.0\.coeff \(element\) through MaxPool2d body\.1"):
            to_inference(model)
        return
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inference = to_inference(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was modified"
    assert not any(isinstance(m, (RealSpike, nn.modules.batchnorm._BatchNorm)) for m in inference.modules())
    assert weight_layout(inference) == ("factorized" if spike == "element" else "shared")

    x = inputs(spec)
    assert_same_network(model, inference, x, rtol=TOL)
    for name, spikes in spike_outputs(inference, x).items():
        assert ((spikes == 0) | (spikes == 1)).all(), name
        assert 0 < float(spikes.mean()) < 1, f"{name} never or always fires: the test would be trivial"


@pytest.mark.parametrize("arch", ["sew_resnet18", "sew_resnet34"])
@pytest.mark.parametrize("spike", ["layer", "channel"])
def test_negative_coefficients_before_max_pool_are_refused(arch: str, spike: str) -> None:
    spec = make_spec(arch, spike)
    model = randomize(build_model(spec), seed=3)
    with torch.no_grad():
        model.body[0].coeff.a.fill_(-0.5)
    with pytest.raises(ReparamError, match=r"body\.0\.coeff .*MaxPool2d body\.1.*negative"):
        to_inference(model)
    to_inference(model, check_values=False)  # structure only: values are not looked at


@pytest.mark.parametrize(
    ("arch", "size"),
    [("small_convnet", 28), ("vgg11", 32), ("resnet20", 28)],  # resnet20 at 28: ceil_mode windows overhang
)
def test_factorized_matches_materialized(arch: str, size: int) -> None:
    spec = make_spec(arch, "element", size)
    model = randomize(build_model(spec), seed=4)
    factorized, materialized = to_inference(model), to_inference(model, materialize=True)
    assert weight_layout(materialized) == "materialized"
    kinds = {type(m) for m in materialized.modules()}
    assert LocallyConnected2d in kinds and DenseSynapse in kinds
    x = inputs(spec, seed=1)
    assert_same_network(factorized, materialized, x, rtol=TOL)
    assert_same_network(model, materialized, x, rtol=TOL)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_pool_then_conv_composes_into_one_unshared_kernel(ceil_mode: bool, stride: int) -> None:
    """5×5 spikes, avgpool 2: floor mode drops row/column 4, ceil mode averages 1- and 2-element windows."""
    model = nn.Sequential(
        SpikeActivation(NeuronSpec(), 2, Spike.ELEMENT, (2, 5, 5)),
        nn.AvgPool2d(2, ceil_mode=ceil_mode),
        nn.Conv2d(2, 3, 3, stride=stride, padding=1),
    )
    model = randomize(model, seed=5)
    x = torch.rand(4, 2, 5, 5, dtype=torch.float64) * 2
    for materialize in (False, True):
        assert_same_network(model, to_inference(model, materialize=materialize), x, rtol=TOL)


@pytest.mark.parametrize(
    ("arch", "spike", "materialize"),
    [("resnet20", "element", True), ("sew_resnet18", "channel", False), ("small_convnet", "element", False),
     ("vgg11", "layer", False)],
)
def test_structure_only_rebuild_loads_strictly(arch: str, spike: str, materialize: bool) -> None:
    spec = make_spec(arch, spike)
    model = randomize(build_model(spec), seed=6, stem_positive=True)
    converted = to_inference(model, materialize=materialize)
    torch.manual_seed(123)  # different initial values: the structure must not depend on them
    rebuilt = to_inference(build_model(spec).double().eval(), materialize=materialize, check_values=False)
    rebuilt.load_state_dict(converted.state_dict(), strict=True)
    x = inputs(spec)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), converted(x))


def test_frame_encoding_converts() -> None:
    spec = make_spec("small_convnet", "element", encoding=Encoding.FRAMES)
    model = randomize(build_model(spec), seed=7)
    x = torch.rand(2, spec.time_steps, 1, 28, 28, dtype=torch.float64)
    assert_same_network(model, to_inference(model), x, rtol=TOL)


class UserNet(nn.Module):
    """Not in the registry: a residual add into a neuron, a grouped conv, functional flatten, dropout and
    three spike settings in one model."""

    def __init__(self) -> None:
        super().__init__()
        lif = NeuronSpec()
        self.conv1 = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.act1 = SpikeActivation(lif, 2, Spike.ELEMENT, (4, 6, 6))
        self.conv2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.act2 = SpikeActivation(lif, 2, Spike.CHANNEL, (4, 6, 6))
        self.conv3 = nn.Conv2d(4, 4, 1, groups=2)
        self.act3 = SpikeActivation(lif, 2, Spike.LAYER, (4, 6, 6))
        self.pool, self.drop = nn.AvgPool2d(3), nn.Dropout(0.5)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.act1(self.conv1(x))
        s2 = self.act2(self.conv2(s1) + s1)  # identity: a synaptic scale into act2's neuron
        s3 = self.act3(self.conv3(s2))  # grouped conv: channel coefficients scale within each group
        return self.fc(self.drop(torch.flatten(self.pool(s3), 1)))


def test_user_model_converts_and_converting_twice_is_a_no_op() -> None:
    model = randomize(UserNet(), seed=8)
    x = torch.rand(4, 2, 6, 6, dtype=torch.float64) * 2  # time-folded [T·B, ...] with T = 2
    inference = to_inference(model)
    assert_same_network(model, inference, x, rtol=TOL)
    rules = {f.layer: f.rule for f in plan_folds(model)}
    assert rules == {"conv1.0": "batchnorm", "conv2.0": "factorized", "conv3": "scale-inputs",
                     "fc": "scale-inputs", "act1.coeff": "synaptic-scale"}
    assert_same_network(model, to_inference(inference), x, rtol=TOL)


class Squash(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class Refused(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.act = SpikeActivation(NeuronSpec(), 2, Spike.CHANNEL, (2, 4, 4))
        self.squash, self.bn = Squash(), nn.BatchNorm2d(2)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.act(x)
        if self.kind == "sigmoid":
            return self.conv(torch.sigmoid(s))
        if self.kind == "custom":
            return self.conv(self.squash(s))
        if self.kind == "analog":
            return self.conv(s + x)
        if self.kind == "bn":
            return self.conv(self.bn(s))
        return self.conv(s) + s  # "output": real-valued spikes leave the model


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("sigmoid", r"act\.coeff \(channel\).*reach sigmoid"),
        ("custom", r"act\.coeff \(channel\).*reach mul \(node mul in squash\)"),
        ("analog", r"cannot fold into conv: its input adds spikes from act\.coeff to the non-spike value x"),
        ("bn", r"BatchNorm bn: it follows RealSpike act\.coeff"),
        ("output", r"act\.coeff \(channel\).*reach the model output"),
    ],
)
def test_unknown_consumers_of_real_spikes_are_refused(kind: str, message: str) -> None:
    with pytest.raises(ReparamError, match=message):
        to_inference(Refused(kind).eval())


def test_worked_example_by_hand() -> None:
    """3×3 spike map, element-wise a, 2×2 conv without padding: K̃[k,l,i,j] = a[k+i, l+j]·K[i,j] (docs)."""
    a = torch.tensor([[0.5, 1.0, 1.5], [2.0, -1.0, 0.5], [1.0, 1.5, 2.0]], dtype=torch.float64)
    kernel = torch.tensor([[1.0, -1.0], [2.0, 0.5]], dtype=torch.float64)
    act = SpikeActivation(NeuronSpec(), 1, Spike.ELEMENT, (1, 3, 3))
    model = nn.Sequential(act, nn.Conv2d(1, 1, 2, bias=False)).double().eval()
    with torch.no_grad():
        model[0].coeff.a.copy_(a[None])
        model[1].weight.copy_(kernel[None, None])
    with torch.inference_mode():  # as a CLI might call it; materializing still works
        inference = to_inference(model, materialize=True)
    local = inference.get_submodule("1")
    assert isinstance(local, MaterializedSynapse) and local.bias is None
    by_hand = torch.tensor([
        [[0.5, -1.0], [4.0, -0.5]],    # output (0, 0)
        [[1.0, -1.5], [-2.0, 0.25]],   # output (0, 1)
        [[2.0, 1.0], [2.0, 0.75]],     # output (1, 0)
        [[-1.0, -0.5], [3.0, 1.0]],    # output (1, 1)
    ], dtype=torch.float64)
    assert torch.equal(local.branches[0].weight[:, :, 0].reshape(4, 2, 2), by_hand)
    spikes = torch.tensor([[[[1.0, 0, 1], [0, 1, 1], [1, 0, 0]]]], dtype=torch.float64)  # ≥ v_th: o = input
    want = torch.tensor([[[[0.0, -3.25], [3.0, -1.5]]]], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model(spikes), want) and torch.equal(inference(spikes), want)


def test_plan_lists_every_fold() -> None:
    model = build_model(make_spec("sew_resnet18", "layer")).eval()
    folds = plan_folds(model)
    assert {f.rule for f in folds} <= set(RULES)
    shared = [f for f in folds if f.rule == "per-source-shared"]
    assert max(len(f.sources) for f in shared) == 3  # the ADD sum grows along a stage, reset by downsampling
    first = "body.2.1.conv1.0: per-source-shared <- body.2.0.act2.coeff, body.0.coeff via body.1"
    assert str(shared[0]) == first


# --- the project's comparator, check_equivalence, on planted differences (judged by the tests above, never
# by itself) ----------------------------------------------------------------------------------------------------


def _small_convnet_forms() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    spec = make_spec("small_convnet", "channel")
    model = randomize(build_model(spec), seed=9)
    return model, to_inference(model), inputs(spec)


def test_check_equivalence_flags_real_valued_spikes() -> None:
    model, _, x = _small_convnet_forms()
    report = check_equivalence(model, model, x)
    assert report.max_abs_diff == 0 and not report.spikes_binary
    assert report.non_binary_layers == ["body.0.coeff", "body.3.coeff", "body.8.coeff"]


def test_check_equivalence_reports_a_planted_weight_difference() -> None:
    """One parameter of the inference form moved by 1e-3: the report's max |Δ| is that 1e-3."""
    model, inference, x = _small_convnet_forms()
    assert check_equivalence(model, inference, x).max_abs_diff < TOL  # unplanted: equal
    with torch.no_grad():
        inference.get_submodule("head").bias[3] += 1e-3  # logit 3 of every image, at every step
    report = check_equivalence(model, inference, x)
    assert report.max_abs_diff == pytest.approx(1e-3, rel=1e-9)
    assert report.relative_diff > TOL and report.spikes_binary  # the spikes are still {0, 1}


def test_check_equivalence_reports_a_non_binary_spike() -> None:
    """A neuron of the inference form that emits one 0.5: named, though the logits hardly move."""
    model, inference, x = _small_convnet_forms()

    def half_spike(_m, _i, out):
        out = out.clone()
        out.view(-1)[0] = 0.5
        return out

    inference.get_submodule("body.3.neuron").register_forward_hook(half_spike)
    report = check_equivalence(model, inference, x)
    assert not report.spikes_binary and report.non_binary_layers == ["body.3.neuron"]
    assert not report.spikes_in_alphabet and report.outside_alphabet_layers == ["body.3.neuron"]


def test_check_equivalence_reports_a_missing_layer() -> None:
    """A neuron dropped from the inference form (analog values flow on), and a coefficient left unfolded."""
    model, inference, x = _small_convnet_forms()
    dropped = copy.deepcopy(inference)
    dropped.get_submodule("body.3").neuron = nn.Identity()
    report = check_equivalence(model, dropped, x)
    assert report.relative_diff > 0.01, report
    unfolded = copy.deepcopy(inference)
    coeff = RealSpike(Spike.CHANNEL, (16, 14, 14)).double()
    with torch.no_grad():
        coeff.a.uniform_(0.5, 1.5)
    unfolded.get_submodule("body.3").neuron = nn.Sequential(unfolded.get_submodule("body.3").neuron, coeff)
    report = check_equivalence(model, unfolded, x)
    assert report.relative_diff > TOL and "body.3.neuron.1" in report.outside_alphabet_layers


def _norm_wrapped(wrap) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2),
                          SpikeActivation(NeuronSpec(), 2, Spike.CHANNEL, (2, 4, 4)), nn.Conv2d(2, 2, 3, padding=1))
    wrap(model[3])
    return model.eval()


@pytest.mark.parametrize(("wrap", "message"), [
    (torch.nn.utils.parametrizations.spectral_norm, r"layer 3 .*parametrization \(_SpectralNorm\) of weight"),
    (torch.nn.utils.parametrizations.weight_norm, r"layer 3 .*parametrization \(_WeightNorm\) of weight"),
    (torch.nn.utils.weight_norm, r"layer 3 .*torch\.nn\.utils\.weight_norm \(hook-based\) of weight"),
    (torch.nn.utils.spectral_norm, r"layer 3 .*torch\.nn\.utils\.spectral_norm \(hook-based\) of weight"),
])
def test_norm_wrapped_layers_are_refused_by_name(wrap, message):
    """Their weights are recomputed on every call, so no fold can be written into them; before this check
    they gave a KeyError, a TypeError (or a failed deep copy), or a model that broke when run."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hook-based ones are deprecated
        model = _norm_wrapped(wrap)
    for convert in (to_inference, plan_folds):
        with pytest.raises(ReparamError, match=r"cannot re-parameterize: " + message + ".*bake them in first"):
            convert(model)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AdaptiveMaxPool2d(2)])
def test_adaptive_max_pool_folds_like_max_pool(pool):
    """Energy and the synapse formulas always treated AdaptiveMaxPool2d as max pooling; reparam now does too
    (max(a·o) = a·max(o) for a ≥ 0, refused for negative a)."""
    model = nn.Sequential(SpikeActivation(NeuronSpec(), 2, Spike.CHANNEL, (2, 4, 4)), pool, nn.Conv2d(2, 3, 1))
    model = randomize(model, seed=10)
    with torch.no_grad():
        model[0].coeff.a.abs_()
    x = torch.rand(4, 2, 4, 4, dtype=torch.float64) * 2
    with torch.no_grad():
        torch.testing.assert_close(to_inference(model)(x), model(x), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        model[0].coeff.a[1] = -0.5
    with pytest.raises(ReparamError, match=rf"0\.coeff \(channel\) through {type(pool).__name__} 1: 1 of its 2"):
        to_inference(model)
