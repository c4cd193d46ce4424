"""`realspike reparam CKPT`: write the verified inference form (plain spikes) of a training checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from realspike_cli.cli import options as opt


def reparam(
    checkpoint: Path = opt.CheckpointArg,
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: CKPT.inference.safetensors)."),
    materialize: bool = typer.Option(
        False, "--materialize", help="Store element-wise synapses as explicit per-position kernels (large)."
    ),
    check_batches: int = typer.Option(2, "--check-batches", min=1, help="Probe batches compared before writing."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per probe batch."),
    tolerance: float = typer.Option(1e-4, "--tolerance", min=0.0, help="Max relative logit difference."),
    random_probe: bool = typer.Option(False, "--random", help="Probe with random inputs instead of test images."),
    data_dir: Path | None = opt.DataDir,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    as_json: bool = opt.JsonOut,
) -> None:
    """Fold BatchNorm, Real Spike coefficients and MPBN into weights and thresholds: plain spikes, same outputs."""
    from realspike_cli.cli.render import console, percent, print_json, table
    from realspike_cli.core.conversion import convert_checkpoint
    from realspike_cli.core.reparam import RULES
    from realspike_cli.core.runtime import keep_freed_memory

    keep_freed_memory()
    with console.status("re-parameterizing and checking equivalence"):
        c = convert_checkpoint(
            checkpoint,
            out,
            materialize=materialize,
            probe_images=check_batches * batch_size,
            tolerance=tolerance,
            data_dir=data_dir,
            random_probe=random_probe,
            overwrite=overwrite,
        )
    r = c.report
    if as_json:
        print_json(
            {
                "source": str(c.source),
                "output": str(c.output),
                "layout": c.layout,
                "folds": c.folds_by_rule,
                "parameters_before": c.counts_before.parameters,
                "parameters_after": c.counts_after.parameters,
                "buffers_before": c.counts_before.buffers,
                "buffers_after": c.counts_after.buffers,
                "probe": c.probe,
                **r.to_dict(),
            }
        )
        return
    rows = [[rule, n, RULES.get(rule, "")] for rule, n in c.folds_by_rule.items()]
    console.print(table("folds", ["rule", "layers", "meaning"], rows))
    summary = [
        ["weights", f"{c.layout} ({'unshared' if c.unshared else 'shared'} kernels)"],
        ["training form", c.counts_before.describe()],
        ["inference form", c.counts_after.describe()],
        ["probe", c.probe],
        ["max |Δ logit|", f"{r.max_abs_diff:.3e} (logit scale {r.logit_scale:.3g})"],
        ["relative difference", f"{r.relative_diff:.3e} (tolerance {tolerance:.0e})"],
        ["prediction agreement", percent(r.agreement)],
        ["spikes in alphabet", ("yes " if r.spikes_in_alphabet else "no ") + " ".join(
            "{" + ", ".join(f"{v:g}" for v in a) + "}" for a in r.spike_alphabets)],
    ]
    console.print(table("inference form", ["", "value"], summary))
    console.print(f"[bold green]wrote[/] {c.output}")
