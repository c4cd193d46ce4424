"""The LIF kernels against the plain-autograd reference: bit-exact eager path, fused math, compiled path."""

from __future__ import annotations

import os

import pytest
import torch

from realspike_cli.core import kernels
from realspike_cli.core.neuron import LIFNeuron, lif_reference
from realspike_cli.core.specs import NeuronSpec

SPECS = [NeuronSpec(), NeuronSpec(decay=0.2), NeuronSpec(decay=0.7, v_th=0.3, surrogate_width=0.6), NeuronSpec("if")]


def inputs(steps: int, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    x = torch.randn(steps, *shape, dtype=dtype) * 0.7 + 0.3
    # values exactly on the threshold and on both window edges (inputs at t=0 equal the membrane)
    x.view(steps, -1)[0, :3] = torch.tensor([0.5, 0.0, 1.0], dtype=dtype)
    return x


def reference(x: torch.Tensor, grad: torch.Tensor, spec: NeuronSpec) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    out = lif_reference(x, spec)
    (out * grad).sum().backward()
    return out.detach(), x.grad


def run(neuron: LIFNeuron, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().flatten(0, 1).requires_grad_()
    out = neuron(leaf)
    out.backward(grad.flatten(0, 1))
    return out.detach().unflatten(0, x.shape[:2]), leaf.grad.unflatten(0, x.shape[:2])


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.decay}-{s.v_th}")
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_eager_is_bit_identical_to_autograd_reference(spec, steps):
    x = inputs(steps, 6, 4, 5)
    grad = torch.randn_like(x)
    want_out, want_grad = reference(x, grad, spec)
    out, got = run(LIFNeuron(spec, steps, backend="eager"), x, grad)
    assert torch.equal(out, want_out)
    assert torch.equal(got, want_grad)


@pytest.mark.parametrize("spec", SPECS[:2] + SPECS[3:], ids=lambda s: f"{s.kind}-{s.decay}")
def test_fused_math_matches_reference_in_float64(spec):
    # The functions the compiled path hands to inductor, run eagerly: same math, exact in float64.
    x = inputs(4, 3, 7)
    grad = torch.randn_like(x)
    want_out, want_grad = reference(x, grad, spec)
    spikes, h = kernels._fused_forward(x, spec.decay, spec.v_th)
    grad_x = kernels._fused_backward(h, grad, spec.decay, spec.v_th, spec.surrogate_width / 2)
    assert torch.equal(spikes, want_out)
    assert torch.equal(grad_x, want_grad)


def test_eager_keeps_channels_last_and_takes_any_grad_layout():
    spec, steps = NeuronSpec(), 3
    x = inputs(steps, 2, 4, 5, 6)
    grad = torch.randn_like(x)
    want_out, want_grad = reference(x, grad, spec)
    leaf = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = LIFNeuron(spec, steps, backend="eager")(leaf)
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.backward(grad.flatten(0, 1).transpose(2, 3).contiguous().transpose(2, 3))  # a third layout
    assert torch.equal(out.unflatten(0, (steps, -1)), want_out)
    assert torch.equal(leaf.grad.unflatten(0, (steps, -1)), want_grad)


def test_rows_view_roundtrip_keeps_memory_and_layout():
    x = torch.randn(6, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    rows, order = kernels._rows(x.unflatten(0, (2, 3)))
    assert rows.shape == (2, 3 * 3 * 4 * 5) and rows.data_ptr() == x.data_ptr()
    back = kernels._unrows(rows, x.unflatten(0, (2, 3)), order)
    assert torch.equal(back.flatten(0, 1), x) and back.stride() == x.unflatten(0, (2, 3)).stride()


def test_backend_selection(monkeypatch):
    from realspike_cli.core.errors import ConfigError

    monkeypatch.delenv(kernels.ENV_BACKEND, raising=False)
    assert kernels.default_backend() == "eager"
    monkeypatch.setenv(kernels.ENV_BACKEND, "compiled")
    assert kernels.default_backend() == "compiled"
    assert not hasattr(kernels, "set_default_backend")  # no process-wide setter to leak between models
    monkeypatch.setenv(kernels.ENV_BACKEND, "bogus")
    with pytest.raises(ConfigError, match="REALSPIKE_LIF_BACKEND='bogus' is not a LIF backend"):
        kernels.default_backend()
    with pytest.raises(ConfigError, match="unknown LIF backend"):
        LIFNeuron(NeuronSpec(), 2, backend="cuda")


@pytest.mark.skipif(
    not os.environ.get("REALSPIKE_TEST_COMPILE"),
    reason="compiles with inductor: seconds with a warm cache, minutes cold; set REALSPIKE_TEST_COMPILE=1",
)
def test_compiled_backend_matches_reference():
    # One small compilation per direction; inductor may contract a·b + c into one rounding.
    spec, steps = NeuronSpec(), 4
    x = inputs(steps, 8, 3, 5, 5, dtype=torch.float32)
    grad = torch.randn_like(x)
    want_out, want_grad = reference(x, grad, spec)
    out, got = run(LIFNeuron(spec, steps, backend="compiled"), x, grad)
    assert torch.equal(out, want_out)
    torch.testing.assert_close(got, want_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("setting, shape", [("layer", (4, 3, 3)), ("channel", (4, 3, 3)), ("element", (4, 3, 3))])
def test_real_spike_saves_bool_spikes_with_autograd_identical_gradients(setting, shape):
    from realspike_cli.core.neuron import RealSpike
    from realspike_cli.core.specs import Spike

    coeff = RealSpike(Spike(setting), shape).double()
    with torch.no_grad():
        coeff.a.uniform_(0.5, 1.5)
    spikes = (torch.rand(6, *shape, dtype=torch.float64) > 0.5).double().requires_grad_()
    grad = torch.randn(6, *shape, dtype=torch.float64)
    (spikes * coeff.a * grad).sum().backward()
    want_a, want_spikes = coeff.a.grad.clone(), spikes.grad.clone()
    coeff.a.grad = spikes.grad = None
    out = coeff(spikes)
    assert out.grad_fn.name().endswith("_ScaleSpikesBackward")
    (out * grad).sum().backward()
    assert torch.equal(coeff.a.grad, want_a) and torch.equal(spikes.grad, want_spikes)
