"""`realspike export CKPT --format FORMAT -o OUT`: the inference form as ONNX, NIR or torch.export, validated."""

from __future__ import annotations

from pathlib import Path

import typer

from realspike_cli.cli import options as opt


def export_command(
    checkpoint: Path = opt.CheckpointArg,
    fmt: str = typer.Option(..., "--format", "-f", help="onnx, nir or pt2 (torch.export)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: CKPT with the format's suffix)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    tolerance: float = typer.Option(1e-4, "--tolerance", min=0.0, help="Max relative logit difference to PyTorch."),
    probe_images: int = typer.Option(32, "--probe-images", min=1, help="Images in the validation probe."),
    random_probe: bool = typer.Option(False, "--random", help="Probe with random inputs instead of test images."),
    data_dir: Path | None = opt.DataDir,
    dt: float = typer.Option(1e-4, "--dt", min=1e-12, help="NIR: time step the neurons are written for."),
    pooling: str = typer.Option(
        "avg", "--nir-pooling", help="NIR: avg (AvgPool2d, read by snnTorch) or sum (SumPool2d, read by Norse)."
    ),
    max_dense: int = typer.Option(
        50_000_000, "--max-dense-weights", min=1, help="NIR: largest dense Affine form of an element-wise model."
    ),
    onnx_exporter: str = typer.Option("torchscript", "--onnx-exporter", help="ONNX: torchscript or dynamo."),
    opset: int | None = typer.Option(None, "--opset", min=7, help="ONNX opset (default: the exporter's)."),
    as_json: bool = opt.JsonOut,
) -> None:
    """Export the inference form to ONNX, NIR or torch.export, validated against PyTorch.

    A training-form checkpoint is re-parameterized first. Nothing is written unless the file, run by its own
    runtime (onnxruntime, a NIR simulator, torch.export.load), matches PyTorch on a probe batch.
    """
    from realspike_cli.cli.render import console, print_json, table
    from realspike_cli.core.export import ExportOptions, export_checkpoint

    options = ExportOptions(
        tolerance=tolerance, probe_images=probe_images, data_dir=data_dir, random_probe=random_probe,
        dt=dt, max_dense_weights=max_dense, opset=opset, onnx_exporter=onnx_exporter, pooling=pooling,
    )
    with console.status(f"exporting to {fmt} and validating"):
        result = export_checkpoint(checkpoint, fmt, out, overwrite=overwrite, options=options)
    if as_json:
        print_json({"checkpoint": str(checkpoint), **result.to_dict()})
        return
    c = result.checks
    rows = [["source form", result.source_form], ["probe", result.probe],
            ["max |Δ logit|", f"{c['max_abs_diff']:.3e} (logit scale {c['logit_scale']:.3g})"],
            ["relative difference", f"{c['relative_diff']:.3e} (tolerance {tolerance:.0e})"],
            ["prediction agreement", f"{100 * c['agreement']:.2f}%"]]
    rows += [[k, v] for k, v in c.items() if k not in {"max_abs_diff", "logit_scale", "relative_diff", "agreement"}]
    console.print(table(f"{fmt} export", ["", "value"], rows))
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"[bold green]wrote[/] {result.output}")
