"""`realspike energy`: every count equals a hand computation on tiny networks with known spikes; a trained
mnist10k model is measured on real test images in both forms; bad input is one error line."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
from torch import nn

from realspike_cli.cli.app import main
from realspike_cli.core.energy import ann_cost, count_forms
from realspike_cli.core.energy_estimate import count_operations, estimate_energy
from realspike_cli.core.energy_profiles import load_profile_file, resolve_profile
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.neuron import LIFNeuron, RealSpike
from realspike_cli.core.reparam import to_inference
from realspike_cli.core.specs import NeuronSpec, Spike

T = 2


pytestmark = pytest.mark.usefixtures("one_thread")


class Probe(nn.Module):
    """spikes = neuron(x repeated T times) → path → layer. An input of 1 fires at every step (hard reset to 0,
    threshold 0.5), an input of 0 never: the spike pattern is exactly the input's ones, T times."""

    def __init__(self, layer: nn.Module, path: tuple[nn.Module, ...] = (), coeff: RealSpike | None = None) -> None:
        super().__init__()
        self.neuron = LIFNeuron(NeuronSpec(), T)
        self.coeff, self.path, self.layer = coeff, nn.Sequential(*path), layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.neuron(torch.cat([x] * T))
        if self.coeff is not None:
            spikes = self.coeff(spikes)
        return self.layer(self.path(spikes))


def ones_at(shape: tuple[int, ...], *where: tuple[int, ...]) -> torch.Tensor:
    x = torch.zeros(1, *shape)
    for idx in where:
        x[(0, *idx)] = 1.0
    return x


def measure(model: nn.Module, x: torch.Tensor):
    (form,) = count_forms({"m": model.eval()}, [x])
    return form


def layer(form, name: str):
    return next(x for x in form.layers if x.name == name)


# Per-axis reach, worked by hand: 3×3 pad 1 stride 1 on 5: [2, 3, 3, 3, 2] (corner 2·2, edge 2·3, inside 3·3);
# 3×3 pad 1 stride 2 on 5 -> 3 outputs reading rows {-1..1}, {1..3}, {3..5}: [1, 2, 1, 2, 1];
# 3×3 pad 0 on 5 -> 3 outputs: [1, 2, 3, 2, 1].
CONV_CASES = [
    # conv, input [C, H, W], spiking positions, ACs per step
    (nn.Conv2d(2, 3, 3, 1, 1), (2, 5, 5), [(0, 0, 0), (1, 0, 2), (0, 2, 2)], 3 * (2 * 2) + 3 * (2 * 3) + 3 * (3 * 3)),
    (nn.Conv2d(2, 3, 3, 2, 1), (2, 5, 5), [(0, 1, 3), (0, 0, 0), (1, 2, 4)], 3 * (2 * 2) + 3 * (1 * 1) + 3 * (1 * 1)),
    (nn.Conv2d(2, 3, 3, 1, 0), (2, 5, 5), [(0, 0, 0), (1, 2, 2), (0, 1, 3)], 3 * 1 + 3 * 9 + 3 * (2 * 2)),
    # groups 2: a spike reaches out_channels/groups = 3 channels of its own group
    (nn.Conv2d(4, 6, 3, 1, 1, groups=2), (4, 5, 5), [(2, 2, 2), (3, 4, 4)], 3 * 9 + 3 * 4),
    # 1×1 stride 2 on 5: only even rows/columns are read; odd ones reach nothing
    (nn.Conv2d(2, 4, 1, 2, 0), (2, 5, 5), [(0, 0, 0), (1, 1, 1), (0, 4, 2)], 4 + 0 + 4),
]


@pytest.mark.parametrize("conv, shape, where, per_step", CONV_CASES)
def test_conv_fanout_by_hand(conv, shape, where, per_step):
    form = measure(Probe(conv), ones_at(shape, *where))
    (neuron,) = form.neurons
    assert neuron.spikes == T * len(where) and neuron.rate == len(where) / neuron.neurons
    c = layer(form, "layer")
    assert (c.input, c.events, c.acs, c.macs) == ("spikes", T * len(where), T * per_step, 0)


