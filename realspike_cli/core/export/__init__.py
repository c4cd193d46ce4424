"""`export` (an in-memory model) and `export_checkpoint` (a file): the inference form written as ONNX, NIR or
torch.export, validated first.

Nothing is written unless the file, read back by its own runtime, matches PyTorch on a probe batch; writes
are atomic and never replace a file unless asked.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realspike_cli.core.export.common import ExportError, ExportOptions, ExportResult, load_inference, require
from realspike_cli.core.export.registry import EXPORTERS, Exporter, ExportJob, exporter, register_exporter
from realspike_cli.core.files import atomic_write, check_output
from realspike_cli.core.graph import is_training_form, refuse_weight_wrappers
from realspike_cli.core.reparam import to_inference
from realspike_cli.core.specs import Encoding, ModelSpec

# Formats register themselves on import (each keeps its optional dependency import inside its function).
from realspike_cli.core.export import nir_export as _nir  # noqa: E402,F401  isort: skip
from realspike_cli.core.export import onnx_export as _onnx  # noqa: E402,F401  isort: skip
from realspike_cli.core.export import pt2_export as _pt2  # noqa: E402,F401  isort: skip


def default_output(checkpoint: Path, fmt: str) -> Path:
    """CKPT with the format's suffix; a folder (or an empty path, which reads as ".") is no checkpoint."""
    if not checkpoint.name or checkpoint.is_dir():
        from realspike_cli.core.errors import CheckpointError

        raise CheckpointError(f"checkpoint not found: {checkpoint} (a folder, not a .safetensors file)")
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + exporter(fmt).suffix)


def export(
    model: nn.Module,
    fmt: str,
    path: str | Path,
    *,
    example_input: torch.Tensor | None = None,
    overwrite: bool = False,
    options: ExportOptions | None = None,
    encoding: Encoding | str | None = None,
) -> ExportResult:
    """Write `model` (training or inference form, any module built from realspike layers) as `fmt`.

    A training form (RealSpike or BatchNorm inside) is re-parameterized first (`reparam.to_inference`;
    verify that fold on your data with `conversion.reparameterize`). `example_input` is the batch the
    export is traced with and validated on (real inputs make the check meaningful); without it, seeded
    random inputs of the model's `.spec` shape are used, or the export is refused. NIR reads the neuron
    and T from the neurons (`.spec`, `.time_steps`) and the encoding from `encoding`, the model's `.spec`
    or the input's rank (5-D: frames). `model` is left untouched.
    """
    options = options or ExportOptions()
    entry, path = _check_target(fmt, path, overwrite)
    spec = getattr(model, "spec", None)
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2 or not len(example_input):
            raise ExportError("example_input must be a non-empty batch tensor [B, ...]")
        probe, probe_text = example_input.detach().cpu(), f"{len(example_input)} example inputs"
    elif isinstance(spec, ModelSpec):
        from realspike_cli.core.inputs import random_inputs

        probe, probe_text = random_inputs(spec, options.probe_images), "random inputs (from the model's spec)"
    else:
        raise ExportError(f"cannot export {type(model).__name__} without example_input: pass a batch of inputs "
                          "to trace it with and validate it on")
    source_form = "train" if is_training_form(model) else "inference"
    inference = _inference_form(model)
    metadata: dict[str, Any] = {"producer": "realspike", "module": type(model).__name__, "source_form": source_form}
    if isinstance(spec, ModelSpec):
        metadata["model"] = spec.to_dict()
    if encoding is not None and encoding not in {e.value for e in Encoding} | set(Encoding):
        raise ExportError(f"unknown encoding {encoding!r} (choose from: direct, frames)")
    chosen = None if encoding is None else Encoding(encoding)
    return _write(entry, inference, probe, probe_text, path, options, metadata, chosen, source_form, overwrite)


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str,
    output: str | Path | None = None,
    *,
    overwrite: bool = False,
    options: ExportOptions | None = None,
) -> ExportResult:
    """`export` of a checkpoint's model, probed with its test images (or random inputs of its shape)."""
    from realspike_cli.core.checkpoint import load_checkpoint
    from realspike_cli.core.inputs import probe_inputs

    options = options or ExportOptions()
    checkpoint = Path(checkpoint)
    entry, output = _check_target(fmt, output if output is not None else default_output(checkpoint, fmt), overwrite)
    model, meta = load_checkpoint(checkpoint)
    probe, probe_text = probe_inputs(meta, options.probe_images, data_dir=options.data_dir,
                                     random=options.random_probe)
    inference = _inference_form(model)
    return _write(entry, inference, probe, probe_text, output, options, meta.to_dict(), meta.spec.encoding,
                  meta.form.value, overwrite)


def _check_target(fmt: str, path: str | Path, overwrite: bool) -> tuple[Exporter, Path]:
    """The format (known, its optional packages installed) and a path it may write, before any work."""
    entry, path = exporter(fmt), Path(path)
    if path.exists() and not path.is_dir() and not overwrite:
        raise ExportError(f"{path} already exists; choose another -o path or pass --overwrite")
    check_output(path, overwrite=overwrite)  # a folder, a path under a file, an unwritable folder
    for module in entry.requires:
        require(module, fmt)
    return entry, path


def _inference_form(model: nn.Module) -> nn.Module:
    """A float32 eval-mode copy of the inference form (`reparam.to_inference` first where there is a fold);
    each exporter validates its file against exactly this module."""
    refuse_weight_wrappers(model, ExportError, "export", hooks_only=True)  # such layers cannot be copied
    model = to_inference(model) if is_training_form(model) else copy.deepcopy(model)
    return model.float().eval()


def _write(entry: Exporter, model: nn.Module, probe: torch.Tensor, probe_text: str, path: Path,
           options: ExportOptions, metadata: dict[str, Any], encoding: Encoding | None, source_form: str,
           overwrite: bool) -> ExportResult:
    checks: dict[str, Any] = {}
    notes: list[str] = []

    def write(tmp: Path) -> None:  # atomic_write: temp file in the output folder, validated, then renamed
        job = ExportJob(model, probe.float(), probe_text, tmp, options, metadata, encoding, notes)
        checks.update(entry.write(job))

    atomic_write(path, write, overwrite=overwrite)
    return ExportResult(entry.name, path, source_form, probe_text, checks, notes)


__all__ = ["EXPORTERS", "ExportError", "ExportJob", "ExportOptions", "ExportResult", "export", "export_checkpoint",
           "load_inference", "register_exporter"]
