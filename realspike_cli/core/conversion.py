"""Checkpoint-level re-parameterization: load a training form, convert it, verify it on a probe, save it.

Nothing is written unless the inference form matches on the probe (logits within tolerance, every spike
0 or 1) and the written file reloads to the same outputs; the output records its parent's sha256.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from realspike_cli.core.checkpoint import CheckpointMeta, file_sha256, load_checkpoint, save_checkpoint
from realspike_cli.core.errors import DataError, ReparamError
from realspike_cli.core.reparam import EquivalenceReport, check_equivalence, plan_folds, to_inference, weight_layout
from realspike_cli.core.specs import Form


@dataclass
class Conversion:
    """What `convert_checkpoint` did, for the summary the CLI prints."""

    source: Path
    output: Path
    layout: str
    folds_by_rule: dict[str, int]
    parameters_before: int
    parameters_after: int
    unshared: bool
    probe: str
    probe_images: int
    report: EquivalenceReport
    notes: list[str] = field(default_factory=list)


def probe_inputs(meta: CheckpointMeta, images: int, *, data_dir: Path | None, random: bool) -> tuple[torch.Tensor, str]:
    """Real test images when the data set can be loaded, else random inputs of the checkpoint's shape."""
    from realspike_cli.core.datasets import DataOptions, load_dataset
    from realspike_cli.core.datasets.loaders import BatchStream

    if not random:
        try:
            options = DataOptions(data_dir=data_dir, augment="none", time_steps=meta.spec.time_steps)
            test = load_dataset(meta.dataset, options).test
            x, _ = next(iter(BatchStream(test, min(images, len(test)), shuffle=False)))
            return x, f"{len(x)} {meta.dataset} test images"
        except DataError as exc:
            note = f"random inputs ({exc})"
        except KeyError:
            note = f"random inputs (data set {meta.dataset!r} is not registered here)"
    else:
        note = "random inputs (asked for)"
    generator = torch.Generator().manual_seed(0)
    s = meta.spec
    shape = (
        (images, s.time_steps, s.in_channels, *s.input_size)
        if s.encoding.value == "frames"
        else (images, s.in_channels, *s.input_size)
    )
    return torch.randn(shape, generator=generator), note


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
    if output.exists() and not overwrite:
        raise ReparamError(f"{output} already exists; choose another -o path or pass --overwrite")
    folds = plan_folds(model, materialize=materialize)
    inference = to_inference(model, materialize=materialize)
    x, probe = probe_inputs(meta, probe_images, data_dir=data_dir, random=random_probe)
    report = check_equivalence(model, inference, x)
    _refuse_if_different(report, tolerance)
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
        parameters_before=_count(model),
        parameters_after=_count(inference),
        unshared=out_meta.weight_layout != "shared",
        probe=probe,
        probe_images=len(x),
        report=report,
    )


def _refuse_if_different(report: EquivalenceReport, tolerance: float) -> None:
    if not report.spikes_binary:
        raise ReparamError(f"inference form emits non-binary spikes at {', '.join(report.non_binary_layers)}")
    if report.relative_diff > tolerance:
        raise ReparamError(
            f"inference form differs from the training form by {report.relative_diff:.2e} (relative), "
            f"above the tolerance {tolerance:.0e}; nothing written"
        )


def _save_verified(output: Path, model: nn.Module, meta: CheckpointMeta, x: torch.Tensor, overwrite: bool) -> None:
    """Write beside the output, reload it the way users will, compare, then rename the same file into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        trial = Path(scratch) / output.name
        save_checkpoint(trial, model, meta)
        reloaded, _ = load_checkpoint(trial)
        with torch.no_grad():
            if not torch.equal(reloaded(x), model.eval()(x)):
                raise ReparamError("the written inference checkpoint does not reload to the same outputs")
        if output.exists() and not overwrite:
            raise ReparamError(f"{output} already exists; choose another -o path or pass --overwrite")
        os.replace(trial, output)  # same directory, so the rename is atomic


def _count(model: nn.Module) -> int:
    return sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())


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
