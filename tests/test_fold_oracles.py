"""Each fold rule of `to_inference` against numbers worked out by hand or by naive Python loops written here
(never against the training form or the project's comparator): the paper's Eq. 11–13 (element-wise a:
K̃[k,l,i,j,m,n] = a[k+i−1, l+j−1, m]·K[i,j,m,n], one kernel per output position), layer- and channel-wise
scaling, BatchNorm folding, AvgPool composition, several spike sources into one layer, the identity-shortcut
scale, ternary spikes and MPBN's membrane thresholds. Every oracle is shown to catch a planted 1e-3.

The spikes are known: T = 1, a hard-reset LIF with V_th = 0.5 fed 1 (fires), 0 (does not) or −1 (ternary:
fires −1), so the binary tensor B of Eq. 10 is the input itself.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from realspike_cli.core.neuron import LIFNeuron, SpikeActivation
from realspike_cli.core.reparam import plan_folds, to_inference
from realspike_cli.core.specs import NeuronSpec, Spike
from realspike_cli.core.synapses import FactorizedSynapse, LocallyConnected2d, SharedSynapse, SynapticScale
from realspike_cli.core.threshold_neuron import ThresholdLIF

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def exact(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-12, atol=1e-12)


def catches_planted(check, value: torch.Tensor) -> None:
    """The oracle must fail when the value it is given is off by 1e-3 in one entry."""
    planted = value.detach().clone()
    planted.view(-1)[planted.numel() // 2] += 1e-3
    with pytest.raises(AssertionError):
        check(planted)


def spikes(shape: tuple[int, ...], seed: int, ternary: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(-1 if ternary else 0, 2, shape, generator=g).to(F64)
    assert (values == 1).any() and (values == 0).any()
    return values


def uniform(shape: tuple[int, ...], seed: int, low: float = -1.5, high: float = 1.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=F64) * (high - low) + low


def naive_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, stride: int = 1, pad: int = 0,
               groups: int = 1) -> torch.Tensor:
    """Eq. 9 with stride, zero padding and groups, one output element at a time. x [C, H, W], w [N, C/g, k, k]."""
    channels, height, width = x.shape
    n_out, per_group, k, _ = w.shape
    out_h, out_w = (height + 2 * pad - k) // stride + 1, (width + 2 * pad - k) // stride + 1
    out = torch.zeros(n_out, out_h, out_w, dtype=F64)
    for n in range(n_out):
        group = n // (n_out // groups)
        for r in range(out_h):
            for c in range(out_w):
                total = 0.0 if b is None else float(b[n])
                for m in range(per_group):
                    for i in range(k):
                        for j in range(k):
                            y, z = r * stride - pad + i, c * stride - pad + j
                            if 0 <= y < height and 0 <= z < width:
                                total += float(w[n, m, i, j]) * float(x[group * per_group + m, y, z])
                out[n, r, c] = total
    return out


def linear_map(model: nn.Module, in_shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix [outputs, inputs] a model applies to its spikes (bias removed), read off one-hot spike maps."""
    count = math.prod(in_shape)
    with torch.no_grad():
        basis = torch.eye(count, dtype=F64).view(count, *in_shape)
        zero = model(torch.zeros(1, *in_shape, dtype=F64))
        return (model(basis) - zero).flatten(1).T


# --- element-wise a: Eq. 11–13, one kernel per output position ----------------------------------------------


def unshared_kernels(a: torch.Tensor, kernel: torch.Tensor, stride: int, pad: int, out_hw: tuple[int, int]):
    """K̃[k, l, i, j, m, n] = a[m, k·s+i−p, l·s+j−p]·K[n, m, i, j] (Eq. 12 → 13), 0 where the tap is padding."""
    n_out, channels, k, _ = kernel.shape
    tilde = torch.zeros(*out_hw, k, k, channels, n_out, dtype=F64)
    for r in range(out_hw[0]):
        for c in range(out_hw[1]):
            for i in range(k):
                for j in range(k):
                    y, z = r * stride - pad + i, c * stride - pad + j
                    if 0 <= y < a.shape[1] and 0 <= z < a.shape[2]:
                        for m in range(channels):
                            for n in range(n_out):
                                tilde[r, c, i, j, m, n] = a[m, y, z] * kernel[n, m, i, j]
    return tilde


