"""NIR (Neuromorphic Intermediate Representation): the inference form as a NIR graph, checked by running the
written file in a reference simulator that follows the NIR definitions (nir_sim)."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from realspike_cli.core.export.common import (
    Dynamics,
    ExportError,
    compare_logits,
    dynamics_of,
    refuse_if_different,
    require,
    short,
)
from realspike_cli.core.export.nir_build import UNSHARED, NIRBuilder
from realspike_cli.core.export.nir_dense import DenseEmitter
from realspike_cli.core.export.nir_layers import LayerEmitter
from realspike_cli.core.export.nir_sim import simulate
from realspike_cli.core.export.registry import ExportJob, register_exporter
from realspike_cli.core.graph import is_spiking_neuron, trace
from realspike_cli.core.spike_recorder import SpikeRecorder
from realspike_cli.core.synapses import SynapticScale
from realspike_cli.core.threshold_neuron import ThresholdLIF


@register_exporter(
    "nir", suffix=".nir", requires=("nir",),
    description="NIR graph (snnTorch, Norse, Sinabs, Lava...): LIF/IF nodes, conv/affine/pool/flatten; "
    "element-wise models as dense Affine maps; run one step per time step and average the Output node",
)
def export_nir(job: ExportJob) -> dict[str, Any]:
    nir = require("nir", "nir")
    refuse_inexpressible_neurons(job.model)
    options = job.options
    spec = dynamics_of(job.model, job.probe, job.encoding)
    gm = job.model if isinstance(job.model, fx.GraphModule) else trace(job.model, error=ExportError,
                                                                         doing="export it to NIR")
    graph, mode = build_graph(gm, spec, torch.zeros_like(job.probe[:1]), dt=options.dt, pooling=options.pooling,
                              max_dense_weights=options.max_dense_weights)
    nir.write(str(job.path), graph)
    written = nir.read(str(job.path))
    probe = job.probe.double()  # float64 on both sides: a float32 rounding flip is not a mapping error
    logits, counts = simulate(written, time_major(probe, spec), options.dt)
    reference, ref_counts = run_with_spike_counts(copy.deepcopy(job.model).double(), probe)
    checks = compare_logits(reference, logits.mean(0))
    refuse_if_different("NIR", checks, options.tolerance, f"reference NIR simulation on {short(job.probe_text)}")
    differ = sum(float((counts[name] - ref_counts[name]).abs().sum()) for name in ref_counts)
    total = sum(float(c.sum()) for c in ref_counts.values())
    per_neuron = graph.metadata["thresholds"] == "per neuron"
    job.notes.extend(reader_notes(spec, options.dt, options.pooling, mode, per_neuron))
    return {**checks, "mode": mode, "nodes": len(written.nodes), "edges": len(written.edges), "dt": options.dt,
            "pooling": options.pooling, "spikes": int(total), "spike_count_diff": int(differ), "nir": nir.__version__}


def refuse_inexpressible_neurons(model: nn.Module) -> None:
    """NIR's LIF/IF emit 0/1 spikes and reset to v_reset: ternary spikes and a soft reset have no node."""
    for name, m in model.named_modules():
        if not is_spiking_neuron(m):
            continue
        if m.ternary:
            raise ExportError(f"NIR has no ternary spiking node (its LIF/IF emit 0/1 spikes), so {name} (ternary "
                              "spikes) cannot be exported to NIR; export onnx or pt2")
        if m.spec.reset == "soft":
            raise ExportError(f"NIR's LIF/IF reset to v_reset after a spike (a hard reset), so {name} (soft "
                              "reset) cannot be exported to NIR; export onnx or pt2")


def reader_notes(spec: Dynamics, dt: float, pooling: str, mode: str, per_neuron_thresholds: bool = False
                 ) -> list[str]:
    """What a user loading this file into snnTorch or Norse needs to know (docs/export.md has the details)."""
    notes = ["NIR fires on v > v_threshold, realspike on v >= V_th (differs only exactly at the threshold)"]
    if per_neuron_thresholds:
        notes.append("per-neuron v_threshold arrays (folded MPBN): Norse reads them, snnTorch's importer "
                     "requires one threshold per layer")
    if spec.neuron.decay >= 1.0:
        notes.append("IF neurons: read them with Norse (snnTorch's importer treats IF as a leaky neuron)")
    elif dt != 1e-4:
        notes.append(f"written for dt={dt:g}: snnTorch's importer assumes dt=1e-4; pass dt to Norse")
    notes.append("AvgPool2d nodes: snnTorch reads them, Norse does not (--nir-pooling sum)" if pooling == "avg"
                 else "SumPool2d nodes: Norse reads them, snnTorch does not (--nir-pooling avg)")
    if mode == "dense":
        notes.append("element-wise synapses are written as dense Affine maps between flat neuron populations")
    return notes


def time_major(x: torch.Tensor, spec: Dynamics) -> torch.Tensor:
    """[T, B, C, H, W]: the image repeated (direct encoding) or the frames in time order."""
    if spec.encoding.value == "frames":
        return x.transpose(0, 1)
    return x.unsqueeze(0).expand(spec.time_steps, *x.shape)


def run_with_spike_counts(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and each neuron layer's spike count per sample (summed over time and neurons)."""
    with torch.no_grad(), SpikeRecorder(model, per_sample=True) as recorder:
        logits = model(x)
    return logits, recorder.samples


def build_graph(gm: fx.GraphModule, spec: Dynamics, sample: torch.Tensor, *, dt: float, pooling: str,
                max_dense_weights: int) -> tuple[object, str]:
    """The NIR graph of an inference-form GraphModule and its mode ("layers" or "dense")."""
    builder = NIRBuilder(gm, spec, sample, dt, pooling)
    dense = any(isinstance(m, UNSHARED) for m in gm.modules()) or any(
        isinstance(m, SynapticScale) and m.a.dim() > 1 and m.a[0].numel() > 1 for m in gm.modules()
    )
    emitter = DenseEmitter(builder, max_dense_weights) if dense else LayerEmitter(builder)
    emitter.run()
    metadata = {
        "producer": "realspike",
        "dt": dt,
        "time_steps": spec.time_steps,
        "encoding": spec.encoding.value,
        "neuron": spec.neuron.kind,
        "decay": spec.neuron.decay,
        "v_th": spec.neuron.v_th,
        "thresholds": "per neuron" if any(isinstance(m, ThresholdLIF) for m in gm.modules()) else "v_th",
        "input_scale": builder.k,
        "pooling": pooling,
        "mode": "dense" if dense else "layers",
        "readout": "mean over the time steps of the output node",
    }
    try:
        graph = builder.nir.NIRGraph(builder.nodes, builder.edges, metadata=metadata)
    except ValueError as exc:  # nir checks the types along every edge
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"NIR rejects the graph: {first}") from None
    return graph, metadata["mode"]
