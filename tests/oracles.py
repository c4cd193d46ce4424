"""Independent oracles for the export tests: the written files run by onnxruntime and by snnTorch's NIR
importer (third-party readers), compared here with the checkpoint's own PyTorch forward; spikes counted by
hooks written here. The exporters' own checks (compare_logits, nir_sim) are never the judge."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from torch import nn

from realspike_cli.core.checkpoint import load_checkpoint
from realspike_cli.core.neuron import LIFNeuron
from realspike_cli.core.specs import Encoding, ModelSpec


def own_probe(spec: ModelSpec, n: int = 8, seed: int = 5) -> torch.Tensor:
    """Inputs drawn here (not the exporter's probe): N(0, 1) images, or event frames with ~30 % events."""
    g = torch.Generator().manual_seed(seed)
    if spec.encoding is Encoding.FRAMES:
        return (torch.rand(n, spec.time_steps, spec.in_channels, *spec.input_size, generator=g) < 0.3).float()
    return torch.randn(n, spec.in_channels, *spec.input_size, generator=g)


def assert_onnx_runs_the_checkpoint(onnx_path, checkpoint) -> None:
    """The ONNX file run by onnxruntime here vs the checkpoint's own model (as saved: the training form of a
    training checkpoint) run by PyTorch in float64: same predictions, logits equal up to float32 rounding."""
    model, meta = load_checkpoint(checkpoint)
    x = own_probe(meta.spec)
    with torch.no_grad():
        want = model.double().eval()(x.double())
    got = onnx_logits(onnx_path, x).double()
    assert torch.equal(got.argmax(1), want.argmax(1))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * float(want.abs().max()))


def onnx_logits(path, x: torch.Tensor) -> torch.Tensor:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def snntorch_run(path, x: torch.Tensor, steps: int):
    """The NIR file read by snnTorch's importer and run `steps` steps (direct encoding: the same x every step;
    event frames [B, T, ...]: frame t at step t); logits averaged over time and spikes per Leaky layer."""
    nir = pytest.importorskip("nir")
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # its importer prints progress
        net = import_from_nir(nir.read(str(path)))
    for m in net.modules():  # its Flatten keeps NIR's batch-free start_dim 0, flattening the batch: shift it
        if isinstance(m, nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1
    counts: dict[str, torch.Tensor] = {}
    for name, m in net.named_modules():
        if isinstance(m, snn.Leaky):
            m.register_forward_hook(lambda _m, _i, o, n=name: counts.__setitem__(n, counts.get(n, 0) + o.sum()))
    utils.reset(net)
    with torch.no_grad():
        state, outs = None, []
        for t in range(steps):
            out, state = net(x[:, t] if x.dim() == 5 else x, state)
            outs.append(out)
    return torch.stack(outs).mean(0), counts


def spike_counts(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Logits and spikes per neuron layer (NIR's node names: '.' -> '_'), by hooks written here."""
    counts: dict[str, float] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=name.replace(".", "_"): counts.__setitem__(
        n, counts.get(n, 0.0) + float(o.sum()))) for name, m in model.named_modules() if isinstance(m, LIFNeuron)]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, counts


def assert_nir_runs_the_checkpoint(nir_path, checkpoint) -> None:
    """The NIR file run by snnTorch here vs the checkpoint's own model (the training form) run by PyTorch in
    float64 on inputs drawn here: logits equal up to float32 rounding, the same spike count in every layer."""
    model, meta = load_checkpoint(checkpoint)
    x = own_probe(meta.spec)
    want, want_counts = spike_counts(model.double().eval(), x.double())
    got, got_counts = snntorch_run(nir_path, x, meta.spec.time_steps)
    assert torch.equal(got.argmax(1), want.argmax(1))
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5 * float(want.abs().max()))
    assert {n: float(c) for n, c in got_counts.items()} == want_counts and sum(want_counts.values()) > 0
