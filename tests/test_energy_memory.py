"""The memory-inclusive energy model (core.energy_memory, core.energy_baselines), against two oracles:

* SpikingJelly 2.0's `estimate_lemaire_energy` (a third-party implementation of Lemaire et al. 2022), run on
  a SpikingJelly twin of the same network with the same weights and inputs: where the conventions match
  (spikes whose synapses all exist, frame-style inputs) every component agrees to float rounding; where
  they differ (a spike at a padded border, the analog input buffer's size) the test states the difference
  and checks it equals the documented amount, computed with SpikingJelly's own cost function.
* hand computations on tiny networks, every count and pJ worked out in the test.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from realspike_cli.core.energy import count_forms
from realspike_cli.core.energy_memory import price_form
from realspike_cli.core.energy_profiles import resolve_profile
from realspike_cli.core.energy_profiles.memory import resolve_memory
from realspike_cli.core.neuron import LIFNeuron
from realspike_cli.core.specs import NeuronSpec

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:Lemaire formulas do not support Flatten:RuntimeWarning")]

sj = pytest.importorskip("spikingjelly.activation_based", reason="spikingjelly==2.0.0 (the dev extra)")
from spikingjelly.activation_based import functional  # noqa: E402
from spikingjelly.activation_based import layer as sj_layer  # noqa: E402
from spikingjelly.activation_based import neuron as sj_neuron  # noqa: E402
from spikingjelly.activation_based.op_counter.analytical_energy import (  # noqa: E402
    LemaireEnergyConfig,
    LemaireEnergyCostConfig,
    estimate_lemaire_energy,
)

T = 3
INT32 = resolve_profile("45nm-int32")  # E_AC = 0.1 pJ, E_MAC = 3.1 + 0.1 pJ: SpikingJelly's e_add / e_mul + e_add
LEMAIRE = resolve_memory("lemaire")
SJ_COST = LemaireEnergyCostConfig()  # its memory_cost_pj(bytes) is pJ per byte at that buffer size


def sj_if() -> nn.Module:
    return sj_neuron.IFNode(v_threshold=0.5, v_reset=0.0, step_mode="m")


def sj_lif() -> nn.Module:  # h = v − v/τ + x = 0.25·v + x for τ = 4/3: realspike's decay 0.25
    return sj_neuron.LIFNode(tau=4 / 3, decay_input=False, v_threshold=0.5, v_reset=0.0, step_mode="m")


class MLP(nn.Module):
    """IF on the (frame-style, T times repeated) input, linear, LIF, linear head with a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.n0, self.fc1 = LIFNeuron(NeuronSpec(kind="if"), T), nn.Linear(8, 6, bias=False)
        self.n1, self.fc2 = LIFNeuron(NeuronSpec(), T), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.n1(self.fc1(self.n0(torch.cat([x] * T)))))

    def twin(self) -> nn.Module:
        fc1, fc2 = sj_layer.Linear(8, 6, bias=False, step_mode="m"), sj_layer.Linear(6, 3, step_mode="m")
        fc1.load_state_dict(self.fc1.state_dict())
        fc2.load_state_dict(self.fc2.state_dict())
        return nn.Sequential(sj_if(), fc1, sj_lif(), fc2).double()


