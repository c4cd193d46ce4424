"""Plots for people who would rather look than read: training curves of a run directory, accuracy vs T.

Drawn with matplotlib's object API (no pyplot, so no process-wide backend is switched) and written
atomically; an existing file is replaced only with `overwrite`. Each function returns the series it drew,
read back from the drawn lines: {panel title: {line label: (x values, y values)}}.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from realspike_cli.core.errors import ConfigError, DataError
from realspike_cli.core.files import atomic_write

Series = dict[str, dict[str, tuple[list[float], list[float]]]]
METRICS_FILE = "metrics.jsonl"
_MAX_METRICS_BYTES = 64 << 20  # a year of epochs is a few MB; anything larger is not a metrics file


def require_matplotlib(out: str | Path | None = None, overwrite: bool = False) -> None:
    """Fail before any work: matplotlib missing, or `out` exists and may not be replaced."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'realspike[plot]'") from None
    if out is not None and Path(out).exists() and not overwrite:
        raise ConfigError(f"{out} already exists; choose another output path or pass --overwrite")


def _figure(rows: int, cols: int, size: tuple[float, float]) -> Any:
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where} is not a number ({value!r})")
    return float(value)


def read_metrics(run_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The epoch records of a run's metrics.jsonl, and its final test line if any, validated."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise DataError(f"no {METRICS_FILE} in {run_dir}: not a realspike run directory (or no epoch finished yet)")
    if path.stat().st_size > _MAX_METRICS_BYTES:
        raise DataError(f"{path} is larger than {_MAX_METRICS_BYTES >> 20} MB: not a realspike metrics file")
    epochs, final = [], None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} ({type(exc).__name__})") from None
    for number, line in enumerate(lines, 1):
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except ValueError:
            raise DataError(f"{where} is not JSON") from None
        if not isinstance(record, dict):
            raise DataError(f"{where} is not a JSON object")
        for key, value in record.items():
            if key == "firing_rates":
                if not isinstance(value, dict):
                    raise DataError(f"{where}: firing_rates is not an object")
                for layer, rate in value.items():
                    _number(rate, f"{where}: firing rate of {layer}")
            elif key != "final":
                _number(value, f"{where}: {key}")
        if record.get("final") == "test":
            final = record
        elif isinstance(record.get("epoch"), int) and not isinstance(record["epoch"], bool):
            epochs.append(record)
        else:
            raise DataError(f"{where} has no epoch number")
    if not epochs:
        raise DataError(f"{path} holds no finished epoch yet")
    return epochs, final


def _line(ax: Any, records: list[dict[str, Any]], key: str, label: str, **style: Any) -> None:
    points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, **style)


def _drawn(axes: Sequence[Any]) -> Series:
    """What the axes show, read back from their labelled lines (guides such as axvline are unlabelled)."""
    return {ax.get_title(): {line.get_label(): ([float(x) for x in line.get_xdata()],
                                                [float(y) for y in line.get_ydata()])
                             for line in ax.get_lines() if not line.get_label().startswith("_")}
            for ax in axes}


def _save(fig: Any, out: Path, overwrite: bool) -> None:
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110), overwrite=overwrite)


def plot_training(run_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> Series:
    """Loss, top-1, learning rate and per-layer firing rate per epoch of a run directory, as one PNG."""
    records, final = read_metrics(run_dir)
    selection = "val" if any("val_top1" in r for r in records) else "test"
    fig, axes = _figure(2, 2, (11.0, 7.5))
    loss, top1, lr, rates = axes[0][0], axes[0][1], axes[1][0], axes[1][1]
    loss.set_title("loss")
    _line(loss, records, "train_loss", "train", marker="o")
    _line(loss, records, f"{selection}_loss", selection, marker="o")
    top1.set_title("top-1 accuracy")
    _line(top1, records, "train_top1", "train", marker="o")
    _line(top1, records, f"{selection}_top1", selection, marker="o")
    if final is not None and final.get("test_top1") is not None:
        top1.plot([final["epoch"]], [final["test_top1"]], "k*", markersize=12, label="test (selected model)")
    lr.set_title("learning rate (end of epoch)")
    _line(lr, records, "lr", "lr", marker="o")
    rates.set_title(f"firing rate per layer ({selection} set)")
    layers = list(dict.fromkeys(name for r in records for name in r.get("firing_rates", {})))
    for layer in layers:
        points = [(r["epoch"], r["firing_rates"][layer]) for r in records if layer in r.get("firing_rates", {})]
        rates.plot([p[0] for p in points], [p[1] for p in points], label=layer, marker=".")
    from matplotlib.ticker import MaxNLocator

    for ax in (loss, top1, lr, rates):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_lines():
            ax.legend(fontsize=7)
    fig.suptitle(f"{Path(run_dir).resolve().name}: {len(records)} epoch(s), best selected on {selection}")
    _save(fig, Path(out), overwrite)
    return _drawn([loss, top1, lr, rates])


def plot_accuracy_vs_time_steps(rows: Sequence[dict[str, Any]], out: str | Path, *, trained_at: int | None = None,
                                title: str = "", overwrite: bool = False) -> Series:
    """Top-1 against the number of time steps T (rows as `sweep_time_steps` returns them), as one PNG."""
    points = sorted((int(r["time_steps"]), float(r["top1"])) for r in rows)
    if not points or any(not math.isfinite(y) for _, y in points):
        raise ConfigError("nothing to plot: no finite accuracy")
    fig, axes = _figure(1, 1, (6.0, 4.0))
    ax = axes[0][0]
    ax.set_title(title or "top-1 accuracy vs time steps")
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label="top-1")
    if trained_at is not None:
        ax.axvline(trained_at, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("top-1")
    ax.set_xscale("log", base=2)
    ax.set_xticks([p[0] for p in points], [str(p[0]) for p in points])
    _save(fig, Path(out), overwrite)
    return _drawn([ax])
