"""`realspike train DATASET`: build the recipe from flags and data set defaults, run core.train.fit, render.

Under torchrun every process runs this command; it joins the process group and only rank 0 renders.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from realspike_cli.cli import options as opt


def _pick(value: Any, defaults: dict[str, Any], key: str) -> Any:
    return defaults[key] if value is None else value


def train(
    dataset: str | None = typer.Argument(
        None, help="Data set name (see docs/datasets.md); default: the recipe's, else mnist10k."
    ),
    recipe: str | None = typer.Option(
        None, "--recipe", help="A named paper recipe (see --list-recipes); other flags override it."
    ),
    list_recipes: bool = typer.Option(False, "--list-recipes", help="List the named recipes and exit."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture (default depends on the data set)."),
    t: int | None = typer.Option(None, "--t", min=1, help="Time steps T."),
    spike: str | None = typer.Option(
        None, "--spike", help="binary, layer, channel, element (Real Spike) or ternary, ternary-layer, "
        "ternary-channel, ternary-element (spikes in {-1, 0, 1}); see docs/neurons.md."
    ),
    neuron: str | None = typer.Option(
        None, "--neuron", help="lif, if or mpbn (LIF firing on a BatchNorm of its membrane; --decay 1 for IF "
        "dynamics); default: the architecture's."
    ),
    decay: float = typer.Option(0.25, "--decay", help="LIF membrane decay τ (IF: 1)."),
    v_th: float = typer.Option(0.5, "--v-th", help="Firing threshold V_th."),
    reset: str = typer.Option("hard", "--reset", help="hard (to 0, the paper's) or soft (subtract s·V_th)."),
    surrogate_width: float = typer.Option(
        1.0, "--surrogate-width", help="Width w of the rectangular surrogate window: 1 on |u − V_th| ≤ w/2."
    ),
    detach_reset: bool = typer.Option(
        False, "--detach-reset", help="Detach the reset from the gradient (default: differentiated, as the authors)."
    ),
    width: float = typer.Option(1.0, "--width", min=0.01, help="Channel width multiplier."),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Per process: under torchrun the global batch is N × this."
    ),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd, adam or adamw."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    momentum: float | None = typer.Option(None, "--momentum"),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="On conv/linear weights only."),
    schedule: str | None = typer.Option(None, "--schedule", help="cosine, step or constant."),
    warmup_epochs: int = typer.Option(0, "--warmup-epochs", min=0),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", min=0.0, max=1.0),
    augment: str | None = typer.Option(None, "--augment", help="standard or none."),
    seed: int = typer.Option(0, "--seed"),
    val_split: float = typer.Option(
        0.0, "--val-split", min=0.0, max=0.99,
        help="Hold out this fraction of the training set (stratified, seeded by --seed) and select best on it; "
        "the test set is then evaluated once, at the end. Default 0: select on the test set, as the paper's code.",
    ),
    init_from: str | None = typer.Option(
        None, "--init-from",
        help="Start from this checkpoint's weights (a file or a zoo entry) with a new optimizer and schedule; "
        "Real Spike coefficients it lacks start at 1.",
    ),
    device: str = opt.Device,
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision (CUDA only)."),
    workers: int = opt.Workers,
    data_dir: Path | None = opt.DataDir,
    download: bool = opt.Download,
    image_size: str | None = opt.ImageSize,
    channels: int | None = opt.Channels,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run directory (default runs/<dataset>-<arch>-t<T>-<spike>)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Stop (resumably) after N steps."),
    save_every: int = typer.Option(0, "--save-every", min=0, help="Also save resume state every N steps."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="SyncBatchNorm across processes (torchrun on CUDA)."),
    lif_backend: str | None = typer.Option(
        None,
        "--lif-backend",
        help="eager or compiled (fused kernels; seconds to compile, for long runs); "
        "default $REALSPIKE_LIF_BACKEND or eager.",
    ),
    channels_last: bool = typer.Option(False, "--channels-last", help="NHWC memory layout for the convs."),
    compile_model: bool = typer.Option(
        False, "--compile", help="torch.compile the training step (the first step compiles: a minute or more on CPU)."
    ),
    tensorboard: Path | None = typer.Option(
        None, "--tensorboard", help="Also log to TensorBoard in this folder (extra: realspike[tensorboard])."
    ),
    log_every: int | None = typer.Option(
        None, "--log-every", min=1,
        help="Outside a terminal (SLURM, nohup, a pipe): a progress line every N steps (default: a tenth of an "
        "epoch) or every --log-interval seconds, whichever comes first.",
    ),
    log_interval: float = typer.Option(30.0, "--log-interval", min=0.0, help="Seconds between those lines at most."),
) -> int:
    """Train a Real Spike SNN; writes best/last checkpoints, metrics.jsonl and resume state.

    `--resume` with a larger `--epochs` extends a run on a constant schedule; a cosine or step schedule cannot be
    stretched, so start from its weights instead (`--init-from RUN/last.safetensors`). See docs/training.md.
    Multi-GPU / multi-node: launch with torchrun (see docs/distributed.md)."""
    if list_recipes:
        _print_recipes()
        return 0
    flags = dict(locals())
    dataset = flags["dataset"] = _resolve_dataset(dataset, recipe)
    from realspike_cli.core import distributed as D
    from realspike_cli.core.checkpointer import Checkpointer
    from realspike_cli.core.datasets import DataOptions
    from realspike_cli.core.runtime import keep_freed_memory
    from realspike_cli.core.train import RunOptions, resolve_device, train_events

    with _errors_once_per_run(D.env_rank()) as shared:
        keep_freed_memory()
        spec, cfg = _spec_and_config(flags)
        launched = D.launched_by_torchrun()
        # Checked before joining the group: every rank reaches the same verdict from the same flags.
        kind = D.device_kind(device) if launched else resolve_device(device).type
        D.check_sync_bn(sync_bn, launched, kind)
        out = out or Path("runs") / f"{dataset}-{spec.arch}-t{spec.time_steps}-{spec.spike.value}"
        options = DataOptions(data_dir=data_dir, download=download, augment=cfg.augment, time_steps=spec.time_steps,
                              image_size=image_size, channels=channels)
        run = RunOptions(device=device, workers=workers, max_steps=max_steps, sync_bn=sync_bn,
                         lif_backend=lif_backend, channels_last=channels_last, compile=compile_model)
        files = Checkpointer(out, resume=resume, overwrite=overwrite, save_every=save_every)
        if not launched:  # lock and probe --out before loading data (under torchrun rank 0 does it at the start)
            files.prepare()
        try:
            callbacks = [files, *_optional_callbacks(tensorboard)]
            shared[0] = False  # from here on an error may belong to one rank only (its GPU, its node's files)
            with D.distributed(device) as ctx:
                # Rank 0 first when downloading, so ranks do not race to write the same files.
                load = lambda: _load_data(dataset, options, cfg)  # noqa: E731
                data = ctx.main_first(load) if download else load()
                if init_from is not None:  # after the Checkpointer: a resumed run keeps its own weights
                    callbacks.insert(1, _init_callback(init_from, ctx))
                events = train_events(spec, data, cfg, options=run, callbacks=callbacks, dist=ctx)
                last = None
                if ctx.is_main:
                    from realspike_cli.cli.progress import render_training

                    last = render_training(events, spec, cfg, dataset, files, log_every=log_every,
                                           log_seconds=log_interval, recipe=_named_recipe(recipe))
                else:
                    for event in events:  # every rank must take every step
                        last = event
        finally:
            files.release()  # unlock (and put back a run set aside by --overwrite if nothing replaced it)
    return STOP_EXIT_CODES.get(getattr(last, "reason", ""), 0)


def _load_data(dataset: str, options: Any, cfg: Any) -> Any:
    """The data set; with --val-split, validation images come from an un-augmented copy of the training set."""
    from dataclasses import replace

    from realspike_cli.core.datasets import load_dataset
    from realspike_cli.core.validation import with_validation

    data = load_dataset(dataset, options)
    if not cfg.val_split:
        return data
    plain = data.train if options.augment == "none" else load_dataset(dataset, replace(options, augment="none")).train
    return with_validation(data, cfg.val_split, cfg.seed, val_source=plain)


def _optional_callbacks(tensorboard: Path | None) -> list[Any]:
    if tensorboard is None:
        return []
    from realspike_cli.core.tensorboard_log import TensorBoardLogger

    return [TensorBoardLogger(tensorboard)]  # a missing package is an error here, before any training


def _init_callback(source: str, ctx: Any) -> Any:
    from realspike_cli.core.finetune import InitFrom, resolve_source

    path, label = ctx.main_first(lambda: resolve_source(source))  # a zoo pull downloads on rank 0 first
    return InitFrom(path, label)


# A run stopped by a signal saved its resume point and exits like a process killed by that signal would
# (128 + signal number), so `realspike train ... && next` does not go on after Ctrl-C.
STOP_EXIT_CODES = {"interrupted": 130, "terminated": 143}


def _spec_and_config(f: dict[str, Any]) -> tuple[Any, Any]:
    """The model spec and training recipe from the command's flags, data set defaults filling the gaps."""
    from realspike_cli.core.datasets import DataOptions, dataset_info
    from realspike_cli.core.models import arch_entry
    from realspike_cli.core.recipes import dataset_defaults
    from realspike_cli.core.recipes import recipe as recipe_by_name
    from realspike_cli.core.specs import ModelSpec, NeuronSpec, TrainConfig

    # The shape of a user's images (imagefolder, npz) comes from their files and the size/channel flags.
    shape = DataOptions(data_dir=f["data_dir"], image_size=f["image_size"], channels=f["channels"])
    info = dataset_info(f["dataset"], shape)
    d = recipe_by_name(f["recipe"]).settings() if f["recipe"] else dataset_defaults(f["dataset"])
    arch = _pick(f["arch"], d, "arch")
    kind = f["neuron"] or arch_entry(arch).default_neuron
    spec = ModelSpec(
        arch=arch,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        input_size=info.input_size,
        time_steps=_pick(f["t"], d, "time_steps"),
        spike=_pick(f["spike"], d, "spike"),
        neuron=NeuronSpec(
            kind=kind, decay=1.0 if kind == "if" else f["decay"], v_th=f["v_th"], reset=f["reset"],
            surrogate_width=f["surrogate_width"], detach_reset=f["detach_reset"],
        ),
        encoding=info.encoding,
        arch_kwargs={"width": f["width"]} if f["width"] != 1.0 else {},
    )
    picked = {
        k: _pick(f[k], d, k)
        for k in ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "augment")
    }
    cfg = TrainConfig(
        **picked, warmup_epochs=f["warmup_epochs"], label_smoothing=f["label_smoothing"], seed=f["seed"], amp=f["amp"],
        val_split=f["val_split"],
    )
    return spec, cfg


