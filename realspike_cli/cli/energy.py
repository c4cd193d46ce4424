"""`realspike energy CKPT`: spikes, synaptic operations, compute-only and memory-inclusive energy per layer,
the ANN and quantized-ANN baselines and the crossover spike rate, per image."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from realspike_cli.cli import options as opt

PLAIN_PROGRESS_SECONDS = 5.0  # without a terminal: one progress line this often (and one at the end)


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
    memory: str = typer.Option(
        "lemaire", "--memory",
        help="Energy per memory access by buffer size: lemaire, horowitz-dram, one-to-one, or a TOML/JSON file.",
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Write the full report as JSON to PATH ('-': stdout)."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a PNG: per-layer compute vs memory energy, and energy vs spike rate."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --json/--plot files."),
    device: str = opt.Device,
) -> None:
    """Count spikes, accumulates (AC) and multiply-accumulates (MAC) per image on real inputs, and their energy:
    compute-only, and with neuron updates, addressing and memory accesses priced by buffer size.

    A training-form checkpoint is also converted to its inference form, and both are shown side by side,
    next to the same network run as an ANN and as a bit-matched quantized ANN, with the firing rate below
    which the SNN would beat each.
    """
    from realspike_cli.cli.energy_tables import render
    from realspike_cli.cli.render import console, print_json
    from realspike_cli.core.checkpoint import load_checkpoint
    from realspike_cli.core.energy_estimate import estimate_energy
    from realspike_cli.core.energy_profiles import resolve_profile
    from realspike_cli.core.energy_profiles.memory import resolve_memory
    from realspike_cli.core.errors import ConfigError
    from realspike_cli.core.inputs import first_test_batches
    from realspike_cli.core.train import resolve_device

    if batches < 1:
        raise ConfigError(f"--batches must be at least 1, got {batches}")
    energy_profile, memory_profile = resolve_profile(profile), resolve_memory(memory)
    to_stdout = json_path is not None and str(json_path) == "-"
    _check_outputs([p for p in (None if to_stdout else json_path, plot) if p is not None], overwrite)
    if plot is not None:
        _require_matplotlib()
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, dev)
    inputs, described = first_test_batches(meta, batches=batches, batch_size=batch_size, dataset=dataset,
                                           data_dir=data_dir, random=random_inputs)
    with _progress(len(inputs), on_stderr=to_stdout) as tick:
        report = estimate_energy(model, inputs, energy_profile, memory=memory_profile, source=described["source"],
                                 progress=tick)
    data = {"checkpoint": str(checkpoint), "model": meta.spec.to_dict(), "form": meta.form.value,
            **report.to_dict()}
    if to_stdout:
        print_json(data)
    else:
        render(report, meta, checkpoint)
        if json_path is not None:
            _write(json_path, lambda tmp: tmp.write_text(_dumps(data), encoding="utf-8"), overwrite)
            console.print(f"[bold green]wrote[/] {_plain(str(json_path))}")
    if plot is not None:
        from realspike_cli.cli.energy_plot import draw

        _write(plot, lambda tmp: draw(report, tmp), overwrite)
        if not to_stdout:
            console.print(f"[bold green]wrote[/] {_plain(str(plot))}")


def _check_outputs(paths: list[Path], overwrite: bool) -> None:
    """Refuse before measuring: an existing file without --overwrite, a folder, a path under a file or in an
    unwritable folder, or one path given twice."""
    from realspike_cli.core.errors import ConfigError
    from realspike_cli.core.files import check_output

    if len(paths) == 2 and paths[0].resolve() == paths[1].resolve():
        raise ConfigError(f"--json and --plot name the same file: {paths[0]}")
    for path in paths:
        check_output(path, overwrite=overwrite)


def _write(path: Path, write: Callable[[Path], Any], overwrite: bool) -> None:
    """Atomic (a full disk or a crash never leaves half a file), refusing to replace without --overwrite."""
    from realspike_cli.core.files import atomic_write

    atomic_write(path, write, overwrite=overwrite)


@contextlib.contextmanager
def _progress(total: int, *, on_stderr: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar over the batches in a terminal; otherwise a plain line on stderr every few seconds
    (stdout stays the report). `on_stderr`: the report itself goes to stdout (JSON), so the bar may not."""
    from rich import progress as rp

    from realspike_cli.cli.render import console, errors

    screen = errors if on_stderr else console
    if screen.is_terminal:
        columns = (rp.TextColumn("measuring batches"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn(),
                   rp.TimeRemainingColumn())
        with rp.Progress(*columns, console=screen, transient=True) as bar:
            task = bar.add_task("batches", total=total)
            yield lambda done, _total: bar.update(task, completed=done)
        return
    last = time.monotonic()

    def tick(done: int, all_batches: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PLAIN_PROGRESS_SECONDS or done == all_batches:
            errors.print(f"measured {done}/{all_batches} batches", markup=False, highlight=False)
            last = now

    yield tick


def _dumps(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, default=str) + "\n"


def _plain(text: str) -> str:
    """User text shown verbatim in a line that uses rich markup."""
    return text.replace("[", "\\[")


def _require_matplotlib() -> None:
    from realspike_cli.core.errors import ConfigError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'realspike[plot]'") from None