class ConvNet(nn.Module):
    """An analog 1×1 conv stem (weights 1: the IF neuron sees the image), IF, 3×3 conv (padding 1, bias),
    LIF, flatten, linear: the IF neuron spikes exactly at the image's ones, every step."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 1, bias=False)
        self.n0, self.conv = LIFNeuron(NeuronSpec(kind="if"), T), nn.Conv2d(2, 3, 3, padding=1)
        self.n1, self.flat, self.fc = LIFNeuron(NeuronSpec(), T), nn.Flatten(), nn.Linear(3 * 6 * 6, 4, bias=False)
        with torch.no_grad():
            self.stem.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.n1(self.conv(self.n0(self.stem(torch.cat([x] * T)))))))

    def twin(self) -> nn.Module:
        stem = sj_layer.Conv2d(1, 2, 1, bias=False, step_mode="m")
        conv = sj_layer.Conv2d(2, 3, 3, padding=1, step_mode="m")
        fc = sj_layer.Linear(3 * 6 * 6, 4, bias=False, step_mode="m")
        for mine, theirs in ((self.stem, stem), (self.conv, conv), (self.fc, fc)):
            theirs.load_state_dict(mine.state_dict())
        return nn.Sequential(stem, sj_if(), conv, sj_lif(), sj_layer.Flatten(step_mode="m"), fc).double()


def ours(model: nn.Module, x: torch.Tensor):
    (form,) = count_forms({"m": model.double().eval()}, [x.double()])
    return form, price_form(form, "shared", INT32, LEMAIRE)


def theirs(model: nn.Module, x: torch.Tensor):
    """SpikingJelly's report per image: its buffer sizes follow the batch, so one image at a time, summed."""
    twin = model.twin().eval()
    reports = []
    for xi in x:
        functional.reset_net(twin)  # SpikingJelly's neurons keep their membrane between calls
        frames = xi.double().unsqueeze(0).repeat(T, *[1] * xi.dim()).unsqueeze(1)  # [T, 1, ...]
        reports.append(estimate_lemaire_energy(twin, frames, config=LemaireEnergyConfig(strict=False)))
    total = {k: sum(r.breakdown_pj[k] for r in reports) / len(x) for k in reports[0].breakdown_pj}
    counts = {k: sum(r.counts[k] for r in reports) / len(x) for k in reports[0].counts}
    return total, counts, {w for r in reports for w in r.warnings}


def as_breakdown(f) -> dict[str, float]:
    """Our lines in SpikingJelly's six components (its ops are our synaptic ops, neuron updates, resets and
    bias adds; its in/out traffic our input reads and spike writes; params our weight and bias reads)."""
    lines = f.totals()["lines"]

    def total(*names: str) -> float:
        return sum(lines.get(n, 0.0) for n in names)

    return {"ops_pj": total("synaptic ops", "analog MACs", "neuron updates", "resets", "bias adds"),
            "addressing_pj": total("addressing"), "inout_pj": total("input reads", "spike writes"),
            "params_pj": total("weight reads", "bias reads"),
            "potential_pj": total("membrane reads", "membrane writes")}


def assert_components(mine: dict[str, float], sj_total: dict[str, float], expected_gap: dict[str, float]) -> None:
    for key, value in mine.items():
        assert value + expected_gap.get(key, 0.0) == pytest.approx(sj_total[key], rel=1e-9, abs=1e-9), key
    total = sum(mine.values()) + sum(expected_gap.values())
    assert total == pytest.approx(sj_total["ops_pj"] + sj_total["addressing_pj"] + sj_total["memory_pj"], rel=1e-9)


def test_mlp_agrees_with_spikingjelly_lemaire_exactly():
    torch.manual_seed(0)
    model = MLP()
    x = torch.rand(4, 8) * 1.2
    form, priced = ours(model, x)
    sj_total, sj_counts, warnings = theirs(model, x)
    assert not warnings
    assert sum(n.spikes for n in form.neurons) > 0 and all(0 < n.rate < 1 for n in form.neurons)
    assert form.total("synops") == pytest.approx(sj_counts["synop"])
    assert_components(as_breakdown(priced), sj_total, {})
    # the comparison catches a planted difference: a FIFO one event shorter moves the in/out traffic
    planted = price_form(form, "shared", INT32, resolve_memory_with(fifo_events=999))
    assert as_breakdown(planted)["inout_pj"] != pytest.approx(sj_total["inout_pj"], rel=1e-9)


def resolve_memory_with(**changes):
    import dataclasses

    return dataclasses.replace(LEMAIRE, **changes)


def interior_image() -> torch.Tensor:
    """Ones where the IF neuron is to spike (every step), −0.3 elsewhere (it never does): not a 0/1 tensor,
    which SpikingJelly would take for spikes (it tells analog from spike inputs by their values)."""
    x = torch.full((2, 1, 6, 6), -0.3)
    x[0, 0, 1, 1] = x[0, 0, 2, 4] = x[0, 0, 4, 3] = 1.0  # rows/columns 1-4: every 3×3 window around them is inside
    x[1, 0, 3, 2] = x[1, 0, 1, 4] = 1.0
    return x


