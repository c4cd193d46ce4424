"""Plain, frozen descriptions of what to build and how to train it; JSON-safe via to_dict/from_dict.

These are what a checkpoint's metadata stores, so a model can be rebuilt from the file alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from realspike_cli.core import limits as L
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
        raise ConfigError(f"unknown {what} {L.shown(value)} (choose from: {known})") from None


NEURON_KINDS = ("lif", "if", "mpbn")
RESETS = ("hard", "soft")


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
            raise ConfigError(f"unknown neuron {L.shown(self.kind)} (choose from: {', '.join(NEURON_KINDS)})")
        if self.reset not in RESETS:
            raise ConfigError(f"unknown reset {L.shown(self.reset)} (choose from: {', '.join(RESETS)})")
        L.boolean(self.detach_reset, "detach_reset")
        object.__setattr__(self, "decay", L.real(self.decay, "decay", 0.0, 1.0, low_open=True))
        object.__setattr__(self, "v_th", L.real(self.v_th, "v_th", 0.0, low_open=True))
        object.__setattr__(self, "surrogate_width", L.real(self.surrogate_width, "surrogate_width", 0.0,
                                                           low_open=True))
        if self.kind == "if" and self.decay != 1.0:
            object.__setattr__(self, "decay", 1.0)

    def to_dict(self) -> dict[str, Any]:
        reset_value = 0.0 if self.reset == "hard" else None  # where a hard reset sets u; none for soft
        return {**dataclasses.asdict(self), "reset_value": reset_value, "surrogate": "rectangular"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NeuronSpec:
        """Metadata written before `reset`/`detach_reset` existed reads as the paper's hard, differentiated reset."""
        if not isinstance(d, dict):
            raise L.InvalidValue("neuron", f"must be an object, got {type(d).__name__}")
        with L.fields_of("neuron"):
            if "kind" not in d:
                raise L.InvalidValue("kind", "is missing")
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
        L.name(self.arch, "arch")
        object.__setattr__(self, "num_classes", L.integer(self.num_classes, "num_classes", 2, L.MAX_CLASSES))
        object.__setattr__(self, "in_channels", L.integer(self.in_channels, "in_channels", 1, L.MAX_CHANNELS))
        object.__setattr__(self, "input_size", L.input_size(self.input_size))
        object.__setattr__(self, "time_steps", L.integer(self.time_steps, "time_steps", 1, L.MAX_TIME_STEPS))
        if not isinstance(self.neuron, NeuronSpec):
            raise ConfigError(f"neuron must be a NeuronSpec, got {type(self.neuron).__name__}")
        object.__setattr__(self, "arch_kwargs", _arch_kwargs(self.arch_kwargs))

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
        """Strict: every value must already have its type (no int() of 4.7 or of true); InvalidValue names
        the first field that is missing or out of range."""
        if not isinstance(d, dict):
            raise L.InvalidValue("model", f"must be an object, got {type(d).__name__}")
        for key in _REQUIRED:
            if key not in d:
                raise L.InvalidValue(key, "is missing")
        return cls(
            arch=d["arch"],
            num_classes=d["num_classes"],
            in_channels=d["in_channels"],
            input_size=d["input_size"],
            time_steps=d["time_steps"],
            spike=d["spike"],
            neuron=NeuronSpec.from_dict(d["neuron"]),
            encoding=d.get("encoding", "direct"),
            arch_kwargs=d.get("arch_kwargs", {}),
        )


_REQUIRED = ("arch", "num_classes", "in_channels", "input_size", "time_steps", "spike", "neuron")
_MAX_ARCH_KWARGS = 64


def _arch_kwargs(kwargs: Any) -> dict[str, Any]:
    """Architecture options: names -> JSON scalars (or short lists of them); `width` within L.WIDTH_RANGE."""
    if not isinstance(kwargs, dict) or len(kwargs) > _MAX_ARCH_KWARGS:
        raise L.InvalidValue("arch_kwargs", f"must be an object of at most {_MAX_ARCH_KWARGS} options, "
                                            f"got {L.shown(kwargs)}")
    if "width" in kwargs:
        kwargs = {**kwargs, "width": L.width(kwargs["width"])}
    for key, value in kwargs.items():
        field = f"arch_kwargs.{L.name(key, 'arch_kwargs key')}"
        for item in value if isinstance(value, list) and len(value) <= _MAX_ARCH_KWARGS else [value]:
            _scalar(item, field)
    return dict(kwargs)


def _scalar(value: Any, field: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        L.text(value, field)
    else:
        L.real(value, field)


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
        checked = {
            "epochs": L.integer(self.epochs, "epochs", 1, L.MAX_EPOCHS),
            "batch_size": L.integer(self.batch_size, "batch_size", 1, L.MAX_BATCH_SIZE),
            "optimizer": L.name(self.optimizer, "optimizer"),
            "lr": L.real(self.lr, "lr", 0.0, L.MAX_LR, low_open=True),
            "momentum": L.real(self.momentum, "momentum", 0.0, 1.0, high_open=True),
            "weight_decay": L.real(self.weight_decay, "weight_decay", 0.0, 1.0),
            "schedule": L.name(self.schedule, "schedule"),
            "label_smoothing": L.real(self.label_smoothing, "label_smoothing", 0.0, 1.0, high_open=True),
            "seed": L.seed(self.seed),
            "amp": L.boolean(self.amp, "amp"),
            "augment": L.name(self.augment, "augment"),
            "val_split": L.real(self.val_split, "val_split", 0.0, 1.0, high_open=True),
        }
        checked["warmup_epochs"] = L.integer(self.warmup_epochs, "warmup_epochs", 0, checked["epochs"])
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, dict):
            raise L.InvalidValue("config", f"must be an object, got {type(d).__name__}")
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
