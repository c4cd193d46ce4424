"""`realspike plot RUN_DIR`: a run's training curves and per-layer firing rates as one PNG (core.plotting)."""

from __future__ import annotations

from pathlib import Path

import typer


def plot_command(
    run_dir: Path = typer.Argument(..., help="A run directory (holding metrics.jsonl), as `realspike train` writes."),
    out: Path | None = typer.Option(None, "--out", "-o", help="The PNG to write (default RUN_DIR/training.png)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing PNG."),
) -> None:
    """Plot loss, top-1 (train and test/validation), learning rate and firing rate per layer, per epoch."""
    from realspike_cli.cli.render import console
    from realspike_cli.core.plotting import plot_training, require_matplotlib

    target = out or run_dir / "training.png"
    require_matplotlib(target, overwrite)
    series = plot_training(run_dir, target, overwrite=overwrite)
    epochs = max((len(xs) for panel in series.values() for xs, _ in panel.values()), default=0)
    console.print(f"[bold green]wrote[/] {target} ({epochs} epoch(s))")
