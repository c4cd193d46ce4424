"""`realspike train DATASET`: build the recipe from flags and data set defaults, run core.train.fit, render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from realspike_cli.cli import options as opt
from realspike_cli.cli.app import app


def _pick(value: Any, defaults: dict[str, Any], key: str) -> Any:
    return defaults[key] if value is None else value


@app.command()
def train(
    dataset: str = typer.Argument("mnist10k", help="Data set name (see docs/datasets.md)."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture (default depends on the data set)."),
    t: int | None = typer.Option(None, "--t", min=1, help="Time steps T."),
    spike: str | None = typer.Option(None, "--spike", help="binary, layer, channel or element."),
    neuron: str | None = typer.Option(None, "--neuron", help="lif or if (default: the architecture's)."),
    decay: float = typer.Option(0.25, "--decay", help="LIF membrane decay τ (IF: 1)."),
    v_th: float = typer.Option(0.5, "--v-th", help="Firing threshold V_th."),
    width: float = typer.Option(1.0, "--width", min=0.01, help="Channel width multiplier."),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd, adam or adamw."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    momentum: float | None = typer.Option(None, "--momentum"),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="On conv/linear weights only."),
    schedule: str | None = typer.Option(None, "--schedule", help="cosine, step or constant."),
    warmup_epochs: int = typer.Option(0, "--warmup-epochs", min=0),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", min=0.0, max=1.0),
    augment: str | None = typer.Option(None, "--augment", help="standard or none."),
    seed: int = typer.Option(0, "--seed"),
    device: str = opt.Device,
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision (CUDA only)."),
    workers: int = opt.Workers,
    data_dir: Path | None = opt.DataDir,
    download: bool = opt.Download,
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory (default runs/<dataset>-<arch>-t<T>-<spike>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Stop (resumably) after N steps."),
    save_every: int = typer.Option(0, "--save-every", min=0, help="Also save resume state every N steps."),
) -> None:
    """Train a Real Spike SNN; writes best/last checkpoints, metrics.jsonl and resume state."""
    from realspike_cli.core.datasets import DataOptions, dataset_info, load_dataset
    from realspike_cli.core.recipes import dataset_defaults
    from realspike_cli.core.registry import arch_entry
    from realspike_cli.core.runtime import keep_freed_memory
    from realspike_cli.core.specs import ModelSpec, NeuronSpec, TrainConfig
    from realspike_cli.core.train import RunOptions, fit

    keep_freed_memory()
    info = dataset_info(dataset)
    d = dataset_defaults(dataset)
    arch = _pick(arch, d, "arch")
    kind = neuron or arch_entry(arch).default_neuron
    spec = ModelSpec(
        arch=arch,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        input_size=info.input_size,
        time_steps=_pick(t, d, "time_steps"),
        spike=_pick(spike, d, "spike"),
        neuron=NeuronSpec(kind=kind, decay=1.0 if kind == "if" else decay, v_th=v_th),
        encoding=info.encoding,
        arch_kwargs={"width": width} if width != 1.0 else {},
    )
    cfg = TrainConfig(
        epochs=_pick(epochs, d, "epochs"),
        batch_size=_pick(batch_size, d, "batch_size"),
        optimizer=_pick(optimizer, d, "optimizer"),
        lr=_pick(lr, d, "lr"),
        momentum=_pick(momentum, d, "momentum"),
        weight_decay=_pick(weight_decay, d, "weight_decay"),
        schedule=_pick(schedule, d, "schedule"),
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        seed=seed,
        amp=amp,
        augment=_pick(augment, d, "augment"),
    )
    out = out or Path("runs") / f"{dataset}-{arch}-t{spec.time_steps}-{spec.spike.value}"
    data_options = DataOptions(data_dir=data_dir, download=download, augment=cfg.augment, time_steps=spec.time_steps)
    data = load_dataset(dataset, data_options)
    run = RunOptions(
        out_dir=out, device=device, workers=workers, resume=resume, overwrite=overwrite,
        max_steps=max_steps, save_every=save_every,
    )
    from realspike_cli.cli.progress import render_training

    render_training(fit(spec, data, cfg, run), spec, cfg, dataset)
