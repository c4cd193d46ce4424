"""`realspike eval CKPT`: accuracy, loss and per-layer firing rates on the checkpoint's test set; `--t 1,2,4,8`
evaluates it at other numbers of time steps (core.timesteps)."""

from __future__ import annotations

from pathlib import Path

import typer

from realspike_cli.cli import options as opt


def eval_command(
    checkpoint: Path = opt.CheckpointArg,
    dataset: str | None = typer.Option(None, "--dataset", help="Data set (default: the checkpoint's)."),
    data_dir: Path | None = opt.DataDir,
    download: bool = opt.Download,
    batch_size: int = opt.BatchSize,
    device: str = opt.Device,
    workers: int = opt.Workers,
    compare: Path | None = typer.Option(
        None, "--compare", help="Another checkpoint (e.g. the training form): both accuracies and prediction agreement."
    ),
    time_steps: str | None = typer.Option(
        None, "--t", help="Evaluate at these numbers of time steps instead of the trained T, e.g. 1,2,4,8 (a table)."
    ),
    unrelated_ok: bool = typer.Option(
        False, "--unrelated-ok", help="With --compare: compare checkpoints that are not related (not one derived "
        "from the other, or of another spec) on purpose."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="With --t: write a PNG of top-1 against T."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --plot file."),
    log_interval: float = opt.LogInterval,
    as_json: bool = opt.JsonOut,
) -> None:
    """Evaluate a checkpoint (either form): top-1, top-5 (≥ 10 classes), loss and firing rates.

    `realspike eval --compare TRAIN_CKPT INFERENCE_CKPT` evaluates both over the whole test set instead; it
    refuses checkpoints that are unrelated (neither derived from the other) unless `--unrelated-ok`.
    `--t 1,2,4,8` rebuilds the model at each T with the same weights (none depends on T) and tabulates accuracy.
    """
    from realspike_cli.cli.render import console, percent, print_json, table
    from realspike_cli.core.checkpoint import load_checkpoint
    from realspike_cli.core.datasets import dataset_info, load_dataset, options_for_model
    from realspike_cli.core.datasets.loaders import BatchStream
    from realspike_cli.core.evaluate import check_compatible, evaluate
    from realspike_cli.core.runtime import keep_freed_memory
    from realspike_cli.core.train import resolve_device

    keep_freed_memory()
    steps = _check_sweep_flags(time_steps, plot, overwrite, compare)
    if unrelated_ok and compare is None:
        from realspike_cli.core.errors import ConfigError

        raise ConfigError("--unrelated-ok only applies to --compare")
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, dev)
    if compare is not None:
        _check_relation(compare, checkpoint, meta, unrelated_ok)  # before the data set is loaded
    # Loaded as the model sees it: its T, and the input size and channels of data sets that adapt to it.
    options = options_for_model(dataset or meta.dataset, meta.spec, data_dir=data_dir, download=download)
    check_compatible(meta, dataset_info(dataset or meta.dataset, options))
    data = load_dataset(dataset or meta.dataset, options)
    if compare is not None:
        _compare(compare, checkpoint, (model, meta), data, batch_size, workers, dev, as_json)
        return
    if steps is not None:
        _sweep(checkpoint, meta, data, options, steps, (batch_size, workers, dev), plot, overwrite, log_interval,
               as_json)
        return
    from realspike_cli.cli.progress import track

    stream = BatchStream(data.test, batch_size, shuffle=False, workers=workers)
    result = evaluate(model, track(stream, len(stream), "eval", log_seconds=log_interval), dev)
    if as_json:
        print_json(
            {"checkpoint": str(checkpoint), "form": meta.form.value, "dataset": data.info.name, **result.to_dict()}
        )
        return
    s = meta.spec
    console.print(
        f"[bold]{checkpoint}[/]: {s.arch}, {meta.form.value} form, T={s.time_steps}, spike={s.spike.value}, "
        f"{data.info.name} test set ({result.images:,} images)"
    )
    console.print(
        table(
            "accuracy",
            ["metric", "value"],
            [["top-1", percent(result.top1)], ["top-5", percent(result.top5)], ["loss", result.loss]],
        )
    )
    rows = [[name, rate] for name, rate in result.firing_rates.items()]
    console.print(table("firing rate (spikes per neuron per step)", ["layer", "rate"], rows))


def _check_sweep_flags(time_steps, plot, overwrite, compare) -> list[int] | None:
    from realspike_cli.core.errors import ConfigError
    from realspike_cli.core.timesteps import parse_time_steps

    if time_steps is None:
        if plot is not None:
            raise ConfigError("--plot draws accuracy against T: give the time steps with --t, e.g. --t 1,2,4,8")
        return None
    if compare is not None:
        raise ConfigError("--t and --compare do not combine; evaluate each checkpoint with --t on its own")
    if plot is not None:
        from realspike_cli.core.plotting import require_matplotlib

        require_matplotlib(plot, overwrite)  # before minutes of evaluation
    return parse_time_steps(time_steps)


