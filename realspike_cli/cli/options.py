"""Option types shared by several commands, so each flag is spelled and documented once."""

from __future__ import annotations

import typer

CheckpointArg = typer.Argument(..., help="A realspike checkpoint (.safetensors), training or inference form.")
DataDir = typer.Option(None, "--data-dir", help="Folder holding the data set (default: $REALSPIKE_DATA/<name>).")
Download = typer.Option(False, "--download", help="Download the data set if the loader can (CIFAR).")
Device = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
Workers = typer.Option(0, "--workers", min=0, help="DataLoader worker processes (image data sets).")
BatchSize = typer.Option(256, "--batch-size", min=1, help="Batch size for evaluation.")
JsonOut = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")

LogInterval = typer.Option(
    10.0, "--log-interval", min=0.0, help="Outside a terminal (SLURM, nohup, a pipe): a progress line every SECONDS."
)