def test_pooling_is_part_of_the_synaptic_map():
    # 6×6 -avgpool 2-> 3×3 -conv 3×3 pad 1, 3 out: pooled rows reach [2, 3, 2], so rows 0-1 reach 2, 2-3 reach 3
    form = measure(Probe(nn.Conv2d(2, 3, 3, 1, 1), (nn.AvgPool2d(2),)), ones_at((2, 6, 6), (0, 0, 1), (1, 2, 3)))
    assert layer(form, "layer").acs == T * (3 * 2 * 2 + 3 * 3 * 3)
    # 5×5 -avgpool 2 (floor)-> 2×2: row/column 4 is never read, so a spike there costs nothing
    form = measure(Probe(nn.Conv2d(2, 3, 3, 1, 1), (nn.AvgPool2d(2),)), ones_at((2, 5, 5), (0, 4, 4), (0, 0, 0)))
    assert layer(form, "layer").acs == T * 3 * 2 * 2
    # overlapping 3×3/1 pool then 3×3 pad 1 conv on 5×5: a corner spike reaches pooled rows {0, 1}, then conv
    # rows {0, 1, 2}: 3 × 3 positions × 3 channels (distinct targets, not paths)
    form = measure(Probe(nn.Conv2d(1, 3, 3, 1, 1), (nn.AvgPool2d(3, 1, 1),)), ones_at((1, 5, 5), (0, 0, 0)))
    assert layer(form, "layer").acs == T * 3 * 3 * 3


def test_max_pooled_spikes_are_the_events():
    # two spikes in one 2×2 window become one event, which reaches 4 channels of a 1×1 conv
    form = measure(Probe(nn.Conv2d(1, 4, 1), (nn.MaxPool2d(2),)), ones_at((1, 4, 4), (0, 0, 0), (0, 1, 1), (0, 3, 3)))
    c = layer(form, "layer")
    assert form.neurons[0].spikes == T * 3 and (c.events, c.acs) == (T * 2, T * 2 * 4)


@pytest.mark.parametrize(
    "path, features",
    [((nn.Flatten(),), 2 * 3 * 3), ((nn.AdaptiveAvgPool2d(1), nn.Flatten()), 2), ((nn.AvgPool2d(2), nn.Flatten()), 2)],
)
def test_linear_fanout_is_out_features(path, features):
    # 3×3 -avgpool 2-> 1×1 reads rows/columns 0-1 only: the spike at (2, 2) reaches nothing there
    form = measure(Probe(nn.Linear(features, 5), path), ones_at((2, 3, 3), (0, 0, 0), (1, 1, 2), (1, 2, 2)))
    reached = 1 if isinstance(path[0], nn.AvgPool2d) else 3
    assert layer(form, "layer").acs == T * 5 * reached


