"""The LIF kernels against the plain-autograd reference: bit-exact eager path, fused math, compiled path, for
binary and ternary spikes, hard and soft reset, differentiated and detached reset."""

from __future__ import annotations

import os

import pytest
import torch

from realspike_cli.core import kernels, kernels_fused
from realspike_cli.core.neuron import LIFNeuron, lif_reference
from realspike_cli.core.specs import NeuronSpec

SPECS = [NeuronSpec(), NeuronSpec(decay=0.2), NeuronSpec(decay=0.7, v_th=0.3, surrogate_width=0.6), NeuronSpec("if")]
# (ternary, reset, detach_reset): every combination of the neuron's options
OPTIONS = [(t, r, d) for t in (False, True) for r in ("hard", "soft") for d in (False, True)]
# a window narrower than 2·v_th, so a ternary neuron's two windows are disjoint (and the test hits the gap)
NARROW = dict(decay=0.7, v_th=0.3, surrogate_width=0.4)


def option_id(option: tuple[bool, str, bool]) -> str:
    ternary, reset, detach = option
    return f"{'ternary' if ternary else 'binary'}-{reset}{'-detached' if detach else ''}"


def inputs(steps: int, *shape: int, dtype: torch.dtype = torch.float64, ternary: bool = False) -> torch.Tensor:
    x = torch.randn(steps, *shape, dtype=dtype) * (1.0 if ternary else 0.7) + (0.0 if ternary else 0.3)
    # values exactly on the thresholds and on the window edges (inputs at t=0 equal the membrane)
    edges = [0.5, 0.0, 1.0, -0.5, -1.0, 0.3, -0.3, 0.1, -0.1, 0.5000001, -0.4999999]
    x.view(steps, -1)[0, : len(edges)] = torch.tensor(edges, dtype=dtype)
    return x


def reference(
    x: torch.Tensor, grad: torch.Tensor, spec: NeuronSpec, ternary: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    out = lif_reference(x, spec, ternary)
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


@pytest.mark.parametrize("option", OPTIONS, ids=option_id)
@pytest.mark.parametrize("constants", [{}, NARROW, {"kind": "if"}], ids=["default", "narrow", "if"])
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_eager_options_are_bit_identical_to_autograd_reference(option, constants, steps):
    ternary, reset, detach = option
    spec = NeuronSpec(reset=reset, detach_reset=detach, **constants)
    x = inputs(steps, 6, 4, 5, ternary=ternary)
    grad = torch.randn_like(x)
    want_out, want_grad = reference(x, grad, spec, ternary)
    out, got = run(LIFNeuron(spec, steps, backend="eager", ternary=ternary), x, grad)
    assert torch.equal(out, want_out)
    assert torch.equal(got, want_grad)


@pytest.mark.parametrize("option", OPTIONS, ids=option_id)
@pytest.mark.parametrize("spec", SPECS[:2] + SPECS[3:] + [NeuronSpec(**NARROW)], ids=lambda s: f"{s.kind}-{s.decay}")
def test_fused_math_matches_reference_in_float64(spec, option):
    # The functions the compiled path hands to inductor, run eagerly: same math, exact in float64.
    ternary, reset, detach = option
    spec = NeuronSpec(spec.kind, spec.decay, spec.v_th, spec.surrogate_width, reset=reset, detach_reset=detach)
    x = inputs(4, 3, 7, ternary=ternary)
    grad = torch.randn_like(x)
    want_out, want_grad = reference(x, grad, spec, ternary)
    spikes, h = kernels_fused.fused_forward(x, spec.decay, spec.v_th, ternary, reset == "soft")
    half = spec.surrogate_width / 2
    grad_x = kernels_fused.fused_backward(h, grad, spec.decay, spec.v_th, half, ternary, reset == "soft", detach)
    assert torch.equal(spikes, want_out)
    assert torch.equal(grad_x, want_grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("v_th", [0.5, 0.3, 1e-3, 7.0])
def test_just_below_is_the_next_value_towards_zero(dtype, v_th):
    # hardshrink(h, just_below(v_th)) must keep exactly |h| ≥ v_th (as `h >= v_th` rounds v_th to h's dtype)
    below = kernels.just_below(v_th, dtype)
    at = float(torch.tensor(v_th, dtype=dtype))
    if dtype in (torch.float32, torch.float64):
        assert below == float(torch.nextafter(torch.tensor(at, dtype=dtype), torch.zeros((), dtype=dtype)))
    x = torch.tensor([below, at, -below, -at], dtype=dtype)
    assert below < at and torch.hardshrink(x, below).ne(0).tolist() == [False, True, False, True]
    assert (x.abs() >= v_th).tolist() == [False, True, False, True]


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
    rows, order = kernels_fused.rows_view(x.unflatten(0, (2, 3)))
    assert rows.shape == (2, 3 * 3 * 4 * 5) and rows.data_ptr() == x.data_ptr()
    back = kernels_fused.unrows(rows, x.unflatten(0, (2, 3)), order)
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
@pytest.mark.parametrize("option", OPTIONS, ids=option_id)
def test_compiled_backend_matches_reference(option):
    # One small compilation per direction and option; inductor may contract a·b + c into one rounding,
    # which can move a membrane across the threshold only when it lies within an ulp of it.
    ternary, reset, detach = option
    spec, steps = NeuronSpec(reset=reset, detach_reset=detach), 4
    x = inputs(steps, 8, 3, 5, 5, dtype=torch.float32, ternary=ternary)
    grad = torch.randn_like(x)
    want_out, want_grad = reference(x, grad, spec, ternary)
    out, got = run(LIFNeuron(spec, steps, backend="compiled", ternary=ternary), x, grad)
    assert torch.equal(out, want_out)
    torch.testing.assert_close(got, want_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "setting", ["layer", "channel", "element", "ternary-layer", "ternary-channel", "ternary-element"]
)
def test_real_spike_saves_int8_spikes_with_autograd_identical_gradients(setting):
    from realspike_cli.core.neuron import RealSpike
    from realspike_cli.core.specs import Spike

    shape = (4, 3, 3)
    coeff = RealSpike(Spike(setting), shape).double()
    with torch.no_grad():
        coeff.a.uniform_(-1.5, 1.5)
    low = -1 if Spike(setting).ternary else 0
    spikes = torch.randint(low, 2, (6, *shape)).double().requires_grad_()
    grad = torch.randn(6, *shape, dtype=torch.float64)
    (spikes * coeff.a * grad).sum().backward()
    want_a, want_spikes = coeff.a.grad.clone(), spikes.grad.clone()
    coeff.a.grad = spikes.grad = None
    out = coeff(spikes)
    assert out.grad_fn.name().endswith("_ScaleSpikesBackward")
    saved = [t for t in out.grad_fn.saved_tensors if t.dtype == torch.int8]
    assert len(saved) == 1 and saved[0].element_size() == 1  # 1 byte per spike, signs kept
    (out * grad).sum().backward()
    assert torch.equal(coeff.a.grad, want_a) and torch.equal(spikes.grad, want_spikes)