def _sweep(checkpoint, meta, data, options, steps, run, plot, overwrite, log_interval, as_json) -> None:
    """Accuracy at each T: one table (or JSON) row per T, and optionally a plot."""
    from dataclasses import replace

    from realspike_cli.cli.progress import track
    from realspike_cli.cli.render import console, percent, print_json, table
    from realspike_cli.core.datasets import load_dataset
    from realspike_cli.core.plotting import plot_accuracy_vs_time_steps
    from realspike_cli.core.specs import Encoding
    from realspike_cli.core.timesteps import sweep_time_steps

    batch_size, workers, dev = run
    frames = meta.spec.encoding is Encoding.FRAMES  # event frames are binned into T frames by the loader
    test_set = (lambda t: load_dataset(data.info.name, replace(options, time_steps=t)).test) if frames else data.test
    wrap = lambda batches, t: track(batches, len(batches), f"T={t}", log_seconds=log_interval)  # noqa: E731
    results = sweep_time_steps(checkpoint, steps, test_set, batch_size=batch_size, device=dev, workers=workers,
                               wrap=wrap)
    rows = [r.to_dict() for r in results]
    if plot is not None:
        plot_accuracy_vs_time_steps(rows, plot, trained_at=meta.spec.time_steps, overwrite=overwrite,
                                    title=f"{meta.spec.arch} on {data.info.name} (trained at T={meta.spec.time_steps})")
    if as_json:
        print_json({"checkpoint": str(checkpoint), "form": meta.form.value, "dataset": data.info.name,
                    "trained_time_steps": meta.spec.time_steps, "results": rows})
        return
    cells = [[r.time_steps, percent(r.top1), percent(r.top5), r.loss, r.mean_firing_rate] for r in results]
    title = (f"{checkpoint}: {data.info.name} test set ({results[0].images:,} images) at each T "
             f"(trained at T={meta.spec.time_steps})")
    console.print(table(title, ["T", "top-1", "top-5", "loss", "firing rate"], cells))
    if plot is not None:
        console.print(f"[bold green]wrote[/] {plot}")


def _check_relation(first_path: Path, second_path: Path, second_meta, unrelated_ok: bool) -> None:
    """Refuse unrelated checkpoints (core.lineage), or say on stderr that they are compared anyway."""
    from realspike_cli.cli.render import errors
    from realspike_cli.core.checkpoint import file_sha256, read_meta
    from realspike_cli.core.lineage import check_related, relation

    first = (read_meta(first_path), file_sha256(first_path))
    second = (second_meta, file_sha256(second_path))
    if not unrelated_ok:
        check_related(*first, *second)
    elif (reason := relation(*first, *second)) is not None:
        errors.print(f"comparing unrelated checkpoints ({reason})", markup=False, highlight=False, soft_wrap=True)


def _compare(first_path, second_path, second, data, batch_size, workers, device, as_json) -> None:
    """Both checkpoints over the whole test set: accuracy of each and top-1 agreement."""
    from realspike_cli.cli.render import console, percent, print_json, table
    from realspike_cli.core.checkpoint import load_checkpoint
    from realspike_cli.core.conversion import compare_predictions
    from realspike_cli.core.datasets.loaders import BatchStream
    from realspike_cli.core.evaluate import check_compatible

    first_model, first_meta = load_checkpoint(first_path, device)
    check_compatible(first_meta, data.info)
    second_model, second_meta = second
    batches = BatchStream(data.test, batch_size, shuffle=False, workers=workers)
    c = compare_predictions(first_model, second_model, batches, device)
    if as_json:
        print_json(
            {
                "dataset": data.info.name,
                "images": c.images,
                "agreement": c.agreement,
                "disagreements": c.disagreements,
                "checkpoints": [
                    {"path": str(first_path), "form": first_meta.form.value, "top1": c.top1_a},
                    {"path": str(second_path), "form": second_meta.form.value, "top1": c.top1_b},
                ],
            }
        )
        return
    rows = [
        [str(first_path), first_meta.form.value, percent(c.top1_a)],
        [str(second_path), second_meta.form.value, percent(c.top1_b)],
    ]
    console.print(table(f"{data.info.name} test set, {c.images:,} images", ["checkpoint", "form", "top-1"], rows))
    console.print(f"prediction agreement {percent(c.agreement)} ({c.disagreements} of {c.images:,} differ)")