def analog_buffer_gap(x: torch.Tensor) -> float:
    """SpikingJelly sizes the stem's input buffer as the whole [T, 1, C, H, W] input, we as one step's map:
    its reads (one per MAC, 4 bytes each) cost more by the price difference of the two sizes."""
    in_bytes = x[0].numel() * 4
    macs = T * 2 * x[0].numel()  # 2 output channels × 1 input channel × 1×1, per step
    return macs * 4 * (SJ_COST.memory_cost_pj(T * in_bytes) - SJ_COST.memory_cost_pj(in_bytes))


def test_conv_net_agrees_with_spikingjelly_but_for_the_analog_input_buffer():
    torch.manual_seed(1)
    model, x = ConvNet(), interior_image()
    form, priced = ours(model, x)
    sj_total, sj_counts, warnings = theirs(model, x)
    assert warnings == {"Lemaire formulas do not support Flatten; its energy is omitted."}  # nothing to count
    assert form.neurons[0].spikes == T * 2 * 5 / 2 and form.neurons[1].spikes > 0
    assert form.total("synops") == pytest.approx(sj_counts["synop"])
    # the one convention difference here, by the documented amount
    assert_components(as_breakdown(priced), sj_total, {"inout_pj": analog_buffer_gap(x)})


def test_a_spike_at_a_padded_border_is_where_the_conventions_part():
    """SpikingJelly gives every spike into a conv C_out·k² synapses (padding taps included); realspike counts
    the synapses that exist: a corner spike of a 3×3, padding 1 conv reaches 2×2 positions, not 3×3. Each of
    the 3·(9 − 4) missing synaptic operations per step costs SpikingJelly one AC, one addressing add, one
    weight read and one potential read and write; everything else agrees."""
    torch.manual_seed(2)
    model, x = ConvNet(), interior_image()
    x[0, 0, 0, 0] = 1.0  # a corner
    form, priced = ours(model, x)
    sj_total, _, _ = theirs(model, x)
    extra = T * 2 * 3 * (9 - 4) / len(x)  # per image: the corner spike, in both input channels
    params_bytes, potential_bytes = (2 * 3 * 9 + 3) * 4, 3 * 6 * 6 * 4
    gap = {"ops_pj": extra * 0.1, "addressing_pj": extra * 0.1, "inout_pj": analog_buffer_gap(x),
           "params_pj": extra * 4 * SJ_COST.memory_cost_pj(params_bytes),
           "potential_pj": 2 * extra * 4 * SJ_COST.memory_cost_pj(potential_bytes)}
    assert_components(as_breakdown(priced), sj_total, gap)
    # ours by hand: image 0 has three interior spikes (9 positions × 3 channels) and the corner (4 × 3), image 1
    # two interior ones, in both input channels, every step
    assert layer_of(form, "conv").synops == T * 2 * (3 * 27 + 12 + 2 * 27) / 2


def layer_of(form, name):
    return next(x for x in form.layers if x.name == name)


# --- hand computations ---------------------------------------------------------------------------------------

from realspike_cli.core.energy import ann_layers  # noqa: E402
from realspike_cli.core.energy_baselines import crossover, memory_report, price_ann, qnn_bits  # noqa: E402
from realspike_cli.core.energy_counts import FormCount, NeuronCount  # noqa: E402
from realspike_cli.core.energy_profiles import EnergyProfile  # noqa: E402
from realspike_cli.core.energy_profiles.memory import MemoryProfile  # noqa: E402
from realspike_cli.core.neuron import RealSpike  # noqa: E402
from realspike_cli.core.reparam import to_inference  # noqa: E402
from realspike_cli.core.specs import Spike  # noqa: E402

HAND = EnergyProfile("hand", e_mac_pj=2.0, e_ac_pj=1.0)
# an access of 32 bits to a buffer of n ≤ 1024 bytes costs n pJ; an 8-event FIFO of 32-bit events is 32 B
BYTES = MemoryProfile("bytes", access_bits=32, sram_pj=((0.0, 0.0), (1024.0, 1024.0)), weight_bits=32,
                      state_bits=32, spike_bits=32, activation_bits=32, fifo_events=8)


