"""The baselines a spiking network's memory-inclusive energy is compared with, and the crossover spike rate.

* The ANN: the same network with ReLU, dense, one pass, activations at the memory preset's width.
* The quantized ANN (QNN) of Yan et al. (arXiv 2409.08290): a neuron that emits one of L spike values over T
  steps carries (L − 1)·T + 1 levels, so the bit-matched QNN has ⌈log₂((L − 1)·T + 1)⌉-bit activations
  (⌈log₂(T + 1)⌉ for binary spikes).
* The crossover rate: for a fixed structure every priced line is either fixed or proportional to the spikes
  (`core.energy_memory`), so scaling every spike count by k gives E(k) = F + k·V, with F and V measured at
  k = 1. The rate k·r₀ at which E equals the baseline B is r* = r₀·(B − F)/V.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from realspike_cli.core.energy_counts import AnnLayer, FormCount
from realspike_cli.core.energy_memory import FormEnergy, LayerEnergy, Pricer, price_form, storages
from realspike_cli.core.energy_profiles import EnergyProfile
from realspike_cli.core.energy_profiles.memory import MemoryProfile


def ceil_log2(n: int) -> int:
    """⌈log₂ n⌉ for a whole n ≥ 1, exactly."""
    return (n - 1).bit_length()


def qnn_bits(form: FormCount) -> int:
    """Activation bits of the QNN that carries as many levels as the neurons' spike counts over T steps."""
    levels = max(((len(n.spike_values) - 1) * n.time_steps + 1 for n in form.neurons), default=2)
    return max(1, ceil_log2(levels))


@dataclass
class AnnEnergy:
    """An ANN baseline priced by layer: `bits`-bit activations, `mac_pj` per MAC on a hidden activation."""

    name: str
    bits: int
    mac_pj: float
    layers: list[LayerEnergy]

    def pj(self, **select: Any) -> float:
        return sum(x.pj(**select) for x in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "activation_bits": self.bits, "mac_pj": self.mac_pj,
                "compute_only_pj": self.pj(group="compute"), "memory_inclusive_pj": self.pj(),
                "memory_pj": self.pj(group="memory"), "layers": [x.to_dict() for x in self.layers]}


def price_ann(layers: list[AnnLayer], p: EnergyProfile, m: MemoryProfile, bits: int, name: str) -> AnnEnergy:
    """Every ANN layer under the same model as the SNN's analog layer: each MAC reads its weight and (a conv)
    its input, a linear layer reads each input once, every output is written once; a residual add reads
    the shortcut. A MAC whose activation has b < w bits multiplies at b/w of the profile's multiply energy
    (an array multiplier's energy grows with the product of its operand widths)."""
    mac_pj = p.e_ac_pj + (p.e_mac_pj - p.e_ac_pj) * min(1.0, bits / m.weight_bits)
    priced = []
    for x in layers:
        layer = LayerEnergy(x.name, x.kind, weights_stored=x.weights + x.bias,
                            weight_buffer_bytes=(x.weights + x.bias) * m.weight_bits / 8)
        price, in_bits = Pricer(layer, p, m), m.activation_bits if x.analog else bits
        if x.kind == "identity":
            price.ops("synaptic ops", x.adds, p.e_ac_pj, False)
            price.access("input reads", x.adds, bits, x.adds * bits / 8, False)
        else:
            price.ops("analog MACs", x.macs, p.e_mac_pj if x.analog else mac_pj, False)
            price.access("input reads", x.macs if x.kind == "conv" else x.inputs, in_bits, x.inputs * in_bits / 8,
                         False)
            price.access("weight reads", x.macs, m.weight_bits, layer.weight_buffer_bytes, False)
            price.access("output writes", x.outputs, bits, x.outputs * bits / 8, False)
            price.ops("bias adds", x.outputs if x.bias else 0, p.e_ac_pj, False)
            price.access("bias reads", x.outputs if x.bias else 0, m.weight_bits, layer.weight_buffer_bytes, False)
            price.ops("addressing", x.inputs + x.outputs + (x.taps if x.kind == "conv" else 0), p.e_ac_pj, False)
        priced.append(layer)
    return AnnEnergy(name, bits, mac_pj, priced)


@dataclass
class Crossover:
    """The firing rate below which one SNN form beats a baseline, from E(rate) = fixed + rate/r₀ · per_spike."""

    form: str
    baseline: str
    rate: float
    crossover_rate: float | None
    fixed_pj: float
    per_spike_pj: float
    snn_pj: float
    baseline_pj: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def crossover(f: FormEnergy, baseline: str, baseline_pj: float) -> Crossover:
    fixed, per_spike, r0 = f.pj(per_spike=False), f.pj(per_spike=True), f.rate
    snn = fixed + per_spike
    if r0 <= 0 or per_spike <= 0:
        r, verdict = None, "no spikes measured: the energy cannot be extrapolated in the rate"
    elif baseline_pj <= fixed:
        r = 0.0
        verdict = (f"never: its rate-independent costs alone ({fixed * 1e-6:.4g} µJ) exceed the baseline's "
                   f"{baseline_pj * 1e-6:.4g} µJ")
    else:
        r = r0 * (baseline_pj - fixed) / per_spike
        if r >= 1:
            verdict = f"at any rate (the crossover {r:.3g} is above one spike per neuron per step)"
        else:
            verdict = f"{'wins' if r0 < r else 'loses'}: the measured rate is {r0 / r:.2f}× the crossover"
    return Crossover(f.label, baseline, r0, r, fixed, per_spike, snn, baseline_pj, verdict)


