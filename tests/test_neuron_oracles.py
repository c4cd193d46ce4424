"""The neuron against numbers worked out by hand (paper Eq. 1–3: h_t = decay·u_{t−1} + x_t, spike when
h_t ≥ v_th, hard reset u_t = h_t·(1 − s_t)), including inputs that land exactly on the threshold — random
floats never do, so a flipped comparison (> for ≥) goes unnoticed by randomized kernel-vs-reference tests.
Every implementation is judged by the same hand numbers: the autograd reference, the eager kernel behind
LIFNeuron, and the unrolled form the exporters trace."""

from __future__ import annotations

import pytest
import torch

from realspike_cli.core.neuron import FiringRule, LIFNeuron, lif_reference, unrolled_lif
from realspike_cli.core.specs import NeuronSpec

SPEC = NeuronSpec(kind="lif", decay=0.5, v_th=1.0)
# Column by column (one neuron each), worked out by hand with decay 0.5, v_th 1:
#   x = 1, 0, 0     h = 1 (= v_th: fires), 0, 0                       -> spikes 1, 0, 0
#   x = 0.5, 0.75, 1  h = 0.5, 1.0 (fires, reset), 1.0 (fires again)  -> spikes 0, 1, 1
#   x = 0.75, 0.5, 0  h = 0.75, 0.875, 0.4375                         -> spikes 0, 0, 0
#   x = 0.8, 0.3, 0.9  h = 0.8, 0.7, 1.25 (fires)                     -> spikes 0, 0, 1
X = torch.tensor([[1.0, 0.5, 0.75, 0.8], [0.0, 0.75, 0.5, 0.3], [0.0, 1.0, 0.0, 0.9]], dtype=torch.float64)
SPIKES = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)


def test_reference_matches_hand_numbers_on_and_off_the_threshold():
    torch.testing.assert_close(lif_reference(X, SPEC), SPIKES, rtol=0, atol=0)


def test_eager_kernel_matches_hand_numbers():
    neuron = LIFNeuron(SPEC, time_steps=3)
    torch.testing.assert_close(neuron(X.reshape(3, 4)), SPIKES, rtol=0, atol=0)  # [T·B, ...] with B = 1 row


def test_unrolled_form_matches_hand_numbers():
    rule = FiringRule(SPEC.decay, SPEC.v_th, None, None)
    torch.testing.assert_close(unrolled_lif(X, 3, rule), SPIKES, rtol=0, atol=0)


@pytest.mark.parametrize("h, grad", [(0.5, 1.0), (1.0, 1.0), (1.5, 1.0), (0.49, 0.0), (1.51, 0.0), (3.0, 0.0)])
def test_surrogate_window_is_one_on_the_closed_interval_around_v_th(h, grad):
    """Width 1 around v_th = 1: dS/dh = 1 exactly on 0.5 ≤ h ≤ 1.5 (at T = 1, h = x), 0 elsewhere."""
    spec = NeuronSpec(kind="lif", decay=0.5, v_th=1.0, surrogate_width=1.0)
    x = torch.tensor([[h]], dtype=torch.float64, requires_grad=True)
    lif_reference(x, spec).sum().backward()
    assert float(x.grad) == grad
