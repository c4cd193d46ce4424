"""`realspike energy CKPT`: spikes, synaptic operations (AC/MAC), energy and weights per layer, per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from realspike_cli.cli import options as opt


def energy_command(
    checkpoint: Path = opt.CheckpointArg,
    dataset: str | None = typer.Option(None, "--dataset", help="Data set to measure on (default: the checkpoint's)."),
    data_dir: Path | None = opt.DataDir,
    batches: int = typer.Option(4, "--batches", help="Number of test-set batches to measure on."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per batch."),
    random_inputs: bool = typer.Option(False, "--random", help="Random inputs of the checkpoint's input shape."),
    profile: str = typer.Option(
        "45nm", "--profile", help="Energy per operation: 45nm, 45nm-fp16, 45nm-int32, 45nm-int8, or a TOML/JSON file."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Write the full report as JSON to PATH ('-': stdout)."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a per-layer energy bar chart to this PNG."),
    device: str = opt.Device,
) -> None:
    """Count spikes, accumulates (AC) and multiply-accumulates (MAC) per image on real inputs, and their energy.

    A training-form checkpoint is also converted to its inference form, and both are shown side by side,
    next to the same network run as an ANN.
    """
    from realspike_cli.cli.render import console, print_json
    from realspike_cli.core.checkpoint import load_checkpoint
    from realspike_cli.core.energy_estimate import estimate_energy
    from realspike_cli.core.energy_profiles import resolve_profile
    from realspike_cli.core.errors import ConfigError
    from realspike_cli.core.inputs import first_test_batches
    from realspike_cli.core.train import resolve_device

    if batches < 1:
        raise ConfigError(f"--batches must be at least 1, got {batches}")
    energy_profile = resolve_profile(profile)
    if plot is not None:
        _require_matplotlib()
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, dev)
    inputs, described = first_test_batches(meta, batches=batches, batch_size=batch_size, dataset=dataset,
                                           data_dir=data_dir, random=random_inputs)
    with console.status("measuring spikes and counting operations"):
        report = estimate_energy(model, inputs, energy_profile, source=described["source"])
    data = {"checkpoint": str(checkpoint), "model": meta.spec.to_dict(), "form": meta.form.value,
            **report.to_dict()}
    if json_path is not None and str(json_path) == "-":
        print_json(data)
    else:
        _render(report, meta, checkpoint)
        if json_path is not None:
            json_path.write_text(_dumps(data))
            console.print(f"[bold green]wrote[/] {json_path}")
    if plot is not None:
        _plot(report, plot)
        if json_path is None or str(json_path) != "-":
            console.print(f"[bold green]wrote[/] {plot}")


def _dumps(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, default=str) + "\n"


def _require_matplotlib() -> None:
    from realspike_cli.core.errors import ConfigError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'realspike[plot]'") from None


def _count(value: float) -> int:
    return int(round(value))


def _render(report, meta, checkpoint: Path) -> None:
    from realspike_cli.cli.render import console, table

    s, p, forms = meta.spec, report.profile, report.forms
    names = [f.form for f in forms]
    console.print(
        f"[bold]{_plain(str(checkpoint))}[/]: {s.arch}, {meta.form.value} form, T={s.time_steps}, "
        f"spike={s.spike.value}; {report.inputs['source']}, {report.inputs['images']:,} images; profile "
        f"[bold]{_plain(p.name)}[/]: E_MAC = {p.e_mac_pj:g} pJ, E_AC = {p.e_ac_pj:g} pJ "
        f"({_plain(p.source or 'no source given')})",
        highlight=False,
    )
    spikes = [{n.name: n for n in f.neurons} for f in forms]
    rows = [[n.name, n.neurons, n.time_steps, n.rate, *(_count(by[n.name].spikes) for by in spikes)]
            for n in forms[0].neurons]
    console.print(table("neurons, per image", ["layer", "neurons", "T", "rate", *(f"spikes ({f})" for f in names)],
                        rows))
    for f in forms:
        rows = [[x.name, x.input, None if x.input in ("analog", "elements") else _count(x.events), _count(x.acs),
                 _count(x.macs), x.energy_pj(p) / 1e3] for x in f.layers]
        console.print(table(f"synaptic operations per image, {f.form} form",
                            ["layer", "input", "events", "AC", "MAC", "nJ"], rows))
    weights = [[x.name, x.kind, _count(x.ann_macs), x.shared_weights, x.unshared_weights]
               for x in _union(forms) if x.input != "elements"]
    console.print(table("per layer: ANN MACs and synaptic weights", ["layer", "op", "ANN MAC", "shared", "unshared"],
                        weights))
    console.print(table("totals per image", ["", *names, "ANN"], _total_rows(report)))
    for note in report.notes:
        console.print(f"[dim]{note}[/]")


def _plain(text: str) -> str:
    """User text shown verbatim in a line that uses rich markup."""
    return text.replace("[", "\\[")


def _union(forms) -> list:
    """Every layer once (the latest form's record where several have it), in first-seen order."""
    latest = {x.name: x for f in forms for x in f.layers}
    return [latest[name] for name in dict.fromkeys(x.name for f in forms for x in f.layers)]


def _total_rows(report) -> list[list[Any]]:
    ann_energy = report.ann_energy_pj
    totals = [f.totals(report.profile, ann_energy) for f in report.forms]

    def row(label: str, key: str, ann: Any = None, scale: float = 1.0, integer: bool = True) -> list[Any]:
        values = [(_count(t[key] * scale) if integer else t[key] * scale) for t in totals]
        return [label, *values, ann]

    return [
        row("spikes", "spikes"),
        row("synaptic events", "events"),
        row("ACs", "acs", _count(report.ann_acs)),
        row("MACs", "macs", _count(report.ann_macs)),
        row("  MACs on analog input (stem, BN)", "macs_on_analog_inputs"),
        row("energy (µJ)", "energy_uj", ann_energy * 1e-6, integer=False),
        row("energy / ANN energy", "ann_ratio", 1.0, integer=False),
        row("stored parameters", "parameters"),
        row("weights, shared kernels", "weights_shared"),
        row("weights, unshared", "weights_unshared"),
        row("weights this form needs", "weights_needed"),
    ]


def _plot(report, path: Path) -> None:
    """Energy per layer (nJ, log scale): one bar per form, and the ANN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = report.profile
    layers = _union(report.forms)
    names = [x.name for x in layers]
    series = {f.form: {x.name: x.energy_pj(p) / 1e3 for x in f.layers} for f in report.forms}
    series["ANN"] = {x.name: (p.e_mac_pj * x.ann_macs + p.e_ac_pj * x.ann_acs) / 1e3 for x in layers}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names)), 4.5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [values.get(n, 0.0) for n in names], width, label=label)
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel(f"energy per image (nJ, {p.name})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