def apply_unshared(tilde: torch.Tensor, spikes_map: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """Eq. 13: G[n, k, l] = Σ_{i,j,m} K̃[k, l, i, j, m, n]·B[m, k·s+i−p, l·s+j−p], one term at a time."""
    out_h, out_w, k, _, channels, n_out = tilde.shape
    out = torch.zeros(n_out, out_h, out_w, dtype=F64)
    for r in range(out_h):
        for c in range(out_w):
            for i in range(k):
                for j in range(k):
                    y, z = r * stride - pad + i, c * stride - pad + j
                    if 0 <= y < spikes_map.shape[1] and 0 <= z < spikes_map.shape[2]:
                        for m in range(channels):
                            out[:, r, c] += tilde[r, c, i, j, m, :] * spikes_map[m, y, z]
    return out


@pytest.mark.parametrize(("stride", "pad"), [(1, 1), (2, 1), (1, 0)])
def test_element_wise_fold_is_eq_13_computed_by_loops(stride, pad):
    shape = (2, 5, 5)
    model = nn.Sequential(SpikeActivation(NeuronSpec(), 1, Spike.ELEMENT, shape),
                          nn.Conv2d(2, 3, 3, stride=stride, padding=pad, bias=False)).double().eval()
    a, kernel = uniform(shape, 1), uniform((3, 2, 3, 3), 2)
    with torch.no_grad():
        model[0].coeff.a.copy_(a)
        model[1].weight.copy_(kernel)
    b = spikes(shape, 3)
    out_hw = ((5 + 2 * pad - 3) // stride + 1,) * 2
    tilde = unshared_kernels(a, kernel, stride, pad, out_hw)
    want = apply_unshared(tilde, b, stride, pad)
    exact(want, naive_conv(a * b, kernel, stride=stride, pad=pad))  # Eq. 11 = Eq. 13: the loops agree
    factorized, materialized = to_inference(model), to_inference(model, materialize=True)
    assert isinstance(factorized.get_submodule("1"), FactorizedSynapse)
    for form in (factorized, materialized):
        with torch.no_grad():
            exact(form(b[None])[0], want)
    local = materialized.get_submodule("1").branches[0]
    assert isinstance(local, LocallyConnected2d)
    # its weight [positions, C·k·k, N] is K̃ itself, padding taps included (zero)
    stored = local.weight.detach().view(*out_hw, 2, 3, 3, 3).permute(0, 1, 3, 4, 2, 5)
    exact(stored, tilde)
    catches_planted(lambda t: exact(stored, t), tilde)
    catches_planted(lambda t: exact(materialized(b[None])[0].detach(), t), want)


def test_fig3_example_by_hand():
    """Layer-wise a = 0.5 on a 3×3 spike map, 2×2 kernel: K̃ = a·K, worked out on paper."""
    model = nn.Sequential(SpikeActivation(NeuronSpec(), 1, Spike.LAYER, (1, 3, 3)),
                          nn.Conv2d(1, 1, 2, bias=False)).double().eval()
    with torch.no_grad():
        model[0].coeff.a.fill_(0.5)
        model[1].weight.copy_(torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]]]))
    b = torch.tensor([[[[1.0, 0, 1], [0, 1, 1], [1, 0, 0]]]], dtype=F64)
    inference = to_inference(model)
    conv = inference.get_submodule("1")
    assert type(conv) is nn.Conv2d and conv.weight.flatten().tolist() == [0.5, -0.5, 1.0, 0.25]
    # (0,0): 0.5 + 0.25; (0,1): −0.5 + 1 + 0.25; (1,0): −0.5 + 1; (1,1): 0.5 − 0.5
    want = torch.tensor([[[[0.75, 0.75], [0.5, 0.0]]]], dtype=F64)
    with torch.no_grad():
        assert torch.equal(inference(b), want)
    catches_planted(lambda t: exact(inference(b).detach(), t), want)


# --- layer- and channel-wise: the shared kernel rescaled ----------------------------------------------------


