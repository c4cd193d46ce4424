"""Ternary vs binary multi-step LIF kernel, forward + backward, same run, both backends.

Run `python benchmarks/ternary_kernel.py` (about 2 minutes on 2 cores, compilation included); it prints a
table and writes benchmarks/results/ternary_kernel.json. Each repeat times the four kernels interleaved
(A, B, C, D, A, B, ...) so load drifts hit all alike; the reported ratio is the median over repeats of the
same-repeat ratio ternary / binary. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench_utils import interleaved  # noqa: E402

from realspike_cli.core import kernels  # noqa: E402
from realspike_cli.core.neuron import LIFNeuron  # noqa: E402
from realspike_cli.core.runtime import keep_freed_memory  # noqa: E402
from realspike_cli.core.specs import NeuronSpec  # noqa: E402

BATCH, CHANNELS, SIZE = 32, 128, 16
KERNELS = {  # name: (backend, ternary)
    "binary eager": ("eager", False),
    "ternary eager": ("eager", True),
    "binary compiled": ("compiled", False),
    "ternary compiled": ("compiled", True),
}


def measure(steps: int, reps: int, repeats: int, spec: NeuronSpec) -> dict:
    x = (torch.randn(steps * BATCH, CHANNELS, SIZE, SIZE) * 0.8 + 0.1).requires_grad_()
    grad = torch.randn_like(x)
    neurons = {k: LIFNeuron(spec, steps, backend, ternary=ternary) for k, (backend, ternary) in KERNELS.items()}

    def fwd_bwd(neuron: LIFNeuron) -> None:
        x.grad = None
        neuron(x).backward(grad)

    with torch.no_grad():  # the two backends agree on the spikes (float32; fused roundings could flip a few)
        agree = {t: int((neurons[f"{t} eager"](x) != neurons[f"{t} compiled"](x)).sum()) for t in ("binary", "ternary")}
        rate = {t: float(neurons[f"{t} eager"](x).abs().mean()) for t in ("binary", "ternary")}
    kernels.compile_seconds.clear()
    rounds = []
    for _ in range(repeats):
        rounds.append(interleaved({k: (lambda n=n: fwd_bwd(n)) for k, n in neurons.items()}, reps))
    median_ms = {k: 1e3 * statistics.median(r[k] for r in rounds) for k in KERNELS}
    ratios = {
        b: statistics.median(r[f"ternary {b}"] / r[f"binary {b}"] for r in rounds) for b in ("eager", "compiled")
    }
    return {
        "input": [steps, BATCH, CHANNELS, SIZE, SIZE],
        "median_ms": median_ms,
        "ternary_over_binary": ratios,
        "ratios_per_repeat": {
            b: [r[f"ternary {b}"] / r[f"binary {b}"] for r in rounds] for b in ("eager", "compiled")
        },
        "spikes_differing_eager_vs_compiled": agree,
        "firing_rate_abs": rate,
        "compile_seconds": sum(kernels.compile_seconds.values()),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(results: list[dict]) -> str:
    header = ["input [T, B, C, H, W]", "binary eager ms", "ternary eager ms", "ternary / binary eager",
              "binary compiled ms", "ternary compiled ms", "ternary / binary compiled"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        ms, ratio = r["median_ms"], r["ternary_over_binary"]
        cells = [str(r["input"]), f"{ms['binary eager']:.1f}", f"{ms['ternary eager']:.1f}", f"{ratio['eager']:.2f}×",
                 f"{ms['binary compiled']:.1f}", f"{ms['ternary compiled']:.1f}", f"{ratio['compiled']:.2f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="interleaved timings per kernel in one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="independent repeats (medians are reported)")
    parser.add_argument("--steps", default="4,10", help="time steps T to measure, comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, 2 here)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ternary_kernel.json")
    args = parser.parse_args()
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = NeuronSpec()
    load_before = os.getloadavg()
    results = [measure(int(t), args.reps, args.repeats, spec) for t in args.steps.split(",")]
    record = {
        "benchmark": "ternary vs binary LIF kernel, forward + backward",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"processor": cpu_model(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                    "note": "cores shared with other jobs while measuring; compare same-run ratios only"},
        "neuron": spec.to_dict(),
        "reps": args.reps,
        "repeats": args.repeats,
        "results": results,
    }
    print(table(results))
    for r in results:
        print(f"T={r['input'][0]}: ratios per repeat {r['ratios_per_repeat']}, spikes differing eager vs compiled "
              f"{r['spikes_differing_eager_vs_compiled']}, compile {r['compile_seconds']:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