class Probe(nn.Module):
    """LIF (decay 0.25, threshold 0.5) on x repeated T = 2 times: an input of 1 fires at both steps, 0 never."""

    def __init__(self, layer: nn.Module, coeff: nn.Module | None = None) -> None:
        super().__init__()
        self.neuron, self.coeff, self.layer = LIFNeuron(NeuronSpec(), 2), coeff, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.neuron(torch.cat([x] * 2))
        return self.layer(o if self.coeff is None else self.coeff(o))


def hand_linear(ones: int):
    x = torch.zeros(1, 4)
    x[0, :ones] = 1.0
    torch.manual_seed(0)
    model = Probe(nn.Linear(4, 3)).eval()
    (form,) = count_forms({"m": model}, [x])
    return model, x, form, price_form(form, "shared", HAND, BYTES)


def test_every_line_of_a_tiny_network_by_hand():
    _, _, form, f = hand_linear(2)
    neuron, fc = f.neurons[0], f.layers[0]
    # neuron: 4 neurons × 2 steps = 8 updates (a MAC each, 2 pJ), 4 spikes (resets, 1 pJ; written as events
    # into the 32 B FIFO: 32 pJ), 8 state reads and 8 writes in a 16 B buffer (16 pJ each)
    assert {x.what: (x.count, x.pj) for x in neuron.lines} == {
        "neuron updates": (8, 16.0), "resets": (4, 4.0), "membrane reads": (8, 128.0), "membrane writes": (8, 128.0),
        "spike writes": (4, 128.0)}
    # linear 4 → 3 with bias: 4 events × 3 synapses = 12 ACs; each reads its weight from the 60 B buffer
    # (12 weights + 3 biases) and reads and writes its target in the 12 B potential buffer, at an address
    # computed by one add; the bias is added to 3 outputs at 2 steps and read from the weight buffer
    assert {x.what: (x.count, x.pj) for x in fc.lines} == {
        "synaptic ops": (12, 12.0), "input reads": (4, 128.0), "weight reads": (12, 720.0),
        "membrane reads": (12, 144.0), "membrane writes": (12, 144.0), "addressing": (12, 12.0),
        "bias adds": (6, 6.0), "bias reads": (6, 360.0)}
    assert (fc.weights_stored, fc.weight_buffer_bytes) == (15, 60.0)
    assert f.pj() == 404 + 1526 and f.pj(group="compute") == 12
    assert (f.pj(per_spike=False), f.pj(per_spike=True), f.rate) == (16 + 256 + 6 + 360, 1292, 0.5)


def test_baselines_and_crossover_by_hand():
    model, x, form, f = hand_linear(2)
    (ann_fc,) = ann_layers(model, x)
    ann = price_ann([ann_fc], HAND, BYTES, 32, "ANN")
    # 12 MACs (2 pJ), 4 inputs read once (16 B buffer), 12 weights read (60 B), 3 outputs written (12 B),
    # 3 bias adds and reads, 4 + 3 address adds
    assert {x.what: x.pj for x in ann.layers[0].lines} == {
        "analog MACs": 24.0, "input reads": 64.0, "weight reads": 720.0, "output writes": 36.0, "bias adds": 3.0,
        "bias reads": 180.0, "addressing": 7.0}
    assert qnn_bits(form) == 2  # ⌈log₂(2 + 1)⌉
    qnn = price_ann([ann_fc], HAND, BYTES, 2, "QNN")
    # a 2-bit activation's MAC: 1 + (2 − 1)·2/32 pJ; 2-bit values in a 1 B (inputs) and 0.75 B (outputs) buffer
    assert qnn.mac_pj == 1.0625
    assert qnn.pj() == pytest.approx(12 * 1.0625 + 4 * 1 * 2 / 32 + 720 + 3 * 0.75 * 2 / 32 + 3 + 180 + 7, rel=1e-15)
    c = crossover(f, "QNN", qnn.pj())
    assert c.crossover_rate == pytest.approx(0.5 * (qnn.pj() - 638) / 1292, rel=1e-15)
    assert c.verdict.startswith("loses")
    # the affine law, measured: one input instead of two halves every spike-driven line and nothing else
    _, _, _, half = hand_linear(1)
    assert half.pj() == pytest.approx(f.at_scale(0.5), rel=1e-15) and half.rate == 0.25
    never = crossover(f, "cheap", 600.0)
    assert never.crossover_rate == 0.0 and never.verdict.startswith("never")


