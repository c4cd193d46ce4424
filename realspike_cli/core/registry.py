"""Architecture registry: `@register_arch("name")` on a builder `fn(spec) -> nn.Module`, as in timm.

The registry imports no architecture: providers (`core.archs`, plugins) import it and register themselves;
`core.models` is the factory that makes sure they are loaded before a lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from realspike_cli.core.errors import UnknownNameError

if TYPE_CHECKING:
    from torch import nn

    from realspike_cli.core.plugins import Provider
    from realspike_cli.core.specs import ModelSpec

Builder = Callable[["ModelSpec"], "nn.Module"]


@dataclass(frozen=True)
class ArchEntry:
    name: str
    builder: Builder
    default_neuron: str
    description: str
    source: str
    provider: Provider | None = None  # the installed distribution of a plugin architecture; None: realspike

    def provider_dict(self) -> dict[str, Any] | None:
        return None if self.provider is None else self.provider.to_dict()


_ARCHS: dict[str, ArchEntry] = {}


def register_arch(
    name: str, *, default_neuron: str = "lif", description: str = "", source: str = ""
) -> Callable[[Builder], Builder]:
    """Register a model builder; a duplicate name is an error."""

    def decorate(fn: Builder) -> Builder:
        from realspike_cli.core.plugins import provider_of_module

        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} is registered twice")
        doc = description or (fn.__doc__ or "").strip()
        _ARCHS[name] = ArchEntry(name, fn, default_neuron, doc, source, provider_of_module(fn.__module__))
        return fn

    return decorate


def registered_archs() -> dict[str, ArchEntry]:
    """The architectures registered so far (a copy)."""
    return dict(_ARCHS)


def find_arch(name: str, *, required: bool = False) -> ArchEntry | None:
    """The entry of `name` if registered; with `required`, UnknownNameError ("did you mean") otherwise."""
    if name in _ARCHS or not required:
        return _ARCHS.get(name)
    raise UnknownNameError("architecture", name, _ARCHS)
