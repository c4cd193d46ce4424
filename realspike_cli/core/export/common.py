"""Shared pieces of every exporter: the inference form to export, its time-unrolled twin, probes and checks."""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realspike_cli.core.checkpoint import CheckpointMeta, load_checkpoint
from realspike_cli.core.errors import RealSpikeError
from realspike_cli.core.graph import is_spiking_neuron
from realspike_cli.core.neuron import FiringRule, LIFNeuron, unrolled_lif
from realspike_cli.core.specs import Encoding, Form, ModelSpec, NeuronSpec


class ExportError(RealSpikeError):
    """A model that a format cannot express, a missing optional package, or a failed validation."""


@dataclass
class ExportOptions:
    """Knobs shared by the exporters; each reads the ones it needs."""

    tolerance: float = 1e-4  # max relative logit difference between the export and PyTorch
    probe_images: int = 32
    data_dir: Path | None = None
    random_probe: bool = False
    dt: float = 1e-4  # NIR: the time step the discrete neurons are written for (snnTorch assumes 1e-4)
    max_dense_weights: int = 50_000_000  # NIR: element-wise models go out as dense Affine up to this size
    opset: int | None = None  # ONNX opset; None lets the exporter choose
    onnx_exporter: str = "torchscript"  # or "dynamo" (torch.export-based; ~10x slower on a small CPU)
    pooling: str = "avg"  # NIR: average pools as AvgPool2d (snnTorch reads it) or SumPool2d (Norse reads it)

    def __post_init__(self) -> None:
        choices = {"pooling": ("avg", "sum"), "onnx_exporter": ("torchscript", "dynamo")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ExportError(f"unknown {name.replace('_', ' ')} {getattr(self, name)!r} "
                                  f"(choose from: {', '.join(allowed)})")


@dataclass
class ExportResult:
    """What an exporter wrote and how it checked it."""

    format: str
    output: Path
    source_form: str
    probe: str
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "output": str(self.output), "source_form": self.source_form,
                "probe": self.probe, "checks": self.checks, "notes": self.notes}


def require(module: str, fmt: str) -> Any:
    """Import an optional dependency or fail with the one line that says how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ExportError(
            f"--format {fmt} needs the optional package {package!r}: pip install 'realspike[export]'"
        ) from None


def load_inference(path: Path) -> tuple[nn.Module, CheckpointMeta]:
    """The checkpoint's inference form (re-parameterizing a training-form checkpoint first), float32, eval."""
    from realspike_cli.core.reparam import to_inference

    model, meta = load_checkpoint(path)
    if meta.form is Form.TRAIN:
        model = to_inference(model)
    return model.float().eval(), meta


class StepLIF(nn.Module):
    """A plain LIF neuron's forward (`LIFNeuron` or `ThresholdLIF`) as plain tensor ops, one step at a time,
    so exporters can trace it: `neuron.unrolled_lif` on the neuron's `firing_rule()` — binary or ternary
    spikes, scalar or per-channel thresholds, hard or soft reset. For a LIFNeuron it is the eager kernel's
    arithmetic op for op; a ThresholdLIF runs this very function. The time loop is unrolled into the graph.
    """

    def __init__(self, neuron: LIFNeuron) -> None:
        super().__init__()
        rule, self.time_steps = neuron.firing_rule(), neuron.time_steps
        self.decay = float(rule.decay)
        for name in ("upper", "lower", "reset_by"):
            value = getattr(rule, name)
            if isinstance(value, torch.Tensor):
                self.register_buffer(name, value.detach().clone())
            else:
                setattr(self, name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rule = FiringRule(self.decay, self.upper, self.lower, self.reset_by)
        return unrolled_lif(x, self.time_steps, rule)


def unrolled(model: nn.Module) -> nn.Module:
    """A copy of `model` with every spiking neuron replaced by its traceable StepLIF twin."""
    twin = copy.deepcopy(model).eval()
    for name, m in list(twin.named_modules()):
        if is_spiking_neuron(m):
            parent, _, leaf = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, leaf, StepLIF(m))
    if isinstance(twin, torch.fx.GraphModule):
        twin.recompile()
    return twin


@dataclass(frozen=True)
class Dynamics:
    """What a format with explicit time (NIR) needs beyond the layers: the neuron, T and the input encoding."""

    neuron: NeuronSpec
    time_steps: int
    encoding: Encoding


def dynamics_of(model: nn.Module, probe: torch.Tensor, encoding: Encoding | None = None) -> Dynamics:
    """Read from the modules: every spiking neuron's `.spec` and `.time_steps` (one kind for the whole net);
    the encoding as given, else the model's `.spec` (SpikingNetwork), else the probe's rank (5-D: frames)."""
    neurons = [(name, m) for name, m in model.named_modules() if is_spiking_neuron(m)]
    if not neurons:
        raise ExportError(f"{type(model).__name__} has no spiking neurons to export")
    first, m0 = neurons[0]
    for name, m in neurons[1:]:
        if (m.spec, m.time_steps) != (m0.spec, m0.time_steps):
            raise ExportError(
                f"NIR export writes one neuron model and T for the whole network, but {first} is "
                f"{m0.extra_repr()} and {name} is {m.extra_repr()}"
            )
    spec = getattr(model, "spec", None)
    if encoding is None and isinstance(spec, ModelSpec):
        encoding = spec.encoding
    if encoding is None:
        encoding = Encoding.FRAMES if probe.dim() == 5 else Encoding.DIRECT
    if encoding is Encoding.FRAMES and (probe.dim() != 5 or probe.shape[1] != m0.time_steps):
        raise ExportError(f"event frames must be [B, T={m0.time_steps}, C, H, W], got inputs of shape "
                          f"{tuple(probe.shape)}")
    return Dynamics(m0.spec, m0.time_steps, Encoding(encoding))


def compare_logits(reference: torch.Tensor, got: torch.Tensor) -> dict[str, float]:
    """max |Δ|, the logit scale, the relative difference and top-1 agreement."""
    reference, got = reference.double(), got.double()
    diff, scale = float((reference - got).abs().max()), float(reference.abs().max())
    agreement = float((reference.argmax(-1) == got.argmax(-1)).double().mean())
    return {"max_abs_diff": diff, "logit_scale": scale, "relative_diff": diff / max(scale, 1e-30),
            "agreement": agreement}


def refuse_if_different(fmt: str, checks: dict[str, float], tolerance: float, how: str) -> None:
    if not checks["relative_diff"] <= tolerance:  # also catches NaN
        raise ExportError(
            f"{fmt} export differs from PyTorch by {checks['relative_diff']:.2e} (relative, {how}), above the "
            f"tolerance {tolerance:.0e}; nothing written"
        )


def short(probe_text: str) -> str:
    """'random inputs (CIFAR-10 not found in ...)' -> 'random inputs', for one-line messages."""
    return probe_text.split(" (")[0]