class Residual(nn.Module):
    """o1 = n1(x); n2(conv(o1) + o1): the shortcut is an identity synapse into n2."""

    def __init__(self, coeff: bool) -> None:
        super().__init__()
        self.n1, self.n2 = LIFNeuron(NeuronSpec(), T), LIFNeuron(NeuronSpec(), T)
        self.coeff = RealSpike(Spike.ELEMENT, (2, 4, 4)) if coeff else None
        self.conv = nn.Conv2d(2, 2, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.n1(torch.cat([x] * T))
        if self.coeff is not None:
            o = self.coeff(o)
        return self.n2(self.conv(o) + o)


def test_residual_add_is_one_ac_per_spike_and_coefficients_make_macs():
    x = ones_at((2, 4, 4), (0, 1, 1), (1, 0, 3))  # inside: 9 positions × 2; corner: 4 × 2
    form = measure(Residual(coeff=False), x)
    assert (layer(form, "conv").acs, layer(form, "n2 (identity)").acs) == (T * (18 + 8), T * 2)
    model = Residual(coeff=True).eval()
    with torch.no_grad():
        model.coeff.a.uniform_(0.5, 1.5)
    train, inference = count_forms({"train": model, "inference": to_inference(model)}, [x])
    # training form: a·o needs a multiply per synapse; inference form: the same count, additions only
    assert (layer(train, "conv").macs, layer(train, "n2 (identity)").macs) == (T * 26, T * 2)
    assert layer(train, "conv").input == "a·spikes" and layer(train, "conv").acs == 0
    assert (layer(inference, "conv").acs, layer(inference, "n2 (identity)").acs) == (T * 26, T * 2)
    assert layer(inference, "conv").macs == 0 and layer(inference, "conv").kind == "conv (factorized)"


class Stem(nn.Module):
    """Direct encoding: conv + BN on the image once, repeated over T, then a neuron."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 2, 3, 1, 1, bias=False), nn.BatchNorm2d(2)
        self.neuron = LIFNeuron(NeuronSpec(), T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(torch.cat([self.bn(self.conv(x))] * T))


def test_first_layer_macs_are_counted_once_and_bn_per_element():
    form = measure(Stem(), torch.randn(3, 1, 4, 4))
    # 3×3 pad 1 on 4: per-axis reach [2, 3, 3, 2] = 10, so 10·10 synapses per output channel, once per image
    assert (layer(form, "conv").input, layer(form, "conv").macs) == ("analog", 2 * 10 * 10)
    assert (layer(form, "bn").input, layer(form, "bn").macs) == ("elements", 2 * 4 * 4)
    assert ann_cost(Stem(), torch.randn(1, 1, 4, 4)) == (2 * 10 * 10, 0)


def test_unshared_weights_equal_the_materialized_kernels():
    """Without padding every per-position kernel tap is a real synapse: the analytic count is the size of
    the explicit locally connected weights that `to_inference(materialize=True)` builds."""
    model = Probe(nn.Conv2d(2, 3, 3, 1, 0), coeff=RealSpike(Spike.ELEMENT, (2, 6, 6))).eval()
    x = ones_at((2, 6, 6), (0, 0, 0))
    materialized = to_inference(model, materialize=True)
    (form,) = count_forms({"train": model}, [x])
    c = layer(form, "layer")
    assert c.unshared_weights == 4 * 4 * (2 * 3 * 3) * 3 == materialized.layer.branches[0].weight.numel()
    assert c.shared_weights == 2 * 3 * 3 * 3 and c.unshared_needed


@pytest.mark.slow
def test_ann_baseline_of_an_inference_form_equals_the_training_forms():
    """`estimate_energy` counts the ANN of an inference form on its own synapses: the same numbers as on the
    training form for shared and factorized storage, for every architecture and setting (materialized
    kernels that compose a pool do not: there the architecture is rebuilt from its spec)."""
    from realspike_cli.core.models import build_model, list_archs
    from tests.conftest import tiny_spec

    for arch in list_archs():
        for spike in ("binary", "layer", "channel", "element"):
            if arch.startswith("sew") and spike == "element":
                continue  # no inference form
            spec = tiny_spec(arch, spike)
            model = build_model(spec).double().eval()
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, RealSpike):
                        m.a.uniform_(0.2, 1.5)
            x = torch.rand(1, spec.in_channels, *spec.input_size, dtype=torch.float64)
            assert ann_cost(to_inference(model), x) == ann_cost(model, x), (arch, spike)


def test_ann_baseline_of_a_materialized_form_is_rebuilt_from_its_spec():
    from realspike_cli.core.models import build_model
    from tests.conftest import tiny_spec

    spec = tiny_spec("small_convnet", "element")
    model = build_model(spec).double().eval()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    materialized = to_inference(model, materialize=True)
    assert ann_cost(materialized, x[:1]) != ann_cost(model, x[:1])  # the composed kernels read more inputs
    state = torch.get_rng_state()
    report = estimate_energy(materialized, x)
    assert (report.ann_macs, report.ann_acs) == ann_cost(model, x[:1])
    assert torch.equal(torch.get_rng_state(), state), "rebuilding the architecture moved the caller's RNG"


def test_profile_files(tmp_path):
    assert resolve_profile("45nm").e_mac_pj == 4.6 and resolve_profile("45nm").e_ac_pj == 0.9
    (tmp_path / "p.json").write_text(json.dumps({"name": "mine", "e_mac_pj": 2, "e_ac_pj": 0.5, "source": "me"}))
    (tmp_path / "p.toml").write_text('name = "mine"\ne_mac_pj = 2.0\ne_ac_pj = 0.5\n')
    for f in ("p.json", "p.toml"):
        p = load_profile_file(tmp_path / f)
        assert (p.name, p.e_mac_pj, p.e_ac_pj) == ("mine", 2.0, 0.5)
    (tmp_path / "bad.toml").write_text('name = "x"\ne_mac_pj = -1\ne_ac_pj = 1\n')
    with pytest.raises(ConfigError, match="e_mac_pj must be a positive number"):
        resolve_profile(str(tmp_path / "bad.toml"))


# --- a trained model, through the CLI ------------------------------------------------------------------------


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """20 real training steps (one epoch of 500 mnist10k digits, width 0.25, T = 2, element-wise a)."""
    from realspike_cli.core.checkpointer import Checkpointer
    from realspike_cli.core.datasets import DataSplits, load_dataset
    from realspike_cli.core.datasets.loaders import InMemoryDataset
    from realspike_cli.core.specs import TrainConfig
    from realspike_cli.core.train import RunOptions, fit
    from tests.conftest import tiny_spec

    data = load_dataset("mnist10k")

    def head(d: InMemoryDataset, n: int) -> InMemoryDataset:
        return InMemoryDataset(d.images[:n], d.labels[:n], d.mean.flatten().tolist(), d.std.flatten().tolist())

    out = tmp_path_factory.mktemp("mnist")
    cfg = TrainConfig(epochs=1, batch_size=25, lr=0.05, seed=0, augment="none", amp=False)
    spec = tiny_spec("small_convnet", "element", time_steps=T)
    fit(spec, DataSplits(data.info, head(data.train, 500), head(data.test, 100)), cfg,
        options=RunOptions(device="cpu"), callbacks=[Checkpointer(out)])
    return out / "last.safetensors"


def test_trained_mnist10k_both_forms(trained, capsys, tmp_path):
    has_plot = importlib.util.find_spec("matplotlib") is not None  # optional: realspike[plot]
    plot = ["--plot", str(tmp_path / "e.png")] if has_plot else []
    code, out, err = cli(capsys, "energy", str(trained), "--batches", "2", "--batch-size", "40",
                         "--json", str(tmp_path / "e.json"), *plot)
    assert code == 0, err
    assert not has_plot or (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "totals per image" in out and "inference form" in out
    assert not has_plot or (tmp_path / "e.png").stat().st_size > 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["inputs"] == {"source": "mnist10k test set", "images": 80, "batches": 2}
    train, inference = report["forms"]["train"], report["forms"]["inference"]
    spikes = [{n["name"]: n["spikes"] for n in f["neurons"]} for f in (train, inference)]
    assert spikes[0] == spikes[1] and all(v > 0 for v in spikes[0].values())
    # inference form: binary spikes everywhere, so the only multiplies are the stem's, on the image
    assert [x["name"] for x in inference["layers"] if x["macs"] > 0] == ["stem.0"]
    # training form: the same synaptic counts, but every a·o is a multiply (and BN is computed)
    by_name = {x["name"]: x for x in train["layers"]}
    for x in inference["layers"]:
        if x["input"] == "spikes":
            assert by_name[x["name"]]["input"] == "a·spikes" and by_name[x["name"]]["macs"] == x["acs"] > 0
    t = inference["totals"]
    assert t["energy_pj"] == pytest.approx(4.6 * t["macs"] + 0.9 * t["acs"])
    assert t["ann_ratio"] == pytest.approx(t["energy_pj"] / report["ann"]["energy_pj"])
    assert t["ann_ratio"] < train["totals"]["ann_ratio"]
    assert t["weights_unshared"] > 10 * t["weights_shared"] and t["weights_needed"] == t["weights_unshared"]
    assert "measured 2/2 batches" in err  # no terminal: a plain progress line on stderr
    assert_memory_report(report, out)


def assert_memory_report(report: dict, out: str) -> None:
    """The memory-inclusive part of a trained element-wise model's report, checked with arithmetic on the JSON."""
    assert "memory-inclusive totals per image" in out and "crossover spike rate" in out and "QNN (2-bit" in out
    mem, forms = report["memory"], report["forms"]
    assert mem["profile"]["name"] == "lemaire" and mem["qnn"]["activation_bits"] == 2  # ⌈log₂(T + 1)⌉, T = 2
    labels = [(f["form"], f["storage"]) for f in mem["forms"]]
    assert labels == [("train", "shared"), ("inference", "factorized"), ("inference", "materialized")]
    neurons = forms["inference"]["neurons"]
    rate = sum(n["spikes"] for n in neurons) / sum(n["neurons"] * n["time_steps"] for n in neurons)
    for f in mem["forms"]:
        t = f["totals"]
        # today's compute-only figure, summed from the other side (LayerCount.energy_pj of each layer)
        assert t["compute_only_pj"] == pytest.approx(forms[f["form"]]["totals"]["energy_pj"], rel=1e-12)
        assert t["memory_inclusive_pj"] == pytest.approx(t["fixed_pj"] + t["per_spike_pj"], rel=1e-12)
        assert t["memory_inclusive_pj"] > 3 * t["compute_only_pj"] and f["rate"] == pytest.approx(rate, rel=1e-12)
        assert t["lines"]["neuron updates"] > 0 and t["lines"]["spike writes"] > 0
    factorized, materialized = (f["totals"]["lines"] for f in mem["forms"][1:])
    assert materialized["weight reads"] > 2 * factorized["weight reads"] and "weight reconstruction" in factorized
    stored = [sum(x["weights_stored"] for x in f["layers"]) for f in mem["forms"][1:]]
    assert stored[1] - stored[0] == forms["inference"]["totals"]["weights_unshared"] - \
        forms["inference"]["totals"]["weights_shared"]
    for c in mem["crossovers"]:
        base = mem["qnn"] if c["baseline"].startswith("QNN") else mem["ann"]
        assert c["baseline_pj"] == pytest.approx(base["memory_inclusive_pj"], rel=1e-12)
        if c["crossover_rate"]:  # on the line E(r) = fixed + r / r₀ · per_spike, E(r*) is the baseline
            e = c["fixed_pj"] + c["crossover_rate"] / c["rate"] * c["per_spike_pj"]
            assert e == pytest.approx(c["baseline_pj"], rel=1e-9)
    assert any(a.startswith("memory preset lemaire: Lemaire et al.") for a in mem["assumptions"])


def test_cli_json_equals_python_estimate_energy(trained, capsys, tmp_path):
    """`realspike energy --json` prints exactly what `estimate_energy` returns for the same model and batches
    (the batches gathered here, independently of the CLI: the first two test batches of 40 images)."""
    import itertools

    from realspike_cli.core.checkpoint import load_checkpoint
    from realspike_cli.core.datasets import DataOptions, load_dataset
    from realspike_cli.core.datasets.loaders import BatchStream
    from realspike_cli.core.energy_estimate import count_operations, estimate_energy

    code, _, err = cli(capsys, "energy", str(trained), "--batches", "2", "--batch-size", "40",
                       "--json", str(tmp_path / "e.json"))
    assert code == 0, err
    printed = json.loads((tmp_path / "e.json").read_text())
    model, meta = load_checkpoint(trained)
    test = load_dataset("mnist10k", DataOptions(augment="none", time_steps=T)).test
    xs = [x for x, _ in itertools.islice(BatchStream(test, 40, shuffle=False), 2)]
    report = estimate_energy(model, xs, "45nm", source="mnist10k test set")
    ours = json.loads(json.dumps(report.to_dict(), default=str))
    assert {k: v for k, v in printed.items() if k not in ("checkpoint", "model", "form")} == ours
    assert ours["forms"]["inference"]["totals"]["acs"] > 0 and len(ours["notes"]) == 3
    train, inference = count_operations(model, xs)
    assert (train.form, inference.form) == ("train", "inference")
    assert inference.totals(report.profile, report.ann_energy_pj) == ours["forms"]["inference"]["totals"]


def test_estimate_energy_of_an_inference_form_and_bad_requests():
    model = Residual(coeff=True).eval()
    x = ones_at((2, 4, 4), (0, 1, 1), (1, 0, 3))
    report = estimate_energy(to_inference(model), x)
    assert [f.form for f in report.forms] == ["inference"] and report.ann_acs == 2 * 4 * 4
    assert estimate_energy(model, x, include_inference=False).forms[0].form == "train"
    with pytest.raises(ConfigError, match="already in the inference form"):
        count_operations(to_inference(model), [x], forms=("train",))
    with pytest.raises(ConfigError, match="unknown form"):
        count_operations(model, [x], forms=("ann",))
    with pytest.raises(ConfigError, match="got a str"):
        estimate_energy(model, ["not a tensor"])
    with pytest.raises(ConfigError, match="got no batches"):
        estimate_energy(model, [])


def test_energy_of_norm_wrapped_layers():
    """A parametrized layer is counted (its weights are computed); it has no inference form, which the
    report says; the old hook-based weight_norm cannot even be copied, and is refused by name."""
    import warnings

    model = Probe(nn.Conv2d(2, 3, 3, 1, 1), coeff=RealSpike(Spike.CHANNEL, (2, 5, 5))).eval()
    torch.nn.utils.parametrizations.weight_norm(model.layer)
    x = ones_at((2, 5, 5), (0, 0, 0))
    report = estimate_energy(model, x)
    assert [f.form for f in report.forms] == ["train"] and layer(report.forms[0], "layer").macs == T * 3 * 4
    assert any(n.startswith("no inference form: cannot re-parameterize: layer layer") for n in report.notes)
    old = Probe(nn.Conv2d(2, 3, 3, 1, 1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.nn.utils.weight_norm(old.layer)
    with pytest.raises(ConfigError, match=r"layer layer computes its weights through torch\.nn\.utils\.weight_norm"):
        estimate_energy(old, x)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["energy", "missing.safetensors"], "checkpoint not found: missing.safetensors"),
        (["energy", "missing.safetensors", "--profile", "45mn"], "did you mean '45nm'"),
        (["energy", "missing.safetensors", "--batches", "0"], "--batches must be at least 1, got 0"),
        (["energy", "missing.safetensors", "--profile", "nowhere.json"], "energy profile file not found"),
    ],
)
def test_bad_input_is_one_error_line(capsys, argv, expected):
    code, _, err = cli(capsys, *argv)
    assert_one_error_line(code, err, expected)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name = 'x'\ne_mac_pj = [", "not valid TOML"),
        ("name = 'x'\ne_mac_pj = 1.0\n", "missing 'e_ac_pj'"),
        ("name = 'x'\ne_mac_pj = 1.0\ne_ac_pj = 'cheap'\n", "e_ac_pj must be a positive number"),
        ("name = 'x'\ne_mac_pj = 1.0\ne_ac_pj = 1.0\ne_mac = 3\n", "unknown key 'e_mac'"),
    ],
)
def test_malformed_profile_file(capsys, tmp_path, text, expected):
    path = tmp_path / "profile.toml"
    path.write_text(text)
    code, _, err = cli(capsys, "energy", "missing.safetensors", "--profile", str(path))
    assert_one_error_line(code, err, expected)


