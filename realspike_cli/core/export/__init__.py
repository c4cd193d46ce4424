"""`export_checkpoint`: a checkpoint's inference form written as ONNX, NIR or torch.export, validated first.

Nothing is written unless the file, read back by its own runtime, matches PyTorch on a probe batch.
"""

from __future__ import annotations

from pathlib import Path

from realspike_cli.core.checkpoint import atomic_write
from realspike_cli.core.export.common import ExportError, ExportOptions, ExportResult, load_inference, require
from realspike_cli.core.export.registry import EXPORTERS, ExportJob, exporter, register_exporter

# Formats register themselves on import (each keeps its optional dependency import inside its function).
from realspike_cli.core.export import nir_export as _nir  # noqa: E402,F401  isort: skip
from realspike_cli.core.export import onnx_export as _onnx  # noqa: E402,F401  isort: skip
from realspike_cli.core.export import pt2_export as _pt2  # noqa: E402,F401  isort: skip


def default_output(checkpoint: Path, fmt: str) -> Path:
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + exporter(fmt).suffix)


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str,
    output: str | Path | None = None,
    *,
    overwrite: bool = False,
    options: ExportOptions | None = None,
) -> ExportResult:
    """Re-parameterize (if needed), export to `fmt`, validate against PyTorch, then move into place."""
    from realspike_cli.core.conversion import probe_inputs

    options = options or ExportOptions()
    checkpoint = Path(checkpoint)
    entry = exporter(fmt)
    output = Path(output) if output is not None else default_output(checkpoint, fmt)
    if output.exists() and not overwrite:
        raise ExportError(f"{output} already exists; choose another -o path or pass --overwrite")
    for module in entry.requires:
        require(module, fmt)
    model, meta = load_inference(checkpoint)
    probe, probe_text = probe_inputs(meta, options.probe_images, data_dir=options.data_dir,
                                     random=options.random_probe)
    checks: dict = {}
    notes: list[str] = []

    def write(tmp: Path) -> None:  # atomic_write: temp file in the output folder, validated, then renamed
        job = ExportJob(model, meta, probe.float(), probe_text, tmp, options, notes)
        checks.update(entry.write(job))

    atomic_write(output, write, overwrite=overwrite)
    return ExportResult(fmt, output, meta.form.value, probe_text, checks, notes)


__all__ = ["EXPORTERS", "ExportError", "ExportJob", "ExportOptions", "ExportResult", "export_checkpoint",
           "register_exporter"]
