"""ONNX: the inference form with its time steps unrolled (binary or ternary spikes between layers), checked by
onnxruntime."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realspike_cli.core.export.common import ExportError, compare_logits, refuse_if_different, require, short, unrolled
from realspike_cli.core.export.registry import ExportJob, register_exporter


@register_exporter(
    "onnx", suffix=".onnx", requires=("onnx", "onnxruntime"),
    description="ONNX graph, time steps unrolled, binary or ternary spikes; input [B, C, H, W] (frames: "
    "[B, T, C, H, W]) -> logits averaged over time; validated with onnxruntime",
)
def export_onnx(job: ExportJob) -> dict[str, Any]:
    onnx, ort = require("onnx", "onnx"), require("onnxruntime", "onnx")
    twin = unrolled(job.model)
    sample = job.probe[:2]  # trace with a batch of 2; the check below runs the whole probe (dynamic batch)
    which = job.options.onnx_exporter
    _export(twin, sample, job.path, which, job.options.opset)
    model = onnx.load(str(job.path))
    onnx.checker.check_model(model)
    onnx.helper.set_model_props(model, {"realspike": json.dumps(job.metadata, sort_keys=True, default=str)})
    onnx.save(model, str(job.path))
    got = _run(ort, job)
    with torch.no_grad():
        reference = job.model(job.probe)
    checks = compare_logits(reference, got)
    refuse_if_different("ONNX", checks, job.options.tolerance, f"onnxruntime on {short(job.probe_text)}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {**checks, "exporter": which, "opset": opset, "onnxruntime": ort.__version__}


def _export(model: nn.Module, sample: torch.Tensor, path: Path, which: str, opset: int | None) -> None:
    """torch.onnx.export quietly (it prints progress and deprecation notes); batch is the dynamic axis."""
    _check_opset(opset, which)
    names = {"input_names": ["input"], "output_names": ["logits"]}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            if which == "torchscript":  # ~10x faster than dynamo here, and exact for these ops
                torch.onnx.export(model, (sample,), str(path), dynamo=False, opset_version=opset or 17,
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **names)
            else:
                batch = torch.export.Dim("batch")
                program = torch.onnx.export(model, (sample,), dynamo=True, opset_version=opset,
                                            dynamic_shapes=({0: batch},), **names)
                program.save(str(path))
        except (ExportError, OSError):  # a full disk or an unwritable file is the writer's to report
            raise
        except Exception as exc:  # the exporters raise many types; one line is what the user can act on
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"torch.onnx.export ({which}) failed: {first}") from None


def _run(ort, job: ExportJob) -> torch.Tensor:
    """onnxruntime on the probe (a batch size other than the traced one, so the dynamic axis is exercised)."""
    settings = ort.SessionOptions()
    settings.log_severity_level = 4  # its own error lines would duplicate ours
    try:
        session = ort.InferenceSession(str(job.path), settings, providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: job.probe.numpy()})[0])
    except Exception as exc:  # onnxruntime raises its own pybind types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"onnxruntime cannot run the exported graph: {first}") from None


# The exported graph uses Unflatten (ONNX opset 13); the upper bounds are the exporters' own (torch 2.14:
# 20 for torchscript, 23 for dynamo). Checked here: an opset the exporter refuses makes torch print its
# whole IR graph to stderr before raising.
_MIN_OPSET = 13


def _check_opset(opset: int | None, which: str) -> None:
    if opset is None:
        return
    from torch.onnx import _constants

    top = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET" if which == "torchscript" else "ONNX_MAX_OPSET",
                  None)
    if opset < _MIN_OPSET or (top is not None and opset > top):
        raise ExportError(f"--opset {opset} is not available with the {which} exporter: choose from {_MIN_OPSET} "
                          f"to {top if top is not None else 'the latest'}")
