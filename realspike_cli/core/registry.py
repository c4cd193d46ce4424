"""Architecture registry: `@register_arch("name")` on a builder `fn(spec) -> nn.Module`, looked up as in timm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from realspike_cli.core.errors import UnknownNameError
from realspike_cli.core.specs import ModelSpec

Builder = Callable[[ModelSpec], nn.Module]


@dataclass(frozen=True)
class ArchEntry:
    name: str
    builder: Builder
    default_neuron: str
    description: str
    source: str


_ARCHS: dict[str, ArchEntry] = {}


def register_arch(
    name: str, *, default_neuron: str = "lif", description: str = "", source: str = ""
) -> Callable[[Builder], Builder]:
    """Register a model builder; a duplicate name is an error."""

    def decorate(fn: Builder) -> Builder:
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHS[name] = ArchEntry(name, fn, default_neuron, description or (fn.__doc__ or "").strip(), source)
        return fn

    return decorate


def _load_builtin() -> None:
    from realspike_cli.core.archs import resnet, small, vgg  # noqa: F401  (registration on import)


def list_archs() -> list[str]:
    _load_builtin()
    return sorted(_ARCHS)


def arch_entry(name: str) -> ArchEntry:
    _load_builtin()
    if name not in _ARCHS:
        raise UnknownNameError("architecture", name, _ARCHS)
    return _ARCHS[name]


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the training form of `spec.arch` for `spec`'s input shape, time steps, neuron and spike setting."""
    return arch_entry(spec.arch).builder(spec)
