"""Memory-inclusive energy of the mnist10k zoo models: the numbers in docs/energy.md, regenerated.

Each zoo checkpoint (zoo/weights/realspike/*mnist10k*/model.safetensors) is measured once on the first test
images with `estimate_energy` (what `realspike energy` prints, under the default `45nm` compute profile and
the `lemaire` memory preset) and priced again under every other memory preset from the same counts.

    python benchmarks/energy_zoo.py                              # prints the markdown table
    python benchmarks/energy_zoo.py --update-docs                # rewrites the table in docs/energy.md
    python benchmarks/energy_zoo.py --batches 2 --batch-size 32  # a smoke run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from realspike_cli.core.checkpoint import atomic_write, load_checkpoint
from realspike_cli.core.energy_baselines import memory_report
from realspike_cli.core.energy_estimate import estimate_energy
from realspike_cli.core.energy_profiles.memory import memory_presets
from realspike_cli.core.inputs import first_test_batches

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- energy-zoo:begin (benchmarks/energy_zoo.py) -->", "<!-- energy-zoo:end -->"


def measure(path: Path, batches: int, batch_size: int) -> dict:
    model, meta = load_checkpoint(path)
    xs, described = first_test_batches(meta, batches=batches, batch_size=batch_size)
    report = estimate_energy(model, xs, "45nm", source=described["source"])
    rows = []
    for name, preset in memory_presets().items():
        mem = report.memory if name == report.memory.profile.name else memory_report(
            report.forms, report.ann_layers, report.profile, preset)
        crossings = {(c.form, c.baseline): c for c in mem.crossovers}
        for f in mem.forms:
            c = crossings[(f.label, mem.qnn.name)]
            rows.append({"model": path.parent.name, "spike": meta.spec.spike.value, "memory": name, "form": f.label,
                         "rate": f.rate, "compute_uj": f.pj(group="compute") * 1e-6, "memory_uj": f.pj() * 1e-6,
                         "ann_compute_uj": mem.ann.pj(group="compute") * 1e-6, "ann_uj": mem.ann.pj() * 1e-6,
                         "qnn_bits": mem.qnn.bits, "qnn_uj": mem.qnn.pj() * 1e-6,
                         "crossover_vs_qnn": c.crossover_rate, "verdict": c.verdict})
    return {"model": path.parent.name, "images": report.inputs["images"], "rows": rows}


def markdown(results: list[dict]) -> str:
    images = {r["images"] for r in results}
    lines = [f"Measured on the first {', '.join(map(str, sorted(images)))} mnist10k test images; compute profile "
             "`45nm`; per image. `compute` is the compute-only figure (AC/MAC), `memory-incl.` the full model.",
             "",
             "| model | memory | form (storage) | rate | compute µJ | memory-incl. µJ | ANN µJ (compute / incl.) | "
             "QNN µJ | crossover vs QNN | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        for r in result["rows"]:
            cross = "–" if r["crossover_vs_qnn"] is None else f"{r['crossover_vs_qnn']:.4f}"
            lines.append(f"| {r['model']} | {r['memory']} | {r['form']} | {r['rate']:.4f} | {r['compute_uj']:.3f} | "
                         f"{r['memory_uj']:.2f} | {r['ann_compute_uj']:.3f} / {r['ann_uj']:.2f} | "
                         f"{r['qnn_uj']:.2f} ({r['qnn_bits']}-bit) | {cross} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def update_docs(table: str, docs: Path) -> None:
    text = docs.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + table + text[end:]
    atomic_write(docs, lambda tmp: tmp.write_text(new, encoding="utf-8"), overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "energy_zoo.json")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the table in docs/energy.md")
    args = parser.parse_args()
    paths = sorted((ROOT / "zoo" / "weights" / "realspike").glob("*mnist10k*/model.safetensors"))
    if not paths:
        raise SystemExit("no mnist10k zoo checkpoints under zoo/weights/realspike (realspike zoo pull NAME)")
    results = [measure(p, args.batches, args.batch_size) for p in paths]
    table = markdown(results)
    print(table)
    payload = json.dumps(results, indent=2) + "\n"
    atomic_write(args.results, lambda tmp: tmp.write_text(payload, encoding="utf-8"), overwrite=True)
    if args.update_docs:
        update_docs(table, ROOT / "docs" / "energy.md")


if __name__ == "__main__":
    main()
