"""The memory-inclusive energy model of a spiking network (Lemaire et al., ICONIP 2022, as SpikingJelly 2.0's
`estimate_lemaire_energy` implements it): beside the synaptic operations of `core.energy`, the neuron updates,
membrane-state reads and writes, spike writes, weight and input reads and the address computations of an
event-driven accelerator, each access priced by the size of the buffer it touches (`MemoryProfile`).

Every priced line is either fixed by the structure (neuron updates, the analog first layer, biases) or
proportional to the spikes (everything an event triggers), so the energy of a form is affine in a uniform
scaling of its spikes: E(k) = fixed + k · per_spike (`core.energy_baselines` solves it for the crossover rate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from realspike_cli.core.energy_counts import FormCount, LayerCount, NeuronCount
from realspike_cli.core.energy_profiles import EnergyProfile
from realspike_cli.core.energy_profiles.memory import MemoryProfile
from realspike_cli.core.errors import ConfigError

# What each priced line is, by group: "compute" is today's compute-only figure (E_MAC·MAC + E_AC·AC).
GROUPS = {
    "synaptic ops": "compute", "analog MACs": "compute", "batchnorm MACs": "compute",
    "neuron updates": "neuron", "resets": "neuron", "bias adds": "neuron",
    "addressing": "overhead", "weight reconstruction": "overhead",
    "membrane reads": "memory", "membrane writes": "memory", "spike writes": "memory", "input reads": "memory",
    "weight reads": "memory", "coefficient reads": "memory", "bias reads": "memory", "output writes": "memory",
    "input-current reads": "memory",
}
STORAGES = ("shared", "factorized", "materialized", "one-to-one")


@dataclass
class Line:
    """One priced item of a layer, per image: `count` accesses or operations costing `pj` in all."""

    what: str
    count: float
    pj: float
    per_spike: bool  # proportional to the spikes (scales with the firing rate) or fixed by the structure

    @property
    def group(self) -> str:
        return GROUPS[self.what]


@dataclass
class LayerEnergy:
    """The priced lines of one neuron or synaptic layer (or a layer of an ANN baseline), per image."""

    name: str
    kind: str
    lines: list[Line] = field(default_factory=list)
    weights_stored: int = 0  # weights (with bias) in the buffer its weight reads are priced at
    weight_buffer_bytes: float = 0.0

    def pj(self, *, group: str | None = None, what: str | None = None, per_spike: bool | None = None) -> float:
        return sum(x.pj for x in self.lines if (group is None or x.group == group) and (what is None or x.what == what)
                   and (per_spike is None or x.per_spike == per_spike))

    def count(self, what: str) -> float:
        return sum(x.count for x in self.lines if x.what == what)

    def to_dict(self) -> dict[str, Any]:
        lines = {x.what: {"count": x.count, "pj": x.pj, "per_spike": x.per_spike} for x in self.lines}
        return {"name": self.name, "kind": self.kind, "weights_stored": self.weights_stored,
                "weight_buffer_bytes": self.weight_buffer_bytes, "compute_pj": self.pj(group="compute"),
                "total_pj": self.pj(), "lines": lines}


class Pricer:
    """Adds priced lines to a layer: operations at the profile's energies, accesses at the buffer's price."""

    def __init__(self, layer: LayerEnergy, p: EnergyProfile, m: MemoryProfile) -> None:
        self.layer, self.p, self.m = layer, p, m

    def ops(self, what: str, count: float, pj_each: float, per_spike: bool) -> None:
        if count:
            self.layer.lines.append(Line(what, count, count * pj_each, per_spike))

    def access(self, what: str, count: float, bits: int, buffer_bytes: float, per_spike: bool) -> None:
        if count:
            self.layer.lines.append(Line(what, count, count * self.m.access_pj(bits, buffer_bytes), per_spike))


def price_neurons(n: NeuronCount, p: EnergyProfile, m: MemoryProfile) -> LayerEnergy:
    """A neuron layer: every neuron-step reads and writes its state and (if leaky) multiplies it by the
    decay; every spike resets one neuron (an add, as SpikingJelly counts it) and is written as an event."""
    layer = LayerEnergy(n.name, "neurons")
    price = Pricer(layer, p, m)
    steps, words = n.neurons * n.time_steps, n.state_words
    state_bytes = n.neurons * words * m.state_bits / 8
    price.ops("neuron updates", steps, p.e_mac_pj if n.leaky else 0.0, False)
    price.ops("resets", n.spikes, p.e_ac_pj, True)
    price.access("membrane reads", steps * words, m.state_bits, state_bytes, False)
    price.access("membrane writes", steps * words, m.state_bits, state_bytes, False)
    price.access("spike writes", n.spikes, m.spike_bits, m.fifo_bytes(), True)
    return layer


def weights_of(x: LayerCount, form: str, storage: str) -> tuple[int, int, bool]:
    """(weights its synaptic reads come from, coefficients read per event, multiplies a·w per synapse).

    shared: the stored kernels (and a, for the training form, which multiplies a·o anyway); factorized: K
    and a, their product formed per synaptic operation; materialized: one weight per distinct synapse where
    the coefficients vary by position; one-to-one: every synapse a weight cell of its own, a folded in."""
    if x.kind == "identity" and x.coeffs:  # the training form's a·o on a shortcut: a multiplies, no weight
        return 0, x.coeffs, False
    if storage == "one-to-one" and x.kind != "identity":
        return x.unshared_weights, (x.coeffs if form == "train" else 0), False
    if storage == "materialized" and x.unshared_needed:
        return x.unshared_weights, 0, False
    return x.shared_weights, x.coeffs, bool(x.coeffs) and form != "train"


def price_layer(x: LayerCount, form: str, storage: str, time_steps: int, p: EnergyProfile,
                m: MemoryProfile) -> LayerEnergy:
    """A synaptic layer (or the training form's BatchNorm) of one form in one weight storage."""
    weights, coeffs, on_the_fly = weights_of(x, form, storage)
    wb = m.weight_bits
    layer = LayerEnergy(x.name, x.kind, weights_stored=weights + x.bias,
                        weight_buffer_bytes=(weights + x.bias) * wb / 8)
    price = Pricer(layer, p, m)
    if x.input == "elements":  # BatchNorm, computed in the training form: read, scale and shift, write
        elements, map_bytes = x.rows * x.outputs, x.outputs * m.activation_bits / 8
        price.ops("batchnorm MACs", x.macs, p.e_mac_pj, False)
        price.access("input reads", elements, m.activation_bits, map_bytes, False)
        price.access("weight reads", 2 * elements, wb, 2 * x.bias * wb / 8, False)
        price.access("output writes", elements, m.activation_bits, map_bytes, False)
        return layer
    if x.input == "analog":
        _analog(price, x, time_steps)
    else:
        _events(price, x, weights, coeffs, on_the_fly)
    price.ops("bias adds", x.rows * x.outputs if x.bias else 0, p.e_ac_pj, False)
    price.access("bias reads", x.rows * x.outputs if x.bias else 0, wb, layer.weight_buffer_bytes, False)
    return layer


def _events(price: Pricer, x: LayerCount, weights: int, coeffs: int, on_the_fly: bool) -> None:
    """What the spikes into a layer cost: each event is read from the FIFO (and its a, where it carries
    one); each synaptic operation reads its weight and reads-modifies-writes its target's potential, at an
    address computed by one add (a conv also locates each event's first target: two multiplies)."""
    p, m = price.p, price.m
    target_bytes = x.outputs * m.state_bits / 8
    if x.synops:  # today's compute-only figure: an AC per binary spike's synapse, a MAC per a·o's
        price.layer.lines.append(Line("synaptic ops", x.synops, p.e_ac_pj * x.acs + p.e_mac_pj * x.macs, True))
    price.access("input reads", x.events, m.spike_bits, m.fifo_bytes(), True)
    price.access("weight reads", x.synops if weights else 0, m.weight_bits, price.layer.weight_buffer_bytes, True)
    price.access("coefficient reads", x.coeff_events if coeffs else 0, m.weight_bits, coeffs * m.weight_bits / 8,
                 True)
    price.ops("weight reconstruction", x.coeff_synops if on_the_fly else 0, p.e_mac_pj - p.e_ac_pj, True)
    price.access("membrane reads", x.synops, m.state_bits, target_bytes, True)
    price.access("membrane writes", x.synops, m.state_bits, target_bytes, True)
    price.ops("addressing", x.synops, p.e_ac_pj, True)
    if x.conv:
        price.layer.lines.append(Line("addressing", 2 * x.events, 2 * x.events * p.e_mac_pj, True))


def _analog(price: Pricer, x: LayerCount, time_steps: int) -> None:
    """A dense layer on the image: every MAC reads its weight, and (a conv) its input; a linear layer reads
    each input once. A direct-encoded stem runs once: its neurons read the stored result at every step."""
    p, m = price.p, price.m
    ab = m.activation_bits
    price.ops("analog MACs", x.macs, p.e_mac_pj, False)
    price.access("input reads", x.macs if x.conv else x.inputs * x.rows, ab, x.inputs * ab / 8, False)
    price.access("weight reads", x.macs, m.weight_bits, price.layer.weight_buffer_bytes, False)
    price.ops("addressing", (x.inputs + x.outputs) * x.rows + x.taps, p.e_ac_pj, False)
    if x.rows < time_steps:
        price.access("output writes", x.outputs * x.rows, ab, x.outputs * ab / 8, False)
        price.access("input-current reads", x.outputs * time_steps, ab, x.outputs * ab / 8, False)


@dataclass
class FormEnergy:
    """One form of the model in one weight storage, every layer priced: the memory-inclusive figure."""

    form: str
    storage: str
    rate: float  # measured spikes per neuron per step over the whole network
    layers: list[LayerEnergy]
    neurons: list[LayerEnergy]

    @property
    def label(self) -> str:
        return self.form if self.storage == "shared" else f"{self.form} ({self.storage})"

    def pj(self, **select: Any) -> float:
        return sum(x.pj(**select) for x in (*self.layers, *self.neurons))

    def at_scale(self, k: float) -> float:
        """The energy with every spike count multiplied by k (the firing rate k·rate), per image."""
        return self.pj(per_spike=False) + k * self.pj(per_spike=True)

    def totals(self) -> dict[str, float]:
        groups = {g: self.pj(group=g) for g in ("compute", "neuron", "overhead", "memory")}
        lines = {w: self.pj(what=w) for w in GROUPS if self.pj(what=w)}
        return {"compute_only_pj": groups["compute"], "memory_inclusive_pj": self.pj(),
                "neuron_pj": groups["neuron"], "overhead_pj": groups["overhead"], "memory_pj": groups["memory"],
                "fixed_pj": self.pj(per_spike=False), "per_spike_pj": self.pj(per_spike=True), "lines": lines}

    def to_dict(self) -> dict[str, Any]:
        return {"form": self.form, "storage": self.storage, "rate": self.rate, "totals": self.totals(),
                "layers": [x.to_dict() for x in self.layers], "neurons": [x.to_dict() for x in self.neurons]}


def storages(form: FormCount, m: MemoryProfile) -> list[str]:
    """The weight storages worth pricing for a form: where element-wise coefficients unshare a layer's
    synapses, the inference form can keep K and a (factorized) or store every synapse (materialized)."""
    if m.synapses == "one-to-one":
        return ["one-to-one"]
    if form.form == "train" or not any(x.unshared_needed for x in form.layers):
        return ["shared"]
    if any(x.unshared_needed and not x.coeffs and x.kind != "identity" for x in form.layers):  # no K to keep
        return ["materialized"]
    return ["factorized", "materialized"]


def network_rate(form: FormCount) -> float:
    steps = sum(n.neurons * n.time_steps for n in form.neurons)
    return sum(n.spikes for n in form.neurons) / steps if steps else 0.0


def price_form(form: FormCount, storage: str, p: EnergyProfile, m: MemoryProfile) -> FormEnergy:
    """Every layer and neuron of `form` priced under `p` (operations) and `m` (accesses) in `storage`."""
    if storage not in STORAGES:
        raise ConfigError(f"unknown weight storage {storage!r} (choose from: {', '.join(STORAGES)})")
    t = max((n.time_steps for n in form.neurons), default=1)
    return FormEnergy(form.form, storage, network_rate(form),
                      [price_layer(x, form.form, storage, t, p, m) for x in form.layers],
                      [price_neurons(n, p, m) for n in form.neurons])