@pytest.mark.parametrize("setting", [Spike.LAYER, Spike.CHANNEL])
def test_shared_kernel_scaling_with_groups_and_stride(setting):
    """K̃[n, m, i, j] = a[group(n)·C/g + m]·K[n, m, i, j] (layer: one a), a grouped 3×3 conv, stride 2."""
    shape = (4, 5, 5)
    model = nn.Sequential(SpikeActivation(NeuronSpec(), 1, setting, shape),
                          nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)).double().eval()
    a = uniform(() if setting is Spike.LAYER else (4, 1, 1), 4)
    kernel, bias = uniform((6, 2, 3, 3), 5), uniform((6,), 6)
    with torch.no_grad():
        model[0].coeff.a.copy_(a)
        model[1].weight.copy_(kernel)
        model[1].bias.copy_(bias)
    want_kernel = torch.zeros_like(kernel)
    for n in range(6):
        for m in range(2):
            channel = (n // 3) * 2 + m
            want_kernel[n, m] = kernel[n, m] * float(a if setting is Spike.LAYER else a[channel, 0, 0])
    inference = to_inference(model)
    conv = inference.get_submodule("1")
    assert type(conv) is nn.Conv2d
    exact(conv.weight.detach(), want_kernel)
    exact(conv.bias.detach(), bias)
    b = spikes(shape, 7)
    want = naive_conv(b, want_kernel, bias, stride=2, pad=1, groups=2)
    with torch.no_grad():
        exact(inference(b[None])[0], want)
    catches_planted(lambda t: exact(conv.weight.detach(), t), want_kernel)


def test_channel_coefficients_into_a_linear_layer_scale_its_columns():
    """Flatten then Linear: column c·H·W + p is multiplied by a[c]."""
    shape = (2, 2, 2)
    model = nn.Sequential(SpikeActivation(NeuronSpec(), 1, Spike.CHANNEL, shape), nn.Flatten(),
                          nn.Linear(8, 3)).double().eval()
    a, weight = uniform((2, 1, 1), 8), uniform((3, 8), 9)
    with torch.no_grad():
        model[0].coeff.a.copy_(a)
        model[2].weight.copy_(weight)
    want_weight = weight.clone()
    for column in range(8):
        want_weight[:, column] *= float(a[column // 4, 0, 0])
    inference = to_inference(model)
    exact(inference.get_submodule("2").weight.detach(), want_weight)
    catches_planted(lambda t: exact(inference.get_submodule("2").weight.detach(), t), want_weight)


# --- BatchNorm into the conv ------------------------------------------------------------------------------


def test_batchnorm_fold_by_the_formula():
    """W′[n] = W[n]·γ_n/√(σ²_n + ε), b′_n = (b_n − μ_n)·γ_n/√(σ²_n + ε) + β_n, element by element."""
    conv, bn = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, eps=0.01)
    model = nn.Sequential(conv, bn, SpikeActivation(NeuronSpec(), 1, Spike.BINARY, (3, 4, 4))).double().eval()
    model.requires_grad_(False)
    with torch.no_grad():
        conv.weight.copy_(uniform((3, 2, 3, 3), 10))
        conv.bias.copy_(uniform((3,), 11))
        bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.4]))
        bn.running_var.copy_(torch.tensor([0.5, 1.5, 0.09]))
        bn.weight.copy_(torch.tensor([1.2, -0.7, 0.3]))
        bn.bias.copy_(torch.tensor([0.1, 0.0, -0.2]))
    want_w, want_b = torch.zeros(3, 2, 3, 3, dtype=F64), torch.zeros(3, dtype=F64)
    for n in range(3):
        scale = float(bn.weight[n]) / math.sqrt(float(bn.running_var[n]) + 0.01)
        want_b[n] = (float(conv.bias[n]) - float(bn.running_mean[n])) * scale + float(bn.bias[n])
        for m in range(2):
            for i in range(3):
                for j in range(3):
                    want_w[n, m, i, j] = float(conv.weight[n, m, i, j]) * scale
    inference = to_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in inference.modules())
    folded = inference.get_submodule("0")
    exact(folded.weight.detach(), want_w)
    exact(folded.bias.detach(), want_b)
    catches_planted(lambda t: exact(folded.weight.detach(), t), want_w)
    x = uniform((2, 4, 4), 12)
    with torch.no_grad():
        exact(folded(x[None])[0], naive_conv(x, want_w, want_b, pad=1))


# --- AvgPool between the spikes and the conv: composed into one unshared kernel ------------------------------


