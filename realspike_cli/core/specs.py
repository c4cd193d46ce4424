"""Plain, frozen descriptions of what to build and how to train it; JSON-safe via to_dict/from_dict.

These are what a checkpoint's metadata stores, so a model can be rebuilt from the file alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from realspike_cli.core.errors import ConfigError


class Spike(str, Enum):
    """Granularity of the Real Spike coefficient a (paper Sec. 3.5); `binary` is the vanilla a ≡ 1."""

    BINARY = "binary"
    LAYER = "layer"
    CHANNEL = "channel"
    ELEMENT = "element"


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


@dataclass(frozen=True)
class NeuronSpec:
    """Iterative LIF (paper Eq. 1–3) or IF (decay 1) with hard reset to 0 and a rectangular surrogate.

    The surrogate gradient is 1 on |u − v_th| ≤ width/2, i.e. on 0 ≤ u ≤ 1 for the defaults.
    """

    kind: str = "lif"
    decay: float = 0.25
    v_th: float = 0.5
    surrogate_width: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("lif", "if"):
            raise ConfigError(f"unknown neuron {self.kind!r} (choose from: lif, if)")
        if self.kind == "if" and self.decay != 1.0:
            object.__setattr__(self, "decay", 1.0)
        if not 0.0 < self.decay <= 1.0:
            raise ConfigError(f"neuron decay must be in (0, 1], got {self.decay}")
        if self.v_th <= 0:
            raise ConfigError(f"threshold must be positive, got {self.v_th}")
        if self.surrogate_width <= 0:
            raise ConfigError(f"surrogate width must be positive, got {self.surrogate_width}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "reset": "hard", "reset_value": 0.0, "surrogate": "rectangular"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NeuronSpec:
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
