"""Shared benchmark plumbing: interleaved timing, the SpikingJelly twin of a realspike network, FLOP counts.

Every comparison runs in one process with the same threads, batch and input for both frameworks.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from realspike_cli.core.models import build_model
from realspike_cli.core.neuron import LIFNeuron
from realspike_cli.core.specs import ModelSpec, NeuronSpec


def interleaved(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each fn, timed A, B, C, A, B, C, … so load drifts hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def big_conv(channels_last: bool = False) -> tuple[Callable[[], object], float]:
    """A large 3×3 conv (the machine's best case) and its FLOPs: the reference for 'fraction of conv rate'."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=fmt)
    x = torch.randn(32, 256, 16, 16).contiguous(memory_format=fmt)
    flops = 2.0 * 32 * 256 * 16 * 16 * 256 * 9

    def run() -> object:
        with torch.no_grad():
            return conv(x)

    return run, flops


def training_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Conv + linear FLOPs of one training step: forward, grad of weights, grad of inputs that need one."""
    total = 0.0

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            fwd = 2.0 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            fwd = 2.0 * out.numel() * m.in_features
        total += fwd * (3 if inputs[0].requires_grad else 2)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return total


# SpikingJelly twin ---------------------------------------------------------------------------------------


class SJNeuron(nn.Module):
    """SpikingJelly 2.0's multi-step LIFNode (IFNode for decay 1) in place of a LIFNeuron, same dynamics.

    Ours: h = decay·u + x. SpikingJelly with decay_input=False and v_reset=0: h = v − v/τ + x, so
    τ = 1/(1 − decay). Rect(α) has gradient α on |h − v_th| < 0.5/α; ours is 1 on |h − v_th| ≤ width/2, the
    same function for width 1 and α = 1 (up to the measure-zero boundary). detach_reset=False differentiates
    the reset as ours does. SpikingJelly's multi-step conv/BN layers fold time into the batch exactly as
    realspike does, so only the neuron differs between the twins.
    """

    def __init__(self, spec: NeuronSpec, time_steps: int) -> None:
        super().__init__()
        from spikingjelly.activation_based import neuron, surrogate

        if spec.surrogate_width != 1.0:
            raise ValueError("SpikingJelly's Rect matches our surrogate only for width 1")
        common = dict(
            v_threshold=spec.v_th,
            v_reset=0.0,
            detach_reset=False,
            surrogate_function=surrogate.Rect(alpha=1.0),
            step_mode="m",
        )
        if spec.decay == 1.0:
            self.node = neuron.IFNode(**common)
        else:
            self.node = neuron.LIFNode(tau=1.0 / (1.0 - spec.decay), decay_input=False, **common)
        self.time_steps = time_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.node.reset()  # stateless per call, like ours
        return self.node(x.unflatten(0, (self.time_steps, -1))).flatten(0, 1)


def to_spikingjelly(model: nn.Module) -> nn.Module:
    """A deep copy of `model` (same weights) with every LIFNeuron replaced by its SpikingJelly twin."""
    twin = copy.deepcopy(model)
    for parent in twin.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, LIFNeuron):
                setattr(parent, name, SJNeuron(child.spec, child.time_steps))
    return twin


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    for m in model.modules():
        if isinstance(m, LIFNeuron):
            m.backend = backend
    return model


def build(arch: str, width: float, spike: str, time_steps: int, seed: int = 0) -> nn.Module:
    spec = ModelSpec(
        arch=arch,
        num_classes=10,
        in_channels=3,
        input_size=(32, 32),
        time_steps=time_steps,
        spike=spike,
        arch_kwargs={"width": width},
    )
    torch.manual_seed(seed)
    return build_model(spec)


def conv_floor(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with every neuron and BatchNorm replaced by Identity: what remains (convs,
    pooling, adds, the classifier, loss and optimizer) is the part no neuron implementation can speed up,
    so SJ's step time over this one bounds the speed-up any implementation of the rest can reach."""
    floor = copy.deepcopy(model)
    for parent in floor.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, (LIFNeuron, nn.BatchNorm2d)):
                setattr(parent, name, nn.Identity())
    return floor


def variant(base: nn.Module, kind: str) -> nn.Module:
    """'sj', 'eager', 'compiled' (LIF kernels), 'graph' (the whole model through torch.compile) or 'floor'
    (convs only, see `conv_floor`), with a '+cl' suffix for channels_last; weights copied from `base`."""
    name, _, layout = kind.partition("+")
    if name == "floor":
        model = conv_floor(base)
    elif name == "sj":
        model = to_spikingjelly(base)
    else:
        model = set_backend(copy.deepcopy(base), "eager" if name == "eager" else "compiled")
    if layout == "cl":
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if name == "graph" else model


def spike_record(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and every neuron layer's spikes, in module order."""
    spikes: list[torch.Tensor] = []
    kinds = (LIFNeuron, SJNeuron)
    handles = [
        m.register_forward_hook(lambda _m, _i, out: spikes.append(out.detach().contiguous()))
        for m in model.modules()
        if isinstance(m, kinds)
    ]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, spikes


def compare_spikes(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Same input, same weights, train mode: spikes that differ (count), logits' max difference, and the
    relative difference ‖g₁ − g₂‖/‖g₂‖ of all weight gradients together."""
    results = []
    for model in (ours, theirs):
        model.zero_grad(set_to_none=True)
        logits, spikes = spike_record(model, x)
        logits.sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((logits.detach(), spikes, grads))
    (l1, s1, g1), (l2, s2, g2) = results
    flips = sum(int((a != b).sum()) for a, b in zip(s1, s2, strict=True))
    total = sum(a.numel() for a in s1)
    diff = sum(float((a.double() - b.double()).pow(2).sum()) for a, b in zip(g1, g2, strict=True))
    grad_rel = (diff / max(sum(float(b.double().pow(2).sum()) for b in g2), 1e-300)) ** 0.5
    return {
        "layers": len(s1),
        "spikes": total,
        "firing_rate": sum(float(a.sum()) for a in s1) / total,
        "flips": flips,
        "logit_diff": float((l1 - l2).abs().max()),
        "grad_rel_diff": grad_rel,
    }
