"""`realspike energy --plot`: per-layer stacked bars (compute vs neuron updates and overhead vs memory) for every
form and storage, and the energy per image against the firing rate with both baselines and the crossovers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STACK = (("compute", "compute (AC/MAC)"), ("neuron", "neuron updates, biases"),
         ("overhead", "addressing, reconstruction"), ("memory", "memory accesses"))


def draw(report: Any, path: Path) -> None:
    """Write the figure as PNG to `path` (any file name: the format is given, not guessed from it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = report.memory
    names = list(dict.fromkeys(x.name for f in mem.forms for x in (*f.layers, *f.neurons)))
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(max(13.0, 0.35 * len(names) * len(mem.forms) + 7), 5.5),
                                      gridspec_kw={"width_ratios": [1.5, 1]})
    _bars(bars, mem, names)
    _curve(curve, mem)
    fig.suptitle(f"energy per image: profile {report.profile.name}, memory {mem.profile.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def _bars(ax: Any, mem: Any, names: list[str]) -> None:
    colors = ("#4c72b0", "#55a868", "#c44e52", "#8172b2")
    width = 0.8 / len(mem.forms)
    hatches = ("", "//", "..", "xx")
    for i, f in enumerate(mem.forms):
        by_name = {x.name: x for x in (*f.layers, *f.neurons)}
        xs = [j + (i - (len(mem.forms) - 1) / 2) * width for j in range(len(names))]
        bottom = [0.0] * len(names)
        for (group, label), color in zip(STACK, colors, strict=True):
            heights = [by_name[n].pj(group=group) / 1e3 if n in by_name else 0.0 for n in names]
            ax.bar(xs, heights, width, bottom=bottom, color=color, hatch=hatches[i % len(hatches)],
                   edgecolor="white", linewidth=0.3, label=label if i == 0 else None)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("energy per image (nJ)")
    forms = ", ".join(f"{f.label}{' (' + hatches[i % 4] + ')' if hatches[i % 4] else ''}"
                      for i, f in enumerate(mem.forms))
    ax.set_title(f"per layer, bars left to right: {forms}", fontsize=8)
    ax.legend(fontsize=7)


def _curve(ax: Any, mem: Any) -> None:
    from realspike_cli.core.energy_baselines import rate_curve

    marks = [c.crossover_rate for c in mem.crossovers if c.crossover_rate is not None and c.crossover_rate < 1]
    top = min(1.0, 1.2 * max([f.rate for f in mem.forms] + marks + [0.05]))
    rates = [top * i / 200 for i in range(201)]
    colors = {}
    for i, f in enumerate(mem.forms):
        style = ("-", "--", "-.", ":")[i % 4]
        line = ax.plot(rates, [e * 1e-6 for e in rate_curve(f, rates)], style, label=f.label)[0]
        colors[f.label] = line.get_color()
        ax.plot([f.rate], [f.pj() * 1e-6], "o", color=line.get_color())
    for baseline, style in ((mem.qnn, "--"), (mem.ann, ":")):
        ax.axhline(baseline.pj() * 1e-6, color="black", linestyle=style, linewidth=1, label=baseline.name)
    shown = 0
    for c in mem.crossovers:
        if c.crossover_rate is not None and 0 < c.crossover_rate <= top:
            ax.plot([c.crossover_rate], [c.baseline_pj * 1e-6], "x", color=colors[c.form], markersize=9, mew=2)
            if c.baseline == mem.qnn.name:  # the crossover the report is about: labelled, staggered
                ax.annotate(f"{c.crossover_rate:.4f}", (c.crossover_rate, c.baseline_pj * 1e-6), fontsize=7,
                            color=colors[c.form], textcoords="offset points", xytext=(6, -12 - 10 * shown))
                shown += 1
    ax.set_xlabel("firing rate (spikes per neuron per step)")
    ax.set_ylabel("memory-inclusive energy per image (µJ)")
    ax.set_title("energy vs rate (spike pattern scaled); ● measured, × crossover", fontsize=8)
    ax.set_xlim(0, top)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