def test_qnn_bits_follow_the_spike_alphabet():
    def form(values, t):
        return FormCount("f", 1, 0, [NeuronCount("n", 1, t, 0.0, 0.0, values)], [])

    binary = (0.0, 1.0)
    assert [qnn_bits(form(binary, t)) for t in (1, 2, 3, 4, 7, 8, 10)] == [1, 2, 2, 3, 3, 4, 4]
    assert qnn_bits(form((-1.0, 0.0, 1.0), 4)) == 4  # ternary: 2T + 1 = 9 levels


def element_probe() -> tuple[nn.Module, torch.Tensor]:
    """A 3×3 valid conv (1 → 2 channels) on 4×4 element-wise a·o: 2×2 outputs, so unshared storage is 4×."""
    torch.manual_seed(0)
    model = Probe(nn.Conv2d(1, 2, 3, bias=False), RealSpike(Spike.ELEMENT, (1, 4, 4))).eval()
    with torch.no_grad():
        model.coeff.a.uniform_(0.5, 1.5)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 1.0  # reach 1×1 and 2×2 output positions, × 2 channels
    return model, x


def test_factorized_and_materialized_storage_by_hand():
    model, x = element_probe()
    train, inference = count_forms({"train": model, "inference": to_inference(model)}, [x])
    (conv,) = inference.layers
    assert (conv.shared_weights, conv.unshared_weights) == (18, 72)  # 2·9 stored; 2 channels × 4 positions × 9
    assert (conv.synops, conv.events, conv.coeff_events, conv.coeff_synops) == (20, 4, 4, 20)
    lines = {s: {x.what: x.pj for x in price_form(inference, s, HAND, BYTES).layers[0].lines}
             for s in ("factorized", "materialized")}
    # factorized: weights from the 72 B kernel, a from its 64 B buffer per event, a·K formed per synapse
    assert (lines["factorized"]["weight reads"], lines["factorized"]["coefficient reads"]) == (20 * 72, 4 * 64)
    assert lines["factorized"]["weight reconstruction"] == 20 * (2.0 - 1.0)
    # materialized: one weight per synapse, a buffer H_out·W_out = 4 times the kernel's
    assert lines["materialized"]["weight reads"] == 20 * 288
    assert "coefficient reads" not in lines["materialized"] and "weight reconstruction" not in lines["materialized"]
    # the training form multiplies a·o (MACs already) through the shared kernel, reading a per event
    t = {x.what: x.pj for x in price_form(train, "shared", HAND, BYTES).layers[0].lines}
    assert (t["synaptic ops"], t["weight reads"], t["coefficient reads"]) == (20 * 2.0, 20 * 72, 4 * 64)
    assert "weight reconstruction" not in t
    # one-to-one hardware: every synapse a cell of its own in cores of 64 B, shared kernel or not
    cores = MemoryProfile(**{**BYTES.__dict__, "core_bytes": 64, "synapses": "one-to-one"})
    for form in (train, inference):
        (layer,) = price_form(form, "one-to-one", HAND, cores).layers
        assert layer.weights_stored == 72 and layer.pj(what="weight reads") == 20 * 64


def test_storages_offered_and_report():
    model, x = element_probe()
    counts = count_forms({"train": model, "inference": to_inference(model)}, [x])
    (ann,) = ann_layers(model, x)
    report = memory_report(counts, [ann], HAND, BYTES)
    assert [f.label for f in report.forms] == ["train", "inference (factorized)", "inference (materialized)"]
    assert [(c.form, c.baseline) for c in report.crossovers][:2] == [("train", "QNN (2-bit activations)"),
                                                                    ("train", "ANN (32-bit activations)")]
    materialized = count_forms({"m": to_inference(model, materialize=True)}, [x])
    assert [f.label for f in memory_report(materialized, [ann], HAND, BYTES).forms] == ["m (materialized)"]