@pytest.mark.parametrize("materialize", [False, True])
def test_avgpool_then_conv_is_one_composed_kernel(materialize):
    """Element-wise a → AvgPool 2 → conv 3×3 pad 1: input (m, y, x) reaches output (n, k, l) with weight
    Σ_{i,j} K[n, m, i, j]·a[m, y, x]/4 over the taps whose pooled position (y//2, x//2) is (k+i−1, l+j−1)."""
    shape = (2, 4, 4)
    model = nn.Sequential(SpikeActivation(NeuronSpec(), 1, Spike.ELEMENT, shape), nn.AvgPool2d(2),
                          nn.Conv2d(2, 3, 3, padding=1, bias=False)).double().eval()
    a, kernel = uniform(shape, 13), uniform((3, 2, 3, 3), 14)
    with torch.no_grad():
        model[0].coeff.a.copy_(a)
        model[2].weight.copy_(kernel)
    want = torch.zeros(3, 2, 2, 2, 4, 4, dtype=F64)  # [n, k, l, m, y, x]
    for n in range(3):
        for k in range(2):
            for l in range(2):  # noqa: E741
                for m in range(2):
                    for y in range(4):
                        for x in range(4):
                            i, j = y // 2 - k + 1, x // 2 - l + 1
                            if 0 <= i < 3 and 0 <= j < 3:
                                want[n, k, l, m, y, x] = kernel[n, m, i, j] * a[m, y, x] / 4
    want = want.reshape(12, 32)
    inference = to_inference(model, materialize=materialize)
    got = linear_map(inference, shape)
    exact(got, want)
    catches_planted(lambda t: exact(got, t), want)


# --- several spike sources into one layer: one rescaled shared kernel each -----------------------------------


class TwoSources(nn.Module):
    """conv(a1·B1 + a2·B2): channel coefficients of two different neurons summed into one conv."""

    def __init__(self) -> None:
        super().__init__()
        self.act1 = SpikeActivation(NeuronSpec(), 1, Spike.CHANNEL, (2, 4, 4))
        self.act2 = SpikeActivation(NeuronSpec(), 1, Spike.CHANNEL, (2, 4, 4))
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act1(x[:, :2]) + self.act2(x[:, 2:]))


def test_two_sources_get_one_rescaled_kernel_each():
    model = TwoSources().double().eval()
    a1, a2, kernel = uniform((2, 1, 1), 15), uniform((2, 1, 1), 16), uniform((3, 2, 3, 3), 17)
    with torch.no_grad():
        model.act1.coeff.a.copy_(a1)
        model.act2.coeff.a.copy_(a2)
        model.conv.weight.copy_(kernel)
    assert {f.layer: f.rule for f in plan_folds(model)}["conv"] == "per-source-shared"
    synapse = to_inference(model).get_submodule("conv")
    assert isinstance(synapse, SharedSynapse)
    for stored, a in zip(synapse.weights, (a1, a2), strict=True):
        want = torch.stack([kernel[:, m] * float(a[m, 0, 0]) for m in range(2)], dim=1)
        exact(stored.detach(), want)
    b = spikes((4, 4, 4), 18)
    want = naive_conv(a1 * b[:2] + a2 * b[2:], kernel, model.conv.bias.detach(), pad=1)
    with torch.no_grad():
        got = to_inference(model)(b[None])[0]
    exact(got, want)
    catches_planted(lambda t: exact(got, t), want)


# --- the identity shortcut: each spike adds the constant a into the next neuron -----------------------------