def rate_curve(f: FormEnergy, rates: list[float]) -> list[float]:
    """Energy per image (pJ) of the form at each firing rate, the measured spike pattern scaled uniformly."""
    return [f.at_scale(r / f.rate) if f.rate else f.pj() for r in rates]


@dataclass
class MemoryReport:
    """The memory-inclusive figures of every form and storage, both ANN baselines, crossovers, assumptions."""

    profile: MemoryProfile
    forms: list[FormEnergy]
    ann: AnnEnergy
    qnn: AnnEnergy
    crossovers: list[Crossover] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.to_dict(), "forms": [f.to_dict() for f in self.forms],
                "ann": self.ann.to_dict(), "qnn": self.qnn.to_dict(),
                "crossovers": [c.to_dict() for c in self.crossovers], "assumptions": list(self.assumptions)}


def memory_report(counts: list[FormCount], ann: list[AnnLayer], p: EnergyProfile, m: MemoryProfile) -> MemoryReport:
    """Price every form in every storage worth pricing, both baselines, and each form's crossover rates."""
    forms = [price_form(c, s, p, m) for c in counts for s in storages(c, m)]
    bits = qnn_bits(counts[0])
    ann_energy = price_ann(ann, p, m, m.activation_bits, f"ANN ({m.activation_bits}-bit activations)")
    qnn_energy = price_ann(ann, p, m, bits, f"QNN ({bits}-bit activations)")
    crossings = [crossover(f, b.name, b.pj()) for f in forms for b in (qnn_energy, ann_energy)]
    return MemoryReport(m, forms, ann_energy, qnn_energy, crossings, assumptions(m, counts[0], bits, p))


def assumptions(m: MemoryProfile, form: FormCount, bits: int, p: EnergyProfile) -> list[str]:
    """Every assumption behind the memory-inclusive numbers, in words, from the values actually used."""
    t = max((n.time_steps for n in form.neurons), default=1)
    buffers = (f"split over cores of {m.core_bytes:,} B, so an access costs one core's SRAM" if m.core_bytes
               else "sized to what they hold (a layer's weights and biases, its neurons' potentials, a feature map)")
    dram = f"; buffers over {m.sram_pj[-1][0]:,.0f} B are off chip at {m.dram_pj:g} pJ" if m.dram_pj else ""
    synapses = ("one-to-one: every synapse is a weight cell of its own, shared kernel or not, so unshared kernels "
                "cost nothing extra (the paper's hardware assumption, Guo et al. 2022 Fig. 4)"
                if m.synapses == "one-to-one" else
                "as stored: shared kernels are read from a buffer of the kernel's size; materialized unshared "
                "kernels from one H_out·W_out times larger; factorized ones read K and a and multiply them per synapse")
    return [
        f"memory preset {m.name}: {m.source or 'no source given'}",
        f"widths: weights, coefficients and biases {m.weight_bits} bits; membrane state {m.state_bits} bits a word; "
        f"a spike is a {m.spike_bits}-bit address event through a {m.fifo_events:,}-event FIFO; the image and the "
        f"ANN's activations {m.activation_bits} bits; moving b bits costs b/{m.access_bits} of one access",
        f"buffers are {buffers}; an access is priced by interpolating sram_pj at the buffer size{dram}",
        f"synapses {synapses}",
        "event-driven accelerator (Lemaire et al. 2022): nothing is cached — each synaptic operation reads its "
        "weight and reads and writes its target's potential, computing its address with one add (a conv also "
        "locates each event's first target: two MACs); only events are read (sparsity-aware)",
        "every neuron reads and writes its state at every step; a leaky update is one MAC, an IF update none; a "
        "spike's reset is one AC; threshold comparisons, pooling and the output average are not counted",
        f"baselines: the ANN and a QNN with ⌈log₂(T+1)⌉ = {bits}-bit activations (T = {t}; Yan et al., arXiv "
        f"2409.08290), dense, zeros not skipped, under the same model: each MAC reads its weight (and, in a conv, "
        f"its input), each output is written once; a b-bit activation's MAC costs E_AC + (E_MAC − E_AC)·b/"
        f"{m.weight_bits} = {p.e_ac_pj + (p.e_mac_pj - p.e_ac_pj) * min(1.0, bits / m.weight_bits):.4g} pJ",
        "crossover rate: every spike count scaled by one factor (the measured spatial pattern kept), so the "
        "energy is affine in the rate and solved exactly; max-pooled events are scaled with the spikes",
    ]
