"""The LIF/IF neuron against hand-computed values, the fast BPTT against autograd, and Real Spike shapes."""

from __future__ import annotations

import pytest
import torch

from realspike_cli.core.neuron import LIFNeuron, RealSpike, SpikeActivation, lif_reference
from realspike_cli.core.specs import NeuronSpec, Spike


def run(neuron: LIFNeuron, x_time_major: torch.Tensor) -> torch.Tensor:
    return neuron(x_time_major.flatten(0, 1)).unflatten(0, x_time_major.shape[:2])


def test_lif_forward_matches_hand_computation():
    # decay 0.25, threshold 0.5, hard reset to 0:
    # t0: u=0.3 -> no spike; t1: u=0.25*0.3+0.3=0.375 -> no; t2: u=0.25*0.375+0.45=0.54375 -> spike, reset;
    # t3: u=0+0.5=0.5 -> spike (u >= v_th fires); t4: u=0+0.1=0.1 -> no.
    x = torch.tensor([0.3, 0.3, 0.45, 0.5, 0.1]).view(5, 1, 1)
    out = run(LIFNeuron(NeuronSpec(), 5), x)
    assert out.flatten().tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]


def test_if_neuron_has_no_leak():
    x = torch.tensor([0.2, 0.2, 0.2]).view(3, 1, 1)
    out = run(LIFNeuron(NeuronSpec(kind="if"), 3), x)
    assert out.flatten().tolist() == [0.0, 0.0, 1.0]  # 0.2, 0.4, 0.6 ≥ 0.5


def test_surrogate_gradient_is_rectangular_on_zero_to_one():
    # One step: do/du = 1 exactly on 0 ≤ u ≤ 1, else 0.
    u = torch.tensor([-0.5, -0.01, 0.0, 0.3, 0.5, 0.99, 1.0, 1.01, 2.0]).view(1, -1, 1).requires_grad_()
    run(LIFNeuron(NeuronSpec(), 1), u).sum().backward()
    assert u.grad.flatten().tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]


def test_two_step_gradient_by_hand():
    # h0 = x0 = 0.3 (no spike, window 1), h1 = 0.25*h0 + x1 = 0.075 + 0.6 = 0.675 (spike, window 1).
    # dL/do1 = 1, dL/do0 = 0: dL/dx1 = σ'(h1) = 1; dL/dx0 = dL/dh1 * 0.25 * du0/dh0,
    # du0/dh0 = (1 - o0) - h0*σ'(h0) = 1 - 0.3 = 0.7 -> 0.175.
    x = torch.tensor([0.3, 0.6], dtype=torch.float64).view(2, 1, 1).requires_grad_()
    out = run(LIFNeuron(NeuronSpec(), 2), x)
    out[1].sum().backward()
    assert x.grad.flatten().tolist() == pytest.approx([0.175, 1.0])


@pytest.mark.parametrize("kind", ["lif", "if"])
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_fast_path_equals_autograd_reference(kind, steps):
    spec = NeuronSpec(kind=kind)
    x = (torch.randn(steps, 3, 4, 5, dtype=torch.float64) * 0.7 + 0.3).requires_grad_()
    grad = torch.randn_like(x)
    ref = lif_reference(x, spec)
    (ref * grad).sum().backward()
    expected = x.grad.clone()
    x.grad = None
    fast = run(LIFNeuron(spec, steps), x)
    (fast * grad).sum().backward()
    assert torch.equal(fast, ref)
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-12)


def test_neuron_is_stateless_between_calls():
    neuron = LIFNeuron(NeuronSpec(), 4)
    x = torch.rand(4 * 2, 3)
    assert torch.equal(neuron(x), neuron(x))


@pytest.mark.parametrize(
    "setting, feature, expected",
    [
        (Spike.LAYER, (8, 5, 5), ()),
        (Spike.CHANNEL, (8, 5, 5), (8, 1, 1)),
        (Spike.ELEMENT, (8, 5, 5), (8, 5, 5)),
        (Spike.CHANNEL, (16,), (16,)),
        (Spike.ELEMENT, (16,), (16,)),
    ],
)
def test_real_spike_coefficient_shapes_and_gradients(setting, feature, expected):
    coeff = RealSpike(setting, feature)
    assert tuple(coeff.a.shape) == expected and torch.all(coeff.a == 1)
    spikes = (torch.rand(6, *feature) > 0.5).float()
    out = coeff(spikes)
    assert torch.equal(out, spikes)  # initialised to 1
    out.sum().backward()
    # d(sum a·o)/da = number of spikes sharing each coefficient
    reduce_dims = [0] + [d + 1 for d, n in enumerate(expected) if n == 1] if expected else None
    counted = spikes.sum() if reduce_dims is None else spikes.sum(dim=reduce_dims, keepdim=True)[0]
    torch.testing.assert_close(coeff.a.grad, counted.reshape(expected))


def test_binary_activation_has_no_coefficient():
    act = SpikeActivation(NeuronSpec(), 2, Spike.BINARY, (4, 3, 3))
    assert act.coeff is None and not list(act.parameters())
    out = act(torch.randn(2 * 2, 4, 3, 3))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