def test_plot_without_matplotlib(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if it were not installed
    code, _, err = cli(capsys, "energy", "missing.safetensors", "--plot", "e.png")
    assert_one_error_line(code, err, "--plot needs matplotlib: pip install 'realspike[plot]'")


def assert_one_error_line(code: int, err: str, expected: str) -> None:
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[0].startswith("error:") and expected in " ".join(err.split()), err


def test_json_to_stdout_is_only_json(trained, capsys):
    code, out, err = cli(capsys, "energy", str(trained), "--batches", "1", "--batch-size", "16", "--json", "-",
                         "--memory", "one-to-one")
    assert code == 0, err
    report = json.loads(out)  # nothing but the report on stdout; the progress line went to stderr
    assert "measured 1/1 batches" in err
    assert [f["storage"] for f in report["memory"]["forms"]] == ["one-to-one", "one-to-one"]


def test_outputs_are_replaced_only_with_overwrite(trained, capsys, tmp_path):
    has_plot = importlib.util.find_spec("matplotlib") is not None
    targets = [tmp_path / "e.json"] + ([tmp_path / "e.png"] if has_plot else [])
    for target in targets:
        target.write_text("keep me")
        flag = "--json" if target.suffix == ".json" else "--plot"
        # refused before anything is loaded or measured: the checkpoint does not even have to exist
        code, _, err = cli(capsys, "energy", "missing.safetensors", flag, str(target))
        assert_one_error_line(code, err, f"{target} already exists; choose another output path or pass --overwrite")
        assert target.read_text() == "keep me"
    args = [a for t in targets for a in ("--json" if t.suffix == ".json" else "--plot", str(t))]
    code, _, err = cli(capsys, "energy", str(trained), "--batches", "1", "--batch-size", "8", *args, "--overwrite")
    assert code == 0, err
    assert json.loads(targets[0].read_text())["inputs"]["images"] == 8
    assert not has_plot or targets[1].read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(t.name for t in targets)  # no temporary left


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--memory", "lemair"], "did you mean 'lemaire'"),
        (["--memory", "nowhere.toml"], "a memory profile file not found: nowhere.toml"),
        (["--json", "same.out", "--plot", "same.out"], "--json and --plot name the same file: same.out"),
        (["--json", "."], ". is a folder; give a file name"),
    ],
)
def test_bad_memory_and_output_options(capsys, extra, expected):
    code, _, err = cli(capsys, "energy", "missing.safetensors", *extra)
    assert_one_error_line(code, err, expected)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("access_bits = 32\n", "missing 'name'"),
        ('name = "m"\naccess_bits = 32\nsram_pj = [[0, 1.0]]\nweight_bits = 32\nstate_bits = 32\nspike_bits = 32\n'
         'activation_bits = 32\nsynapses = "shared"\n', "synapses must be one of as-stored, one-to-one"),
        ('name = "m"\naccess_bits = 32\nsram_pj = [[8192, 1.0], [1024, 2.0]]\nweight_bits = 32\nstate_bits = 32\n'
         'spike_bits = 32\nactivation_bits = 32\n', "sram_pj buffer sizes must increase strictly"),
        ('name = "m"\naccess_bits = 32\nsram_pj = [[0, inf]]\nweight_bits = 32\nstate_bits = 32\nspike_bits = 32\n'
         'activation_bits = 32\n', "sram_pj energies must be numbers of pJ"),
        ('name = "m"\naccess_bits = 32\nsram_pj = [[0, 1.0]]\nweight_bits = true\nstate_bits = 32\nspike_bits = 32\n'
         'activation_bits = 32\n', "weight_bits must be a whole number from 1 to 64, got True"),
        ('name = "m"\naccess_bits = 32\nsram_pj = [[0, 1.0]]\nweight_bits = 32\nstate_bits = 32\nspike_bits = 32\n'
         'activation_bits = 32\ndram_pj = -5\n', "dram_pj must be a positive number of pJ"),
        ('name = "m"\nsram = 1\n', "unknown key 'sram'"),
    ],
)
def test_malformed_memory_file(capsys, tmp_path, text, expected):
    path = tmp_path / "memory.toml"
    path.write_text(text)
    code, _, err = cli(capsys, "energy", "missing.safetensors", "--memory", str(path))
    assert_one_error_line(code, err, expected)