def _resolve_dataset(dataset: str | None, recipe: str | None) -> str:
    """The positional data set, else the recipe's; a recipe for another data set is an error."""
    if recipe is None:
        return dataset or "mnist10k"
    from realspike_cli.core.errors import ConfigError
    from realspike_cli.core.recipes import recipe as recipe_by_name

    wanted = recipe_by_name(recipe).dataset
    if dataset is not None and dataset != wanted:
        raise ConfigError(f"recipe {recipe!r} is for data set {wanted!r}, not {dataset!r}")
    return wanted


def _named_recipe(name: str | None) -> Any:
    """The Recipe behind --recipe (its target is printed before training and beside the result), or None."""
    from realspike_cli.core.recipes import recipe as recipe_by_name

    return recipe_by_name(name) if name else None


def _print_recipes() -> None:
    from realspike_cli.cli.render import console, table
    from realspike_cli.core.recipes import list_recipes

    rows = []
    for r in list_recipes():
        s, reported = r.settings(), r.reported()
        accuracy = reported[0].accuracy if reported else "–"
        where = ", ".join(x.table.removeprefix("Table ") for x in reported)
        rows.append([r.name, r.spike, f"{s['epochs']} × {s['batch_size']} × {r.gpus}", accuracy, where])
    columns = ["recipe", "spike", "epochs × batch × GPUs", "paper top-1 (%)", "table"]
    console.print(table("named recipes: the configurations of Guo et al. 2022, Tables 1–3", columns, rows))
    console.print("paper top-1: as printed; ± is the std over 3 trials (Table 3). Settings the paper leaves to its "
                  "appendix follow the authors' released code (docs/getting-started.md). Model selection: the "
                  "best test top-1 (best.safetensors), as the authors' code does; last.safetensors is unselected.",
                  markup=False, highlight=False)
    console.print("run one with: realspike train --recipe NAME  (flags given as well override the recipe)")


@contextmanager
def _errors_once_per_run(rank: int) -> Iterator[list[bool]]:
    """User errors every rank hits alike are printed by rank 0 alone; other ranks then exit 1 quietly.

    Alike: anything before the process group exists (the yielded flag), bad option values (ConfigError,
    UnknownNameError: the same flags everywhere) and errors rank 0 broadcast (`reported_by_rank0`).
    Any other error may be one rank's own (its GPU, its node's files): that rank reports it, prefixed.
    """
    from realspike_cli.core.errors import ConfigError, RealSpikeError, UnknownNameError

    shared = [True]
    try:
        yield shared
    except RealSpikeError as exc:
        if rank == 0 or str(exc).startswith(f"rank {rank}:"):
            raise
        if shared[0] or isinstance(exc, (ConfigError, UnknownNameError)) or getattr(exc, "reported_by_rank0", False):
            raise SystemExit(1) from None
        raise RealSpikeError(f"rank {rank}: {exc}") from None
