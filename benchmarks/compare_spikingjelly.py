"""realspike vs SpikingJelly 2.0 on this machine, in one process: LIF kernel, training step, inference, memory.

Run `python benchmarks/compare_spikingjelly.py` (about 3 minutes on 2 cores); see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_utils import (  # noqa: E402
    SJNeuron,
    big_conv,
    build,
    compare_spikes,
    interleaved,
    training_flops,
    variant,
)

from realspike_cli.core import kernels  # noqa: E402
from realspike_cli.core.neuron import LIFNeuron  # noqa: E402
from realspike_cli.core.runtime import keep_freed_memory  # noqa: E402
from realspike_cli.core.specs import NeuronSpec  # noqa: E402

BATCH, STEPS = 32, 4
NETS = {"resnet20": 1.0, "vgg16": 0.25}  # arch: width ("small width" VGG16: 16..128 channels)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def emit(out: list[str], text: str) -> None:
    print(text, flush=True)
    out.append(text)


# LIF kernel alone ---------------------------------------------------------------------------------------


def lif_section(reps: int, out: list[str]) -> None:
    from spikingjelly.activation_based import surrogate

    spec = NeuronSpec()
    rows = []
    for steps in (4, 10):
        x = (torch.randn(steps * BATCH, 128, 16, 16) * 0.7 + 0.3).requires_grad_()
        grad = torch.randn_like(x)
        sj_sigmoid = SJNeuron(spec, steps)
        sj_sigmoid.node.surrogate_function = surrogate.Sigmoid()  # SJ's registered CPU op (not Rect)
        neurons = {
            "sj": SJNeuron(spec, steps),
            "sj-sigmoid-op": sj_sigmoid,
            "eager": LIFNeuron(spec, steps, backend="eager"),
            "compiled": LIFNeuron(spec, steps, backend="compiled"),
        }

        def fwd_bwd(neuron: torch.nn.Module, x: torch.Tensor = x, grad: torch.Tensor = grad) -> None:
            x.grad = None
            neuron(x).backward(grad)

        with torch.no_grad():
            same = torch.equal(neurons["sj"](x), neurons["eager"](x))
        kernels.compile_seconds.clear()
        t = interleaved({k: (lambda n=n: fwd_bwd(n)) for k, n in neurons.items()}, reps)
        compile_s = sum(kernels.compile_seconds.values())
        rows.append(
            [
                f"[{steps}, {BATCH}, 128, 16, 16]",
                "yes" if same else "NO",
                f"{t['sj'] * 1e3:.0f}",
                f"{t['sj'] / t['sj-sigmoid-op']:.2f}×",
                f"{t['sj'] / t['eager']:.2f}×",
                f"{t['sj'] / t['compiled']:.2f}×",
                f"{compile_s:.1f} s",
            ]
        )
    header = [
        "input [T, B, C, H, W]",
        "same spikes",
        "SJ Rect ms",
        "SJ Sigmoid op",
        "ours eager",
        "ours compiled",
        "compile (first call)",
    ]
    emit(out, "\n### LIF kernel alone: forward + backward, speed-up over SpikingJelly LIFNode (torch, Rect)\n")
    emit(out, table(header, rows))


# Networks -----------------------------------------------------------------------------------------------


def network_section(arch: str, width: float, reps: int, layouts: list[str], graph: bool, out: list[str]) -> None:
    base = build(arch, width, "binary", STEPS)
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, 10, (BATCH,))
    check = compare_spikes(variant(base, "eager"), variant(base, "sj"), x)
    check_c = compare_spikes(variant(base, "compiled"), variant(base, "eager"), x)
    emit(
        out,
        f"\n{arch} (width {width}), T={STEPS}, B={BATCH}: {check['layers']} neuron layers, {check['spikes']:,} "
        f"neuron-steps, firing rate {check['firing_rate']:.3f}; spikes differing from SpikingJelly: "
        f"{check['flips']}, logits max diff {check['logit_diff']:.2e}, weight grads rel. diff "
        f"{check['grad_rel_diff']:.2e}; compiled vs eager: {check_c['flips']} spikes differ, grads "
        f"{check_c['grad_rel_diff']:.2e}",
    )
    flops = training_flops(base, x)
    names = ("sj", "eager", "compiled", "graph", "floor") if graph else ("sj", "eager", "compiled", "floor")
    kinds = [k + suffix for suffix in layouts for k in names]
    models = {k: variant(base, k) for k in kinds}
    inputs = {k: x.contiguous(memory_format=torch.channels_last) if k.endswith("+cl") else x for k in kinds}
    optims = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}

    def step(k: str) -> None:
        loss = F.cross_entropy(models[k](inputs[k]), y)
        optims[k].zero_grad(set_to_none=True)
        loss.backward()
        optims[k].step()

    import time

    first = {}
    for k in kinds:  # first step: oneDNN primitive creation, and compilation for "compiled"
        start = time.perf_counter()
        step(k)
        first[k] = time.perf_counter() - start
    fns = {k: (lambda k=k: step(k)) for k in kinds}
    convs = {suffix: big_conv(suffix == "+cl") for suffix in layouts}
    for suffix, (run, _) in convs.items():
        fns["conv" + suffix] = run
    t = interleaved(fns, reps, warmup=0)  # the first steps above were the warm-up
    rows = []
    for k in kinds:
        name, plus, layout = k.partition("+")
        suffix = plus + layout
        conv_rate = convs[suffix][1] / t["conv" + suffix]
        rate = flops / t[k]
        label = "floor: convs only (no neurons, no BN)" if name == "floor" else name
        rows.append(
            [
                f"{label}{' channels_last' if layout else ''}",
                f"{t[k] * 1e3:.0f}",
                f"{BATCH / t[k]:.1f}",
                f"{t['sj' + suffix] / t[k]:.2f}×",
                f"{rate / 1e9:.0f}",
                f"{100 * rate / conv_rate:.0f}% of {conv_rate / 1e9:.0f}",
                f"{first[k] - t[k]:.1f} s",
            ]
        )
    header = [
        "training step",
        "ms",
        "images/s",
        "× SJ (same layout)",
        "conv GFLOP/s",
        "% of big-conv rate",
        "first step − median",
    ]
    emit(out, f"\n{flops / 1e9:.1f} GFLOP (conv + linear) per step\n")
    emit(out, table(header, rows))


def inference_section(arch: str, width: float, reps: int, materialized: bool, out: list[str]) -> None:
    from realspike_cli.core.reparam import to_inference

    model = build(arch, width, "element", STEPS).eval()
    with torch.no_grad():  # non-trivial coefficients and BN statistics, so nothing folds away
        for m in model.modules():
            if hasattr(m, "a"):
                m.a.uniform_(0.5, 1.5)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    forms = {"training form": model, "factorized": to_inference(model)}
    if materialized:
        forms["materialized"] = to_inference(model, materialize=True)
    x = torch.randn(BATCH, 3, 32, 32)

    def run(m: torch.nn.Module) -> None:
        with torch.no_grad():
            m(x)

    t = interleaved({k: (lambda m=m: run(m)) for k, m in forms.items()}, reps)
    base = t["training form"]
    rows = [[k, f"{v * 1e3:.0f}", f"{BATCH / v:.1f}", f"{v / base:.2f}×"] for k, v in t.items()]
    emit(out, f"\n{arch} (width {width}) inference, element-wise Real Spike, eval mode, B={BATCH}\n")
    emit(out, table(["form", "ms", "images/s", "time / training form"], rows))


# Memory: one fresh process per configuration --------------------------------------------------------------


def _status() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def memory_worker(arch: str, width: float, kind: str) -> None:
    """Peak RSS of one training step above the RSS just before it (after a warm-up step), in bytes."""
    model = variant(build(arch, width, "binary", STEPS), kind)
    fmt = torch.channels_last if kind.endswith("+cl") else torch.contiguous_format
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (BATCH,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    for i in range(2):
        if i == 1:
            with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark to the current RSS
                f.write("5")
            before = _status()["VmRSS"]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    peak = _status()["VmHWM"]
    print(json.dumps({"before": before, "peak": peak, "step": peak - before}))


def memory_section(nets: dict[str, float], layouts: list[str], out: list[str]) -> None:
    """One fresh subprocess per row, so each high-water mark belongs to one configuration only."""
    # Large blocks always mmapped, so freed memory leaves RSS and the high-water mark tracks live tensors.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    rows = []
    for arch, width in nets.items():
        res = {}
        for kind in [k + s for s in layouts for k in ("sj", "eager", "compiled")]:
            cmd = [sys.executable, __file__, "--memory-worker", arch, str(width), kind]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            res[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        for kind, r in res.items():
            sj = res["sj" + kind.partition("+")[1] + kind.partition("+")[2]]
            rows.append(
                [
                    f"{arch} {kind.replace('+cl', ' channels_last')}",
                    f"{r['step'] / 2**20:.0f}",
                    f"{r['step'] / sj['step']:.2f}×",
                    f"{r['peak'] / 2**20:.0f}",
                    f"{r['peak'] / sj['peak']:.2f}×",
                ]
            )
    emit(out, f"\nPeak memory of one training step (T={STEPS}, B={BATCH}), fresh process per row\n")
    emit(out, table(["configuration", "step MiB", "× SJ", "process peak MiB", "× SJ"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions per configuration")
    parser.add_argument("--only", default="lif,net,inference,memory", help="sections to run")
    parser.add_argument("--arch", default=",".join(NETS), help="networks to run (comma-separated)")
    parser.add_argument("--no-channels-last", action="store_true", help="skip the channels_last rows")
    parser.add_argument(
        "--whole-model", action="store_true", help="also time torch.compile(model) ('graph'; minutes to compile)"
    )
    parser.add_argument("--memory-channels-last", action="store_true", help="also measure channels_last memory")
    parser.add_argument("--materialized", action="store_true", help="also time the materialized inference form")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--memory-worker", nargs=3, metavar=("ARCH", "WIDTH", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        arch, width, kind = args.memory_worker
        return memory_worker(arch, float(width), kind)
    keep_freed_memory()
    from importlib.metadata import version

    layouts = [""] if args.no_channels_last else ["", "+cl"]
    sections = set(args.only.split(","))
    out: list[str] = []
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    emit(
        out,
        f"{datetime.date.today()}: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}, spikingjelly {version('spikingjelly')}, "
        f"{args.reps} interleaved repetitions, medians",
    )
    if "lif" in sections:
        lif_section(args.reps, out)
    nets = {arch: NETS[arch] for arch in args.arch.split(",")}
    for arch, width in nets.items():
        if "net" in sections:
            network_section(arch, width, args.reps, layouts, args.whole_model, out)
        if "inference" in sections:
            inference_section(arch, width, args.reps, args.materialized or arch == "vgg16", out)
    if "memory" in sections:
        memory_section(nets, layouts if args.memory_channels_last else [""], out)
    if args.markdown:
        args.markdown.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
