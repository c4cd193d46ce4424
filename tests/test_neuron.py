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


def test_ternary_forward_matches_hand_computation():
    # decay 0.25, thresholds ±0.5, hard reset to 0 after a spike of either sign:
    # t0: u=-0.3 -> 0; t1: -0.075-0.45=-0.525 -> -1, reset; t2: 0.5 -> +1 (≥ fires), reset;
    # t3: -0.5 -> -1 (≤ −V_th fires), reset; t4: 0.2 -> 0; t5: 0.05+0.4=0.45 -> 0.
    x = torch.tensor([-0.3, -0.45, 0.5, -0.5, 0.2, 0.4], dtype=torch.float64).view(6, 1, 1)
    for backend in ("eager",):
        out = run(LIFNeuron(NeuronSpec(), 6, backend, ternary=True), x)
        assert out.flatten().tolist() == [0.0, -1.0, 1.0, -1.0, 0.0, 0.0]


def test_soft_reset_matches_hand_computation():
    # soft reset subtracts s·V_th: t0: 0.8 -> 1, u=0.3; t1: 0.075+0.1=0.175 -> 0; t2: 0.04375+0.5=0.54375 -> 1,
    # u=0.04375; ternary: t3 (x=-1.2): 0.0109375-1.2=-1.1890625 -> -1, u=-0.6890625; t4 (x=0): -0.172265625 -> 0.
    x = torch.tensor([0.8, 0.1, 0.5, -1.2, 0.0], dtype=torch.float64).view(5, 1, 1)
    binary = run(LIFNeuron(NeuronSpec(reset="soft"), 5), x)
    assert binary.flatten().tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    ternary = run(LIFNeuron(NeuronSpec(reset="soft"), 5, ternary=True), x)
    assert ternary.flatten().tolist() == [1.0, 0.0, 1.0, -1.0, 0.0]


def test_ternary_surrogate_is_one_on_both_windows():
    # One step: ds/du = 1 exactly on |u| ≤ 1 (default), and on 0.3 ≤ |u| ≤ 0.7 for v_th 0.5, width 0.4.
    u = torch.tensor([-1.01, -1.0, -0.7, -0.5, -0.29, 0.0, 0.29, 0.3, 0.7, 0.71, 1.0, 1.01], dtype=torch.float64)
    wide = u.view(1, -1, 1).clone().requires_grad_()
    run(LIFNeuron(NeuronSpec(), 1, ternary=True), wide).sum().backward()
    assert wide.grad.flatten().tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    narrow = u.view(1, -1, 1).clone().requires_grad_()
    run(LIFNeuron(NeuronSpec(surrogate_width=0.4), 1, ternary=True), narrow).sum().backward()
    assert narrow.grad.flatten().tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0]


@pytest.mark.parametrize(
    "ternary, reset, detach, expected",
    [
        # h0 = 0.6 (spike +1 in both alphabets, in the window), h1 = 0.25·u0 + x1; dL/ds1 = 1, dL/ds0 = 0.
        # hard, differentiated: du0/dh0 = (1 − |s0|) − h0·σ'(h0)·sign(s0) = −0.6 -> dL/dx0 = 0.25·(−0.6)
        (False, "hard", False, -0.15),
        (True, "hard", False, -0.15),
        (False, "hard", True, 0.0),  # detached: du0/dh0 = 1 − |s0| = 0
        (False, "soft", False, 0.125),  # soft: du0/dh0 = 1 − V_th·σ'(h0) = 0.5 -> 0.125
        (True, "soft", True, 0.25),  # soft, detached: du0/dh0 = 1
    ],
)
def test_reset_gradient_by_hand(ternary, reset, detach, expected):
    x = torch.tensor([0.6, 0.45], dtype=torch.float64).view(2, 1, 1).requires_grad_()
    out = run(LIFNeuron(NeuronSpec(reset=reset, detach_reset=detach), 2, ternary=ternary), x)
    out[1].sum().backward()
    # h1 is in the window in every case (0.45, or 0.45 + 0.25·0.1 = 0.475 after a soft reset): dL/dx1 = 1
    assert x.grad.flatten().tolist() == pytest.approx([expected, 1.0])


def test_ternary_reset_gradient_vanishes_without_a_spike_as_in_the_authors_code():
    # s0 = 0 inside the window (h0 = 0.3): torch.abs has zero derivative at 0, so du0/dh0 = 1 (binary: 1 − 0.3)
    x = torch.tensor([0.3, 0.45], dtype=torch.float64).view(2, 1, 1)
    grads = []
    for ternary in (False, True):
        leaf = x.clone().requires_grad_()
        run(LIFNeuron(NeuronSpec(), 2, ternary=ternary), leaf)[1].sum().backward()
        grads.append(leaf.grad.flatten().tolist())
    assert grads == [pytest.approx([0.25 * 0.7, 1.0]), pytest.approx([0.25, 1.0])]


@pytest.mark.parametrize(
    "setting, expected",
    [("ternary", None), ("ternary-layer", ()), ("ternary-channel", (8, 1, 1)), ("ternary-element", (8, 5, 5))],
)
def test_ternary_settings_share_the_binary_granularities(setting, expected):
    from realspike_cli.core.neuron import coefficient_shape

    assert coefficient_shape(Spike(setting), (8, 5, 5)) == expected
    act = SpikeActivation(NeuronSpec(), 2, Spike(setting), (8, 5, 5))
    assert act.neuron.ternary and act.neuron.spike_values == (-1.0, 0.0, 1.0)
    assert (act.coeff is None) == (expected is None)
    out = act(torch.randn(2 * 3, 8, 5, 5) * 2)
    assert set(out.unique().tolist()) == {-1.0, 0.0, 1.0}  # a initialised to 1


def test_spike_enum_properties():
    assert [s.value for s in Spike if s.ternary] == ["ternary", "ternary-layer", "ternary-channel", "ternary-element"]
    assert Spike("ternary-channel").granularity is Spike.CHANNEL and Spike.TERNARY.granularity is Spike.BINARY
    assert Spike.ELEMENT.granularity is Spike.ELEMENT and Spike.LAYER.spike_values == (0.0, 1.0)
    assert Spike.TERNARY_LAYER.spike_values == (-1.0, 0.0, 1.0)
