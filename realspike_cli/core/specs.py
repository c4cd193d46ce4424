"""Plain, frozen descriptions of what to build and how to train it; JSON-safe via to_dict/from_dict.

These are what a checkpoint's metadata stores, so a model can be rebuilt from the file alone.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from realspike_cli.core.errors import ConfigError


class Spike(str, Enum):
    """The spike setting: the spike alphabet and the granularity of the learnable amplitude a.

    Binary spikes o ∈ {0, 1} (Real Spike, Guo et al. ECCV 2022): `binary` is the vanilla a ≡ 1, `layer`,
    `channel` and `element` learn a at that granularity (paper Sec. 3.5). Ternary spikes s ∈ {−1, 0, 1}
    (Ternary Spike, Guo et al. AAAI 2024): `ternary` is a ≡ 1, `ternary-layer` the paper's learnable
    layer-wise a; `ternary-channel` and `ternary-element` are realspike's extension.
    """

    BINARY = "binary"
    LAYER = "layer"
    CHANNEL = "channel"
    ELEMENT = "element"
    TERNARY = "ternary"
    TERNARY_LAYER = "ternary-layer"
    TERNARY_CHANNEL = "ternary-channel"
    TERNARY_ELEMENT = "ternary-element"

    @property
    def ternary(self) -> bool:
        """True when the neurons emit spikes in {−1, 0, +1} rather than {0, 1}."""
        return self.value.startswith("ternary")

    @property
    def spike_values(self) -> tuple[float, ...]:
        """The values a neuron of this setting emits, before the amplitude a."""
        return (-1.0, 0.0, 1.0) if self.ternary else (0.0, 1.0)

    @property
    def granularity(self) -> Spike:
        """The amplitude's granularity as a binary-alphabet setting: BINARY (no a), LAYER, CHANNEL or ELEMENT."""
        if self is Spike.TERNARY:
            return Spike.BINARY
        return Spike(self.value.removeprefix("ternary-"))


class Form(str, Enum):
    """Training form (real-valued spikes a·o) or inference form (binary spikes, a folded into weights)."""

    TRAIN = "train"
    INFERENCE = "inference"


class Encoding(str, Enum):
    """How inputs enter the network: a static image at every step, or one event frame per step."""

    DIRECT = "direct"
    FRAMES = "frames"


def _choice(enum: type[Enum], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(m.value for m in enum)  # type: ignore[attr-defined]
        raise ConfigError(f"unknown {what} {value!r} (choose from: {known})") from None


NEURON_KINDS = ("lif", "if", "mpbn")
RESETS = ("hard", "soft")


def _real(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class NeuronSpec:
    """The neuron: iterative LIF (paper Eq. 1–3), IF (decay 1) or MPBN, its reset and its surrogate.

    h_t = decay·u_{t−1} + x_t. `lif`/`if` fire on h, `mpbn` (Guo et al. ICCV 2023) on BN(h), a per-channel
    BatchNorm of the membrane; `mpbn` keeps `decay` as given (decay 1: IF dynamics). The reset acts on h:
    `hard` (the paper's) sets u_t = 0 after a spike of either sign, `soft` subtracts s_t·v_th. The reset is
    differentiated as in the authors' code unless `detach_reset`. The surrogate gradient is 1 on
    |h − v_th| ≤ width/2 (0 ≤ h ≤ 1 for the defaults); ternary neurons use the union of that window and its
    mirror at −v_th (|h| ≤ 1 for the defaults). See docs/neurons.md.
    """

    kind: str = "lif"
    decay: float = 0.25
    v_th: float = 0.5
    surrogate_width: float = 1.0
    reset: str = "hard"
    detach_reset: bool = False

    def __post_init__(self) -> None:
        if self.kind not in NEURON_KINDS:
            raise ConfigError(f"unknown neuron {self.kind!r} (choose from: {', '.join(NEURON_KINDS)})")
        if self.reset not in RESETS:
            raise ConfigError(f"unknown reset {self.reset!r} (choose from: {', '.join(RESETS)})")
        if not isinstance(self.detach_reset, bool):
            raise ConfigError(f"detach_reset must be true or false, got {self.detach_reset!r}")
        for name, what in (("decay", "neuron decay"), ("v_th", "threshold"), ("surrogate_width", "surrogate width")):
            object.__setattr__(self, name, _real(getattr(self, name), what))
        if self.kind == "if" and self.decay != 1.0:
            object.__setattr__(self, "decay", 1.0)
        if not 0.0 < self.decay <= 1.0:
            raise ConfigError(f"neuron decay must be in (0, 1], got {self.decay}")
        if self.v_th <= 0:
            raise ConfigError(f"threshold must be positive, got {self.v_th}")
        if self.surrogate_width <= 0:
            raise ConfigError(f"surrogate width must be positive, got {self.surrogate_width}")

    def to_dict(self) -> dict[str, Any]:
        reset_value = 0.0 if self.reset == "hard" else None  # where a hard reset sets u; none for soft
        return {**dataclasses.asdict(self), "reset_value": reset_value, "surrogate": "rectangular"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NeuronSpec:
        """Metadata written before `reset`/`detach_reset` existed reads as the paper's hard, differentiated reset."""
        if not isinstance(d, dict):
            raise ConfigError(f"neuron settings must be an object, got {type(d).__name__}")
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a network: architecture, data shape, time steps, neuron, spike setting."""

    arch: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    time_steps: int
    spike: Spike = Spike.ELEMENT
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    encoding: Encoding = Encoding.DIRECT
    arch_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spike", _choice(Spike, self.spike, "spike setting"))
        object.__setattr__(self, "encoding", _choice(Encoding, self.encoding, "encoding"))
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        if self.time_steps < 1:
            raise ConfigError(f"time steps must be at least 1, got {self.time_steps}")
        if self.num_classes < 2:
            raise ConfigError(f"need at least 2 classes, got {self.num_classes}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": list(self.input_size),
            "time_steps": self.time_steps,
            "spike": self.spike.value,
            "neuron": self.neuron.to_dict(),
            "encoding": self.encoding.value,
            "arch_kwargs": dict(self.arch_kwargs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            arch=d["arch"],
            num_classes=int(d["num_classes"]),
            in_channels=int(d["in_channels"]),
            input_size=tuple(d["input_size"]),
            time_steps=int(d["time_steps"]),
            spike=d["spike"],
            neuron=NeuronSpec.from_dict(d["neuron"]),
            encoding=d.get("encoding", "direct"),
            arch_kwargs=dict(d.get("arch_kwargs", {})),
        )


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. Defaults follow the authors' CIFAR recipe (SGD 0.1, cosine, batch 128)."""

    epochs: int = 300
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    seed: int = 0
    amp: bool = True
    augment: str = "standard"
    val_split: float = 0.0  # > 0: hold out this fraction of the training set and select `best` on it

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_split < 1.0:  # also refuses NaN
            raise ConfigError(f"the validation split must be a fraction in [0, 1), got {self.val_split}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be non-negative, got {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
