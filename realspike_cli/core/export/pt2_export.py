"""torch.export (.pt2): the unrolled inference form as an ExportedProgram, checked by loading it back."""

from __future__ import annotations

import io
import json
import warnings
from typing import Any

import torch

from realspike_cli.core.export.common import ExportError, compare_logits, refuse_if_different, short, unrolled
from realspike_cli.core.export.registry import ExportJob, register_exporter


@register_exporter(
    "pt2", suffix=".pt2",
    description="torch.export ExportedProgram (torch.export.load(...).module()), dynamic batch; the checkpoint "
    "metadata rides along as extra file realspike.json",
)
def export_pt2(job: ExportJob) -> dict[str, Any]:
    twin = unrolled(job.model)
    sample = job.probe[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(twin, (sample,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        except Exception as exc:  # torch.export raises many types; the first line says what to change
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"torch.export failed: {first}") from None
        extra = {"realspike.json": json.dumps(job.metadata, sort_keys=True, default=str)}
        buffer = io.BytesIO()  # torch.export.save warns about any path not ending in .pt2, like our temp file
        torch.export.save(program, buffer, extra_files=extra)
        job.path.write_bytes(buffer.getvalue())
        loaded = torch.export.load(io.BytesIO(job.path.read_bytes())).module()
    with torch.no_grad():
        reference, got = job.model(job.probe), loaded(job.probe)
    checks = compare_logits(reference, got)
    refuse_if_different("torch.export", checks, job.options.tolerance, f"reloaded program on {short(job.probe_text)}")
    return {**checks, "torch": torch.__version__.split("+")[0]}
