"""What `realspike energy` measures, as data: per-neuron and per-layer counts of one form of a model, the ANN
baseline's layers, and the report that gathers them (`core.energy` fills them in; `core.energy_memory` and
`core.energy_baselines` price them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from realspike_cli.core.energy_profiles import EnergyProfile
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.neuron import LIFNeuron


@dataclass(frozen=True)
class NeuronTraits:
    """What the energy model reads from a spiking neuron: the values a spike takes (every non-zero one is an
    event), the state words each neuron keeps from step to step, and whether a step multiplies (a leak)."""

    spike_values: tuple[float, ...]
    state_words: int
    leaky: bool


def neuron_traits(module: nn.Module) -> NeuronTraits:
    """The one place the energy model learns a neuron's spike alphabet and state size (a new neuron kind
    is counted once it is described here; until then it is refused by name rather than miscounted)."""
    if isinstance(module, LIFNeuron):  # one membrane potential; decay 1 is the IF neuron (no multiply)
        # Ternary neurons emit {−1, 0, +1} (a −1 is one subtraction downstream); an MPBN neuron's BatchNorm is
        # counted as a layer of its own in the training form and is a per-channel threshold at inference.
        values = tuple(float(v) for v in module.spike_values)
        return NeuronTraits(values, 1, module.spec.decay != 1.0)
    raise ConfigError(f"cannot estimate energy: no energy model for the neuron {type(module).__name__}")


@dataclass
class NeuronCount:
    """One neuron layer, per image: spikes over all T steps; rate = spikes per neuron per step."""

    name: str
    neurons: int
    time_steps: int
    spikes: float
    rate: float
    spike_values: tuple[float, ...] = (0.0, 1.0)
    state_words: int = 1
    leaky: bool = True


@dataclass
class LayerCount:
    """One synaptic layer, per image. `input`: spikes (each spike an AC per synapse), a·spikes (training form:
    a MAC per synapse), analog (dense MACs) or elements (BatchNorm, one MAC per element)."""

    name: str
    kind: str
    input: str
    events: float
    acs: float
    macs: float
    ann_macs: float
    ann_acs: float
    shared_weights: int
    unshared_weights: int
    unshared_needed: bool
    # the structure the memory model prices (core.energy_memory), per image:
    rows: int = 1  # how often the layer runs per image: T when fed spikes, 1 for a direct-encoded stem
    outputs: int = 0  # output elements per row (the membrane potentials its synaptic operations update)
    inputs: int = 0  # input elements per row
    bias: int = 0  # bias elements the layer adds
    coeffs: int = 0  # Real Spike coefficients its synaptic operations multiply by (training form, factorized)
    coeff_events: float = 0.0  # events that carry such a coefficient
    coeff_synops: float = 0.0  # and the synaptic operations they drive
    synops: float = 0.0  # synaptic operations driven by spikes (the ACs or MACs of its spike inputs)
    conv: bool = False  # a convolution: an event needs its first target's address computed
    taps: int = 0  # out_channels · kernel elements (a dense conv's address computations)
    ann_inputs: int = 0  # the ANN baseline's input and output elements and bias of this layer
    ann_outputs: int = 0
    ann_bias: int = 0

    def energy_pj(self, p: EnergyProfile) -> float:
        return p.e_mac_pj * self.macs + p.e_ac_pj * self.acs


@dataclass
class FormCount:
    """Everything counted for one form of a model over `images` inputs; all numbers are per image."""

    form: str
    images: int
    parameters: int
    neurons: list[NeuronCount] = field(default_factory=list)
    layers: list[LayerCount] = field(default_factory=list)

    def total(self, attr: str) -> float:
        return float(sum(getattr(layer, attr) for layer in self.layers))

    def totals(self, p: EnergyProfile, ann_energy_pj: float) -> dict[str, float]:
        energy = sum(layer.energy_pj(p) for layer in self.layers)
        analog = sum(layer.macs for layer in self.layers if layer.input in ("analog", "elements"))
        # The training form multiplies a·o through shared kernels; binary spikes through fixed weights (the
        # inference form, however it is stored) need one weight per synapse where a varies by position.
        needed = sum(
            x.unshared_weights if x.unshared_needed and self.form != "train" else x.shared_weights
            for x in self.layers
        )
        return {
            "spikes": sum(n.spikes for n in self.neurons), "events": self.total("events"),
            "acs": self.total("acs"), "macs": self.total("macs"), "macs_on_analog_inputs": analog,
            "energy_pj": energy, "energy_uj": energy * 1e-6,
            "ann_ratio": energy / ann_energy_pj if ann_energy_pj else float("nan"),
            "parameters": self.parameters, "weights_shared": int(self.total("shared_weights")),
            "weights_unshared": int(self.total("unshared_weights")), "weights_needed": needed,
        }


@dataclass
class EnergyReport:
    """Counts of each form measured on the same inputs, the ANN baseline, the energy profile and (`memory`)
    the memory-inclusive figures with their baselines and crossover rates."""

    profile: EnergyProfile
    forms: list[FormCount]
    ann_macs: float
    ann_acs: float
    inputs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    memory: Any = None  # core.energy_baselines.MemoryReport: the memory-inclusive figures (None: not priced)
    ann_layers: list[AnnLayer] = field(default_factory=list)  # the ANN baseline's structure, to price it again

    @property
    def ann_energy_pj(self) -> float:
        return self.profile.e_mac_pj * self.ann_macs + self.profile.e_ac_pj * self.ann_acs

    def to_dict(self) -> dict[str, Any]:
        forms = {}
        for f in self.forms:
            layers = [{**asdict(x), "energy_pj": x.energy_pj(self.profile)} for x in f.layers]
            forms[f.form] = {"images": f.images, "totals": f.totals(self.profile, self.ann_energy_pj),
                             "neurons": [asdict(n) for n in f.neurons], "layers": layers}
        ann = {"macs": self.ann_macs, "acs": self.ann_acs, "energy_pj": self.ann_energy_pj}
        out = {"profile": self.profile.to_dict(), "inputs": self.inputs, "ann": ann, "forms": forms,
               "notes": list(self.notes)}
        if self.memory is not None:
            out["memory"] = self.memory.to_dict()
        return out


@dataclass
class AnnLayer:
    """One layer of the ANN baseline (ReLU for the neurons, one pass, BatchNorm folded), per image."""

    name: str
    kind: str
    analog: bool  # reads the model's input (the image), not a hidden activation
    macs: float
    adds: float
    inputs: int
    outputs: int
    weights: int
    bias: int
    taps: int
