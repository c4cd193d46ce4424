"""Verified re-parameterization of an in-memory model (`reparameterize`) and of a checkpoint file
(`convert_checkpoint`): convert, check the inference form on a probe, refuse unless it matches.

A checkpoint is written only if the inference form matches on the probe (logits within tolerance, every
spike in its neuron's alphabet: 0 or 1, or −1, 0, 1 for ternary spikes) and the written file reloads to the
same outputs; the output records its parent's sha256.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from realspike_cli.core.checkpoint import CheckpointMeta, file_sha256, load_checkpoint, write_checkpoint_file
from realspike_cli.core.counting import ParameterCount, count_parameters
from realspike_cli.core.errors import ConfigError, ReparamError
from realspike_cli.core.files import atomic_write, check_output
from realspike_cli.core.inputs import probe_inputs, random_inputs
from realspike_cli.core.reparam import EquivalenceReport, check_equivalence, plan_folds, to_inference, weight_layout
from realspike_cli.core.specs import Form, ModelSpec

RANDOM_PROBE_IMAGES = 16  # random inputs drawn from a model's `.spec` when no probe is given


@dataclass
class Conversion:
    """What `convert_checkpoint` did, for the summary the CLI prints."""

    source: Path
    output: Path
    layout: str
    folds_by_rule: dict[str, int]
    counts_before: ParameterCount  # the training form (core.counting: parameters, + buffer values)
    counts_after: ParameterCount  # the inference form: BatchNorm folded into biases, coefficients into weights
    unshared: bool
    probe: str
    probe_images: int
    report: EquivalenceReport


def reparameterize(
    model: nn.Module,
    inputs: torch.Tensor | None = None,
    *,
    example_input: torch.Tensor | None = None,
    materialize: bool = False,
    tolerance: float = 1e-4,
) -> tuple[nn.Module, EquivalenceReport]:
    """The verified inference form of any model built from realspike layers (`model` is left untouched).

    Converts (`reparam.to_inference`), runs both forms in float64 on `inputs` (a batch, real data is best)
    and raises ReparamError unless every spike is in its neuron's alphabet ({0, 1}; ternary: {−1, 0, 1}) and
    the logits agree within `tolerance`
    (relative). Without `inputs`, verifies on seeded random inputs shaped like `example_input`, or of the
    shape the model's `.spec` describes (SpikingNetwork); with neither it refuses. Returns the inference
    form (eval mode, the model's dtype) and the equivalence report.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    x = verification_inputs(model, inputs, example_input)
    inference = to_inference(model, materialize=materialize)
    report = check_equivalence(model, inference, x)
    refuse_if_different(report, tolerance)
    return inference, report


def verification_inputs(model: nn.Module, inputs: torch.Tensor | None, example_input: torch.Tensor | None
                        ) -> torch.Tensor:
    """`inputs`, or random ones of `example_input`'s shape, or of the model's `.spec`; else ReparamError."""
    for name, value in (("inputs", inputs), ("example_input", example_input)):
        if value is not None and not (isinstance(value, torch.Tensor) and value.dim() >= 2 and len(value)):
            raise ReparamError(f"{name} must be a non-empty batch tensor [B, ...], got {_describe(value)}")
    if inputs is not None:
        return inputs
    if example_input is not None:
        return torch.randn(example_input.shape, generator=torch.Generator().manual_seed(0))
    spec = getattr(model, "spec", None)
    if isinstance(spec, ModelSpec):
        return random_inputs(spec, RANDOM_PROBE_IMAGES)
    raise ReparamError(
        f"cannot verify the inference form of {type(model).__name__}: pass inputs=<a batch, real data is best> "
        "or example_input=<a tensor of the input shape> to check on random inputs"
    )


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def default_output(source: Path, materialize: bool) -> Path:
    stem = source.name.removesuffix(".safetensors")
    return source.with_name(f"{stem}.inference{'-materialized' if materialize else ''}.safetensors")


def convert_checkpoint(
    source: Path,
    output: Path | None = None,
    *,
    materialize: bool = False,
    probe_images: int = 128,
    tolerance: float = 1e-4,
    data_dir: Path | None = None,
    random_probe: bool = False,
    overwrite: bool = False,
) -> Conversion:
    """Training-form checkpoint -> verified inference-form checkpoint (form=inference, parent sha256)."""
    source = Path(source)
    model, meta = load_checkpoint(source)
    if meta.form is Form.INFERENCE:
        raise ReparamError(f"{source} is already in the inference form")
    output = Path(output) if output else default_output(source, materialize)
    check_output(output, overwrite=overwrite)  # before any work: exists, a folder, under a file, unwritable
    folds = plan_folds(model, materialize=materialize)
    x, probe = probe_inputs(meta, probe_images, data_dir=data_dir, random=random_probe)
    inference, report = reparameterize(model, x, materialize=materialize, tolerance=tolerance)
    out_meta = replace(
        meta,
        form=Form.INFERENCE,
        weight_layout=weight_layout(inference),
        parent_sha256=file_sha256(source),
        equivalence={**report.to_dict(), "probe": probe, "tolerance": tolerance},
        created_utc="",
        versions={},
    )
    _save_verified(output, inference, out_meta, x, overwrite)
    return Conversion(
        source=source,
        output=output,
        layout=out_meta.weight_layout,
        folds_by_rule=dict(Counter(f.rule for f in folds)),
        counts_before=count_parameters(model),
        counts_after=count_parameters(inference),
        unshared=out_meta.weight_layout != "shared",
        probe=probe,
        probe_images=len(x),
        report=report,
    )


def refuse_if_different(report: EquivalenceReport, tolerance: float) -> None:
    """ReparamError unless every spike is in its alphabet and the relative logit difference is within `tolerance`."""
    if not report.spikes_in_alphabet:
        raise ReparamError(f"inference form emits values outside the spike alphabet at "
                           f"{', '.join(report.outside_alphabet_layers)}")
    if not report.relative_diff <= tolerance:  # also catches NaN
        raise ReparamError(
            f"inference form differs from the training form by {report.relative_diff:.2e} (relative), "
            f"above the tolerance {tolerance:.0e}; refused (nothing is written)"
        )


def _save_verified(output: Path, model: nn.Module, meta: CheckpointMeta, x: torch.Tensor, overwrite: bool) -> None:
    """Write the temporary file beside the output, reload it the way users will, compare, then rename it into
    place (core.files: an interrupted run leaves no temporary file behind, or the next write removes it)."""

    def write_and_check(tmp: Path) -> None:
        write_checkpoint_file(tmp, model, meta)
        reloaded, _ = load_checkpoint(tmp)
        with torch.no_grad():
            if not torch.equal(reloaded(x), model.eval()(x)):
                raise ReparamError("the written inference checkpoint does not reload to the same outputs")

    atomic_write(output, write_and_check, overwrite=overwrite)


@dataclass
class Comparison:
    images: int
    top1_a: float
    top1_b: float
    agreement: float
    disagreements: int


@torch.no_grad()
def compare_predictions(
    model_a: nn.Module, model_b: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: str = "cpu"
) -> Comparison:
    """Accuracy of two models on the same batches and how often their top-1 predictions agree."""
    model_a.eval(), model_b.eval()
    images = correct_a = correct_b = same = 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        pa, pb = model_a(x).argmax(1), model_b(x).argmax(1)
        images += len(y)
        correct_a += int((pa == y).sum())
        correct_b += int((pb == y).sum())
        same += int((pa == pb).sum())
    n = max(images, 1)
    return Comparison(images, correct_a / n, correct_b / n, same / n, images - same)
