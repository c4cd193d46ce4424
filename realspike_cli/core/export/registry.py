"""The exporter registry: format name → function that writes and validates one file (like `EXPORTERS`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realspike_cli.core.errors import UnknownNameError
from realspike_cli.core.export.common import ExportOptions
from realspike_cli.core.specs import Encoding


@dataclass
class ExportJob:
    """What an exporter gets: the inference form (float32, eval), a probe batch, where to write, and what to
    record in the file: `metadata` (JSON-safe: a checkpoint's metadata, or a description of the module) and
    the input `encoding` when it is known (None: from the model's `.spec` or the probe's rank)."""

    model: nn.Module
    probe: torch.Tensor
    probe_text: str
    path: Path
    options: ExportOptions
    metadata: dict[str, Any] = field(default_factory=dict)
    encoding: Encoding | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Exporter:
    name: str
    suffix: str
    requires: tuple[str, ...]
    description: str
    write: Callable[[ExportJob], dict[str, Any]]  # writes job.path, validates it, returns the check numbers


EXPORTERS: dict[str, Exporter] = {}


def register_exporter(
    name: str, *, suffix: str, requires: tuple[str, ...] = (), description: str = ""
) -> Callable[[Callable[[ExportJob], dict[str, Any]]], Callable[[ExportJob], dict[str, Any]]]:
    def decorate(fn: Callable[[ExportJob], dict[str, Any]]) -> Callable[[ExportJob], dict[str, Any]]:
        if name in EXPORTERS:
            raise ValueError(f"exporter {name!r} is registered twice")
        EXPORTERS[name] = Exporter(name, suffix, requires, description or (fn.__doc__ or "").strip(), fn)
        return fn

    return decorate


def exporter(name: str) -> Exporter:
    if name not in EXPORTERS:
        raise UnknownNameError("export format", name, EXPORTERS)
    return EXPORTERS[name]