def test_progress_is_reported_per_batch_and_drawn_in_a_terminal(monkeypatch):
    import io

    from rich.console import Console

    from realspike_cli.cli import energy as energy_cli
    from realspike_cli.cli import render

    x = ones_at((2, 5, 5), (0, 1, 1))
    calls = []
    estimate_energy(Probe(nn.Conv2d(2, 3, 3, 1, 1)), [x, x, x], progress=lambda *args: calls.append(args))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    screen = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=screen, force_terminal=True, width=100))
    with energy_cli._progress(3, on_stderr=False) as tick:
        for done in (1, 2, 3):
            tick(done, 3)
    assert "measuring batches" in screen.getvalue()


def test_neuron_traits_read_the_alphabet_of_each_neuron():
    """Ternary neurons are counted with three spike values (so the bit-matched QNN gets log2(2T+1) bits)."""
    from realspike_cli.core.energy_counts import neuron_traits
    from realspike_cli.core.neuron import LIFNeuron
    from realspike_cli.core.specs import NeuronSpec

    assert neuron_traits(LIFNeuron(NeuronSpec(), 4)).spike_values == (0.0, 1.0)
    assert neuron_traits(LIFNeuron(NeuronSpec(), 4, ternary=True)).spike_values == (-1.0, 0.0, 1.0)
    assert not neuron_traits(LIFNeuron(NeuronSpec(kind="if"), 4)).leaky