class Shortcut(nn.Module):
    """n2(conv(a ⊙ B) + a ⊙ B): the residual add carries the coefficient to a neuron, not to a weight."""

    def __init__(self, setting: Spike) -> None:
        super().__init__()
        self.act = SpikeActivation(NeuronSpec(), 1, setting, (2, 4, 4))
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.n2 = LIFNeuron(NeuronSpec(), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.act(x)
        return self.n2(self.conv(s) + s)


@pytest.mark.parametrize("setting", [Spike.CHANNEL, Spike.ELEMENT])
def test_identity_shortcut_adds_a_per_spike(setting):
    model = Shortcut(setting).double().eval()
    a = uniform((2, 1, 1) if setting is Spike.CHANNEL else (2, 4, 4), 19)
    kernel = uniform((2, 2, 3, 3), 20)
    with torch.no_grad():
        model.act.coeff.a.copy_(a)
        model.conv.weight.copy_(kernel)
    inference = to_inference(model)
    scale = inference.get_submodule("act.coeff")
    assert isinstance(scale, SynapticScale)
    exact(scale.a.detach(), a)
    seen = []
    inference.get_submodule("n2").register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    b = spikes((2, 4, 4), 21)
    with torch.no_grad():
        inference(b[None])
    want = naive_conv(a.expand(2, 4, 4) * b, kernel, pad=1) + a * b  # the membrane input of n2, by loop
    exact(seen[0][0], want)
    catches_planted(lambda t: exact(seen[0][0], t), want)


# --- ternary spikes: a folds with either sign ----------------------------------------------------------------


def test_ternary_channel_spikes_into_a_linear_layer():
    shape = (2, 2, 2)
    model = nn.Sequential(SpikeActivation(NeuronSpec(), 1, Spike.TERNARY_CHANNEL, shape), nn.Flatten(),
                          nn.Linear(8, 3)).double().eval()
    a, weight, bias = uniform((2, 1, 1), 22), uniform((3, 8), 23), uniform((3,), 24)
    with torch.no_grad():
        model[0].coeff.a.copy_(a)
        model[2].weight.copy_(weight)
        model[2].bias.copy_(bias)
    b = spikes(shape, 25, ternary=True)
    assert (b == -1).any()
    want = torch.zeros(3, dtype=F64)
    for o in range(3):
        want[o] = float(bias[o]) + sum(float(weight[o, c * 4 + p] * a[c, 0, 0] * b[c].flatten()[p])
                                       for c in range(2) for p in range(4))
    inference = to_inference(model)
    seen = []
    inference.get_submodule("0.neuron").register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        got = inference(b[None])[0]
    assert torch.equal(seen[0][0], b)  # the neuron emits exactly −1, 0, +1
    exact(got, want)
    catches_planted(lambda t: exact(got, t), want)


# --- MPBN: the membrane BatchNorm becomes per-channel thresholds ----------------------------------------------


def naive_mpbn(x: torch.Tensor, steps: int, decay: float, v_th: float, mean, var, gamma, beta, eps) -> torch.Tensor:
    """h = decay·u + x_t; m = γ(h − μ)/√(σ² + ε) + β; s = [m ≥ V_th]; u = 0 after a spike (hard reset)."""
    batch, channels = x.shape[0] // steps, x.shape[1]
    out = torch.zeros_like(x)
    for b in range(batch):
        for c in range(channels):
            u = 0.0
            for t in range(steps):
                h = decay * u + float(x[t * batch + b, c])
                m = float(gamma[c]) * (h - float(mean[c])) / math.sqrt(float(var[c]) + eps) + float(beta[c])
                s = 1.0 if m >= v_th else 0.0
                out[t * batch + b, c] = s
                u = 0.0 if s else h
    return out


def test_mpbn_thresholds_by_the_formula_and_a_naive_loop():
    """γ > 0: +1 iff h ≥ μ + (V_th − β)·√(σ² + ε)/γ; γ < 0: the input is negated and −h ≥ −μ + (V_th − β)·√/|γ|."""
    steps = 4
    fc = nn.Linear(3, 4, bias=False)
    act = SpikeActivation(NeuronSpec(kind="mpbn"), steps, Spike.BINARY, (4,))
    model = nn.Sequential(fc, act).double().eval()
    norm = act.neuron.norm
    gamma = torch.tensor([1.5, -0.8, 0.6, -2.0], dtype=F64)
    with torch.no_grad():
        fc.weight.copy_(uniform((4, 3), 26))
        norm.running_mean.copy_(uniform((4,), 27, -0.3, 0.3))
        norm.running_var.copy_(uniform((4,), 28, 0.5, 1.5))
        norm.weight.copy_(gamma)
        norm.bias.copy_(uniform((4,), 29, -0.4, 0.4))
    mean, var, beta, eps = norm.running_mean, norm.running_var, norm.bias.detach(), norm.eps
    want_upper = torch.zeros(4, dtype=F64)
    for c in range(4):
        root = math.sqrt(float(var[c]) + eps)
        sign = 1.0 if gamma[c] > 0 else -1.0
        want_upper[c] = sign * float(mean[c]) + (0.5 - float(beta[c])) * root / abs(float(gamma[c]))
    inference = to_inference(model)
    neuron = inference.get_submodule("1.neuron")
    assert isinstance(neuron, ThresholdLIF)
    exact(neuron.upper.detach().flatten(), want_upper)
    exact(inference.get_submodule("0").weight.detach(), fc.weight.detach() * torch.sign(gamma)[:, None])
    x = uniform((steps * 5, 3), 30, -1.0, 2.0)
    want = naive_mpbn(fc(x).detach(), steps, 0.25, 0.5, mean, var, gamma, beta, eps)
    assert 0 < float(want.mean()) < 1
    with torch.no_grad():
        got = inference(x)
    assert torch.equal(got, want)
    planted = naive_mpbn(fc(x).detach(), steps, 0.25, 0.5, mean + 0.05, var, gamma, beta, eps)
    assert not torch.equal(got, planted)  # the loop is sensitive to the statistics
