"""Option types shared by several commands, so each flag is spelled and documented once."""

from __future__ import annotations

import re

import typer

CheckpointArg = typer.Argument(..., help="A realspike checkpoint (.safetensors), training or inference form.")
DataDir = typer.Option(
    None, "--data-dir", help="Folder holding the data set, or the .npz file for npz (default: $REALSPIKE_DATA/<name>)."
)
Download = typer.Option(
    False, "--download", help="Download the data set if the loader can (CIFAR, CIFAR10-DVS, N-MNIST, DVS128 Gesture)."
)
Device = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
Workers = typer.Option(0, "--workers", min=0, help="DataLoader worker processes (image data sets).")
BatchSize = typer.Option(256, "--batch-size", min=1, help="Batch size for evaluation.")
JsonOut = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")

LogInterval = typer.Option(
    10.0, "--log-interval", min=0.0, help="Outside a terminal (SLURM, nohup, a pipe): a progress line every SECONDS."
)


def parse_image_size(value: str | None) -> tuple[int, int] | None:
    """"HxW" (or "N" for N×N) as (H, W); the range is checked by DataOptions."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d{1,6})\s*(?:[xX×]\s*(\d{1,6})\s*)?", value, re.ASCII)
    if match is None:
        raise typer.BadParameter(f"{value!r} is not HEIGHTxWIDTH, e.g. 32x32 (or one number for a square)")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


ImageSize = typer.Option(
    None, "--image-size", callback=parse_image_size, metavar="HxW",
    help="Resize every image (imagefolder, npz) or event frame (nmnist, dvs128-gesture, cifar10-dvs) to HxW.",
)
Channels = typer.Option(
    None, "--channels", help="imagefolder: convert every image to 1 (grey) or 3 (RGB) channels (default: 1 when "
    "all images are grey, else 3).",
)
