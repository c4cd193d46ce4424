"""Starting a run from another checkpoint's weights, with a new optimizer and schedule (fine-tuning).

Every tensor of the new model must come from the source with the same name and shape, except Real Spike
coefficients: those the source does not have (binary → layer/channel/element) start at 1, and a coarser
coefficient (layer → channel → element) is broadcast to the finer shape, so the new model computes exactly
what the source did. Anything else (a missing tensor, a shape that differs, a source tensor
the new model has no place for) is one error naming the tensor. T may differ: no weight depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from realspike_cli.core.checkpoint import build_from_meta, file_sha256, read_meta
from realspike_cli.core.errors import CheckpointError, ConfigError
from realspike_cli.core.events import Callback
from realspike_cli.core.neuron import RealSpike
from realspike_cli.core.specs import Form

if TYPE_CHECKING:
    from realspike_cli.core.train import Trainer


@dataclass(frozen=True)
class InitReport:
    """What `init_weights_from` did: `source` names the checkpoint (file name or zoo:ENTRY), never a path."""

    source: str
    sha256: str
    copied: tuple[str, ...]  # including coefficients broadcast from a coarser setting
    set_to_one: tuple[str, ...]  # Real Spike coefficients the source lacks

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "sha256": self.sha256, "copied": len(self.copied),
                "coefficients_set_to_one": len(self.set_to_one)}


def resolve_source(name_or_path: str | Path) -> tuple[Path, str]:
    """A checkpoint file, or else a zoo entry (its training form, pulled and verified): (path, label)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path, path.name
    if path.suffix == ".safetensors" or len(path.parts) > 1:
        raise CheckpointError(f"checkpoint not found: {name_or_path}")
    from realspike_cli.core.zoo import pull

    pulled = pull(str(name_or_path), Form.TRAIN)
    return pulled.path, f"zoo:{pulled.entry.name}"


def coefficient_names(model: nn.Module) -> set[str]:
    return {f"{name}.a" if name else "a" for name, m in model.named_modules() if isinstance(m, RealSpike)}


def plan_init(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], target_coefficients: set[str],
              source_coefficients: set[str], where: str) -> tuple[list[str], list[str]]:
    """(names to copy, coefficients to set to 1), or ConfigError naming the first tensor that does not fit."""
    copy, ones = [], []
    for name, tensor in target.items():
        if name in source:
            broadcast = name in target_coefficients and _broadcasts(source[name].shape, tensor.shape)
            if tuple(source[name].shape) != tuple(tensor.shape) and not broadcast:
                raise ConfigError(f"--init-from {where}: tensor {name} has shape {tuple(source[name].shape)} there, "
                                  f"the new model needs {tuple(tensor.shape)}")
            copy.append(name)
        elif name in target_coefficients:
            ones.append(name)
        else:
            raise ConfigError(f"--init-from {where}: the new model's tensor {name} is not in the source "
                              "(another architecture, width or data set?)")
    extra = [n for n in source if n not in target]
    if extra:
        what = "Real Spike coefficient" if extra[0] in source_coefficients else "tensor"
        raise ConfigError(f"--init-from {where}: its {what} {extra[0]} has no place in the new model "
                          f"({len(extra)} such tensor(s)); choose the source's spike setting or a finer one")
    return copy, ones


def _broadcasts(small: torch.Size, big: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(small, big) == big
    except RuntimeError:
        return False


def init_weights_from(model: nn.Module, path: str | Path, label: str | None = None) -> InitReport:
    """Overwrite every parameter and buffer of `model` from a training-form checkpoint (see module doc)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_meta(path)
    where = label or path.name
    if meta.form is not Form.TRAIN:
        raise ConfigError(f"--init-from {where} is the {meta.form.value} form; start from a training-form "
                          "checkpoint (its coefficients are folded into the weights in the inference form)")
    with torch.device("meta"):  # the source's structure, only to tell its coefficients apart: no allocation
        source_coefficients = coefficient_names(build_from_meta(meta))
    try:
        source = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{where} is truncated or corrupt ({type(exc).__name__})") from None
    target = model.state_dict()
    copy, ones = plan_init(target, source, coefficient_names(model), source_coefficients, where)
    with torch.no_grad():
        for name in copy:
            target[name].copy_(source[name])
        for name in ones:
            target[name].fill_(1.0)
    return InitReport(where, file_sha256(path), tuple(copy), tuple(ones))


class InitFrom(Callback):
    """Starts a run from a checkpoint's weights; the optimizer and schedule are the new run's own.

    Place it after a Checkpointer: a resumed run keeps its own weights (and must name the same source)."""

    def __init__(self, path: str | Path, label: str | None = None) -> None:
        self.path, self.label = Path(path), label
        self.report: InitReport | None = None

    def on_start(self, trainer: Trainer) -> None:
        if trainer.resumed:
            sha = file_sha256(self.path)
            if (trainer.parent or {}).get("sha256") != sha:
                raise ConfigError("the run being resumed did not start from this --init-from checkpoint; "
                                  "resume with the same options")
            return
        self.report = init_weights_from(trainer.model, self.path, self.label)
        trainer.parent = self.report.to_dict()
