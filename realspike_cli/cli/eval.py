"""`realspike eval CKPT`: accuracy, loss and per-layer firing rates on the checkpoint's test set."""

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
    as_json: bool = opt.JsonOut,
) -> None:
    """Evaluate a checkpoint (either form): top-1, top-5 (≥ 10 classes), loss and firing rates.

    `realspike eval --compare TRAIN_CKPT INFERENCE_CKPT` evaluates both over the whole test set instead.
    """
    from realspike_cli.cli.render import console, percent, print_json, table
    from realspike_cli.core.checkpoint import load_checkpoint
    from realspike_cli.core.datasets import DataOptions, dataset_info, load_dataset
    from realspike_cli.core.datasets.loaders import BatchStream
    from realspike_cli.core.evaluate import check_compatible, evaluate
    from realspike_cli.core.runtime import keep_freed_memory
    from realspike_cli.core.train import resolve_device

    keep_freed_memory()
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, dev)
    check_compatible(meta, dataset_info(dataset or meta.dataset))
    options = DataOptions(data_dir=data_dir, download=download, augment="none", time_steps=meta.spec.time_steps)
    data = load_dataset(dataset or meta.dataset, options)
    if compare is not None:
        _compare(compare, checkpoint, (model, meta), data, batch_size, workers, dev, as_json)
        return
    result = evaluate(model, BatchStream(data.test, batch_size, shuffle=False, workers=workers), dev)
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
