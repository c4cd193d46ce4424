"""The tables `realspike energy` prints: counts and compute-only energy (per form), memory-inclusive energy per
layer (per form and weight storage), totals beside both ANN baselines, crossover rates and every assumption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realspike_cli.cli.render import console, table

# Columns of the per-layer memory-inclusive tables: (heading, the priced lines it sums)
ENERGY_COLUMNS = (
    ("neuron upd.", ("neuron updates", "resets")),
    ("membrane r/w", ("membrane reads", "membrane writes")),
    ("spike writes", ("spike writes",)),
    ("weight reads", ("weight reads", "coefficient reads", "bias reads")),
    ("input reads", ("input reads", "input-current reads")),
    ("other", ("addressing", "weight reconstruction", "bias adds", "output writes")),
)
COUNT_COLUMNS = ("neuron updates", "membrane reads", "membrane writes", "spike writes", "weight reads", "input reads")


def _count(value: float) -> int:
    return int(round(value))


def _plain(text: str) -> str:
    return text.replace("[", "\\[")


def render(report: Any, meta: Any, checkpoint: Path) -> None:
    s, p = meta.spec, report.profile
    console.print(
        f"[bold]{_plain(str(checkpoint))}[/]: {s.arch}, {meta.form.value} form, T={s.time_steps}, "
        f"spike={s.spike.value}; {report.inputs['source']}, {report.inputs['images']:,} images; profile "
        f"[bold]{_plain(p.name)}[/]: E_MAC = {p.e_mac_pj:g} pJ, E_AC = {p.e_ac_pj:g} pJ "
        f"({_plain(p.source or 'no source given')})",
        highlight=False,
    )
    _compute_tables(report)
    if report.memory is not None:
        _memory_tables(report.memory)
    for note in report.notes:
        console.print(f"[dim]{_plain(note)}[/]")


def _compute_tables(report: Any) -> None:
    p, forms = report.profile, report.forms
    names = [f.form for f in forms]
    spikes = [{n.name: n for n in f.neurons} for f in forms]
    rows = [[n.name, n.neurons, n.time_steps, n.rate, *(_count(by[n.name].spikes) for by in spikes)]
            for n in forms[0].neurons]
    console.print(table("neurons, per image", ["layer", "neurons", "T", "rate", *(f"spikes ({f})" for f in names)],
                        rows))
    for f in forms:
        rows = [[x.name, x.input, None if x.input in ("analog", "elements") else _count(x.events), _count(x.acs),
                 _count(x.macs), x.energy_pj(p) / 1e3] for x in f.layers]
        console.print(table(f"synaptic operations per image, {f.form} form (compute only)",
                            ["layer", "input", "events", "AC", "MAC", "nJ"], rows))
    weights = [[x.name, x.kind, _count(x.ann_macs), x.shared_weights, x.unshared_weights,
                x.unshared_weights / x.shared_weights if x.shared_weights else None]
               for x in union(forms) if x.input != "elements"]
    console.print(table("per layer: ANN MACs and synaptic weights (unshared = one weight per distinct synapse)",
                        ["layer", "op", "ANN MAC", "shared", "unshared", "unshared / shared"], weights))
    console.print(table("compute-only totals per image", ["", *names, "ANN"], _total_rows(report)))


def union(forms: list[Any]) -> list[Any]:
    """Every layer once (the latest form's record where several have it), in first-seen order."""
    latest = {x.name: x for f in forms for x in f.layers}
    return [latest[name] for name in dict.fromkeys(x.name for f in forms for x in f.layers)]


def _total_rows(report: Any) -> list[list[Any]]:
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


def _memory_tables(mem: Any) -> None:
    m = mem.profile
    console.print(f"memory model [bold]{_plain(m.name)}[/] ({m.synapses} synapses, {m.access_bits}-bit accesses)",
                  highlight=False)
    seen: set[str] = set()
    for f in mem.forms:
        if f.form not in seen:  # access counts do not depend on the weight storage
            seen.add(f.form)
            rows = [[x.name, *(_count(x.count(c)) for c in COUNT_COLUMNS)] for x in (*f.layers, *f.neurons)]
            console.print(table(f"memory accesses and neuron updates per image, {f.form} form",
                                ["layer", *COUNT_COLUMNS], rows))
        rows = [[x.name, x.pj(group="compute") / 1e3, *(sum(x.pj(what=w) for w in ws) / 1e3
                                                         for _, ws in ENERGY_COLUMNS),
                 x.pj() / 1e3, x.weight_buffer_bytes / 1024 if x.kind != "neurons" else None]
                for x in (*f.layers, *f.neurons)]
        console.print(table(f"memory-inclusive energy per layer, {f.label} (nJ per image)",
                            ["layer", "compute", *(h for h, _ in ENERGY_COLUMNS), "total", "weight buffer KiB"], rows))
    console.print(table("memory-inclusive totals per image (µJ)", ["", *(f.label for f in mem.forms),
                                                                    mem.ann.name, mem.qnn.name], _memory_totals(mem)))
    rows = [[c.form, c.baseline, c.rate, c.crossover_rate, c.verdict] for c in mem.crossovers]
    console.print(table("crossover spike rate: the SNN beats the baseline below it (same presets)",
                        ["form", "baseline", "measured rate", "crossover rate", "verdict"], rows))
    for line in mem.assumptions:
        console.print(f"[dim]assumption: {_plain(line)}[/]")


def _memory_totals(mem: Any) -> list[list[Any]]:
    snn, baselines = mem.forms, (mem.ann, mem.qnn)

    def row(label: str, snn_value: Any, base_value: Any) -> list[Any]:
        return [label, *(snn_value(f) for f in snn), *(base_value(b) for b in baselines)]

    uj = 1e-6
    return [
        row("compute only", lambda f: f.pj(group="compute") * uj, lambda b: b.pj(group="compute") * uj),
        row("  + neuron updates, resets, biases", lambda f: f.pj(group="neuron") * uj,
            lambda b: b.pj(group="neuron") * uj),
        row("  + addressing, weight reconstruction", lambda f: f.pj(group="overhead") * uj,
            lambda b: b.pj(group="overhead") * uj),
        row("  + memory accesses", lambda f: f.pj(group="memory") * uj, lambda b: b.pj(group="memory") * uj),
        row("memory-inclusive", lambda f: f.pj() * uj, lambda b: b.pj() * uj),
        row("  of which ∝ spikes", lambda f: f.pj(per_spike=True) * uj, lambda b: None),
        row("memory-inclusive / QNN", lambda f: f.pj() / mem.qnn.pj(), lambda b: b.pj() / mem.qnn.pj()),
        row("weights stored (with biases)", lambda f: sum(x.weights_stored for x in f.layers),
            lambda b: sum(x.weights_stored for x in b.layers)),
    ]
