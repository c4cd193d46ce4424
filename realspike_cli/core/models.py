"""The model factory, as in timm: `create_model(name, ...)`, `list_models()`, `build_model(spec)`.

This module imports the built-in architectures (`core.archs`) and, at the first lookup of a name that is not
built in, the architectures of installed plugins (entry-point group `realspike.architectures`). The
registry it reads (`core.registry`) imports neither.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from realspike_cli.core import archs as _builtin  # noqa: F401  (registers the built-in architectures)
from realspike_cli.core import plugins
from realspike_cli.core.registry import ArchEntry, find_arch, register_arch, registered_archs
from realspike_cli.core.specs import ModelSpec, NeuronSpec


def _with_plugins() -> None:
    plugins.load_group(plugins.ARCH_GROUP)


def list_models() -> list[str]:
    """Every architecture name: built in and from installed plugins."""
    _with_plugins()
    return sorted(registered_archs())


list_archs = list_models  # the name the rest of realspike uses
__all__ = ["ArchEntry", "arch_entry", "build_model", "create_model", "list_archs", "list_models", "register_arch"]


def arch_entry(name: str) -> ArchEntry:
    """The registry entry of `name`, loading plugins first if it is not built in; UnknownNameError if absent."""
    entry = find_arch(name)
    if entry is None:
        _with_plugins()
    return find_arch(name, required=True)  # type: ignore[return-value]


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the training form of `spec.arch` for `spec`'s input shape, time steps, neuron and spike setting.

    Uses (and advances) the global RNG for the initial weights, as every torch module constructor does.
    """
    return arch_entry(spec.arch).builder(spec)


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: tuple[int, int] = (32, 32),
    time_steps: int = 4,
    spike: str = "element",
    neuron: str | NeuronSpec | None = None,
    seed: int | None = None,
    **arch_kwargs: Any,
) -> nn.Module:
    """A registered architecture as a training-form model, e.g. `create_model("resnet20", spike="element")`.

    `neuron` is "lif", "if" or a NeuronSpec (default: the architecture's); extra keyword arguments (such as
    `width=0.5`) go to the architecture. With `seed`, the initial weights come from that seed and the
    caller's global RNG is left as it was.
    """
    entry = arch_entry(name)
    if not isinstance(neuron, NeuronSpec):
        neuron = NeuronSpec(kind=neuron or entry.default_neuron)
    spec = ModelSpec(name, num_classes, in_channels, tuple(input_size), time_steps, spike=spike, neuron=neuron,
                     arch_kwargs=dict(arch_kwargs))
    if seed is None:
        return entry.builder(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return entry.builder(spec)
