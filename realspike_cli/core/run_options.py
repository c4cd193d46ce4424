"""How a training run executes (device, workers, backends, limits): nothing here changes the recipe."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from realspike_cli.core.errors import ConfigError
from realspike_cli.core.neuron import LIFNeuron


@dataclass(frozen=True)
class RunOptions:
    """How the loop runs (none of it changes the recipe)."""

    device: str = "auto"
    workers: int = 0
    max_steps: int | None = None  # stop (with a Stopped event) after this many steps in total
    eval_batch_size: int = 256  # per process
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA under torchrun only)
    lif_backend: str | None = None  # None: $REALSPIKE_LIF_BACKEND or "eager"; "compiled": fused inductor kernels
    channels_last: bool = False  # NHWC convs: faster on CPU and tensor cores; rounding differs slightly
    compile: bool = False  # torch.compile the training graph (minutes on CPU at the first step; eval stays eager)


def use_lif_backend(model: nn.Module, name: str | None) -> None:
    """Set on this model's neurons only: a process-wide default would leak into every later model."""
    if name is None:
        return
    from realspike_cli.core import kernels

    try:
        backend = kernels.check_backend(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for module in model.modules():
        if isinstance(module, LIFNeuron):
            module.backend = backend


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r} (choose from: auto, cpu, cuda, cuda:N)")
    return torch.device(name)