class DirectStem(nn.Module):
    """Direct encoding: a 3×3 conv (padding 1) on the 4×4 image once, its output repeated over T = 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.neuron = nn.Conv2d(1, 2, 3, padding=1, bias=False), LIFNeuron(NeuronSpec(), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(torch.cat([self.conv(x)] * 2))


def test_direct_encoded_stem_by_hand():
    (form,) = count_forms({"m": DirectStem().eval()}, [torch.randn(1, 1, 4, 4)])
    lines = {x.what: (x.count, x.pj) for x in price_form(form, "shared", HAND, BYTES).layers[0].lines}
    # per-axis reach of a 3×3 padding-1 conv on 4 positions: [2, 3, 3, 2] = 10, so 2 · 10 · 10 = 200 MACs, each
    # reading its input from the 64 B image buffer and its weight from the 72 B kernel; addresses: 16 inputs
    # + 32 outputs + 2·9 taps; the 32 outputs are written once (128 B) and read by the neurons at both steps
    assert lines == {"analog MACs": (200, 400.0), "input reads": (200, 200 * 64.0), "weight reads": (200, 200 * 72.0),
                     "addressing": (66, 66.0), "output writes": (32, 32 * 128.0),
                     "input-current reads": (64, 64 * 128.0)}


def test_memory_prices_by_hand(tmp_path):
    import json

    dram = resolve_memory("horowitz-dram")  # Horowitz: 10 / 20 / 100 pJ per 64 bits at 8 KB / 32 KB / 1 MB
    assert [dram.price(b) for b in (100, 8192, 8192 + 12288, 32768, 1 << 20)] == [10, 10, 15, 20, 100]
    assert dram.price((1 << 20) + 1) == 1300 and dram.access_pj(32, 8192) == 5.0  # DRAM; a 32-bit value: half
    lemaire = resolve_memory("lemaire")  # SpikingJelly's: linear from 0, clamped above 1 MiB, per 32 bits
    assert (lemaire.price(4096), lemaire.price(2 << 20), lemaire.fifo_bytes()) == (5.0, 100.0, 4000.0)
    for size in (100.0, 4000.0, 20000.0, 500000.0, 3e6):  # the same as SpikingJelly's per-byte price × 4 bytes
        assert lemaire.access_pj(32, size) == pytest.approx(4 * SJ_COST.memory_cost_pj(size), rel=1e-12)
    cores = resolve_memory("one-to-one")  # any buffer is one 22 KB Tianjic core's SRAM
    assert cores.access_pj(64, 13e6) == cores.access_pj(64, 22528) == pytest.approx(10 + 10 * (22528 - 8192) / 24576)
    mine = {"name": "mine", "access_bits": 16, "sram_pj": [[0, 0], [100, 50]], "weight_bits": 8, "state_bits": 16,
            "spike_bits": 1, "activation_bits": 8, "synapses": "one-to-one", "core_bytes": 50}
    (tmp_path / "m.json").write_text(json.dumps(mine))
    m = resolve_memory(str(tmp_path / "m.json"))
    assert (m.name, m.synapses, m.access_pj(8, 1000), m.fifo_events) == ("mine", "one-to-one", 12.5, 1000)


def test_a_residual_network_is_priced_in_every_storage():
    """ResNet-20's shortcuts are identity synapses (element-wise SynapticScale weights in the inference form):
    they neither make the factorized form 'materialized' nor lose their compute-only cost."""
    from realspike_cli.core.energy_estimate import estimate_energy
    from realspike_cli.core.models import build_model
    from tests.conftest import tiny_spec

    spec = tiny_spec("resnet20", "element")
    torch.manual_seed(0)
    model = build_model(spec).eval()
    report = estimate_energy(model, torch.rand(2, 3, 32, 32))
    assert [f.label for f in report.memory.forms] == ["train", "inference (factorized)", "inference (materialized)"]
    for f in report.memory.forms:
        counted = next(c for c in report.forms if c.form == f.form)
        assert f.pj(group="compute") == pytest.approx(sum(x.energy_pj(report.profile) for x in counted.layers))
        shortcuts = [x for x in f.layers if x.kind == "identity"]
        assert shortcuts and any(x.pj(what="membrane reads") > 0 for x in shortcuts)
