"""Operation counts of `realspike energy` against a brute-force count written here: the network runs on random
inputs, every neuron's spikes are recorded by hooks written here, and for each consumer layer each spike's
actual fan-out is summed by explicit loops over the output positions and channels it reaches (stride,
padding, dilation, groups, pooling in between, linear layers, unshared kernels). SpikingJelly's op counter
covers the binary-input nets with matching conventions (tests/test_energy_memory.py); this covers the rest.
Each brute-force count is shown to differ from a planted wrong one (stride or padding ignored).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from realspike_cli.core.energy import count_forms
from realspike_cli.core.neuron import LIFNeuron, RealSpike, SpikeActivation
from realspike_cli.core.reparam import to_inference
from realspike_cli.core.specs import NeuronSpec, Spike

pytestmark = pytest.mark.usefixtures("one_thread")
T = 2


def record_spikes(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=name: seen.__setitem__(n, o.detach().clone()))
             for name, m in model.named_modules() if isinstance(m, LIFNeuron)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def window_reach(position: int, size_out: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> list[int]:
    """The output indices along one axis whose window (taps o·stride − pad + i·dilation) reads `position`."""
    return [o for o in range(size_out)
            if any(o * stride - pad + i * dilation == position for i in range(kernel))]


def out_size(n: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    return (n + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def conv_targets(conv: nn.Conv2d, channel: int, y: int, x: int, hw: tuple[int, int]) -> set[tuple[int, int, int]]:
    """(out channel, row, column) a conv input element (channel, y, x) has a real synapse to (padding excluded)."""
    (k, _), (s, _), (p, _), (d, _) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    per_group = conv.out_channels // conv.groups
    group = channel // (conv.in_channels // conv.groups)
    rows = window_reach(y, out_size(hw[0], k, s, p, d), k, s, p, d)
    cols = window_reach(x, out_size(hw[1], k, s, p, d), k, s, p, d)
    return {(n, r, c) for n in range(group * per_group, (group + 1) * per_group) for r in rows for c in cols}


def pool_targets(pool: nn.AvgPool2d, y: int, x: int, hw: tuple[int, int]) -> list[tuple[int, int]]:
    """The pooled positions whose window contains (y, x) (floor mode: trailing rows/columns are dropped)."""
    k, s = pool.kernel_size, pool.stride
    rows, cols = window_reach(y, out_size(hw[0], k, s, 0), k, s, 0), window_reach(x, out_size(hw[1], k, s, 0), k, s, 0)
    return [(r, c) for r in rows for c in cols]


def brute_count(spikes: torch.Tensor, targets_of) -> float:
    """Σ over every non-zero spike (any batch index, any step) of |s|·(number of synapses it drives)."""
    total = 0.0
    for index in spikes.nonzero().tolist():
        _, channel, *where = index
        total += abs(float(spikes[tuple(index)])) * len(targets_of(channel, *where))
    return total


# --- conv with stride 2, padding and groups; a pooled linear layer; an unshared (element-wise) consumer ------


class FanoutNet(nn.Module):
    """stem → LIF (element a) → conv 3×3 stride 2 pad 1 groups 2 → LIF (channel a) → AvgPool 2 → Linear."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = SpikeActivation(NeuronSpec(), T, Spike.ELEMENT, (4, 7, 7))
        self.conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=groups)
        self.act2 = SpikeActivation(NeuronSpec(), T, Spike.CHANNEL, (6, 4, 4))
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.act1(self.stem(x).repeat(T, 1, 1, 1))
        s2 = self.act2(self.conv(s1))
        return self.fc(self.pool(s2).flatten(1)).unflatten(0, (T, -1)).mean(0)


def fanout_net(groups: int) -> nn.Module:
    torch.manual_seed(3)
    model = FanoutNet(groups).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RealSpike):
                m.a.uniform_(-1.5, 1.5)
        model.stem.bias.fill_(0.3)
    return model


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 7, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2


@pytest.mark.parametrize(("materialize", "groups"), [(False, 2), (True, 1)])  # materializing needs groups 1
def test_counts_equal_the_brute_force_fanout(materialize, groups):
    """7×7 maps: stride 2 with padding 1 gives 4×4 outputs, so edge and corner spikes reach fewer windows."""
    model, x = fanout_net(groups), images()
    inference = to_inference(model, materialize=materialize)
    spikes = record_spikes(inference, x)
    s1, s2 = spikes["act1.neuron"], spikes["act2.neuron"]
    assert 0 < float(s1.mean()) < 1 and 0 < float(s2.mean()) < 1
    want_conv = brute_count(s1, lambda c, y, z: conv_targets(model.conv, c, y, z, (7, 7))) / len(x)
    want_fc = brute_count(s2, lambda c, y, z: [(o, p) for p in pool_targets(model.pool, y, z, (4, 4))
                                               for o in range(5)]) / len(x)
    train, inf = count_forms({"train": model, "inference": inference}, [x])
    layers = {c.name: c for c in inf.layers}
    assert layers["conv"].acs == pytest.approx(want_conv, rel=1e-12) and layers["conv"].macs == 0
    assert layers["fc"].acs == pytest.approx(want_fc, rel=1e-12) and layers["fc"].macs == 0
    assert layers["conv"].events == pytest.approx(float(s1.sum()) / len(x), rel=1e-12)
    trained = {c.name: c for c in train.layers}  # a·s in: the same synapses, each a multiply
    assert trained["conv"].macs == pytest.approx(want_conv, rel=1e-12) and trained["conv"].acs == 0
    assert trained["fc"].macs == pytest.approx(want_fc, rel=1e-12)
    # planted: a count that ignores the stride, or counts padding taps (C_out/g · k² per spike), differs
    no_stride = nn.Conv2d(4, 6, 3, stride=1, padding=1, groups=groups)
    planted = brute_count(s1, lambda c, y, z: conv_targets(no_stride, c, y, z, (7, 7))) / len(x)
    padded = float(s1.sum()) * (6 // groups) * 9 / len(x)
    assert layers["conv"].acs != pytest.approx(planted) and layers["conv"].acs != pytest.approx(padded)


class PooledUnshared(nn.Module):
    """LIF (element a) → AvgPool 2 on 5×5 (row/column 4 dropped) → conv 3×3 pad 1: one unshared kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.act = SpikeActivation(NeuronSpec(), T, Spike.ELEMENT, (2, 5, 5))
        self.pool = nn.AvgPool2d(2)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.out = LIFNeuron(NeuronSpec(), T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(self.pool(self.act(x.repeat(T, 1, 1, 1)))))


@pytest.mark.parametrize("materialize", [False, True])
def test_pooled_unshared_kernel_counts_distinct_targets(materialize):
    """A spike reaches the conv outputs of its pooled position (each target once), none from the dropped rim."""
    torch.manual_seed(5)
    model = PooledUnshared().double().eval()
    with torch.no_grad():
        model.act.coeff.a.uniform_(0.5, 1.5)
    x = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 2
    inference = to_inference(model, materialize=materialize)
    s = record_spikes(inference, x)["act.neuron"]
    assert (s[:, :, 4] != 0).any()  # spikes on the dropped rim happen (and cost nothing)

    def targets(c: int, y: int, z: int) -> set[tuple[int, int, int]]:
        return {t for r, q in pool_targets(model.pool, y, z, (5, 5)) for t in conv_targets(model.conv, c, r, q, (2, 2))}

    want = brute_count(s, targets) / len(x)
    (inf,) = count_forms({"inference": inference}, [x])
    got = {c.name: c for c in inf.layers}["conv"]
    assert got.acs == pytest.approx(want, rel=1e-12) and got.macs == 0
    paths = brute_count(s, lambda c, y, z: [t for r, q in pool_targets(model.pool, y, z, (5, 5))
                                            for t in conv_targets(model.conv, c, r, q, (2, 2))]) / len(x)
    rim_counted = brute_count(s, lambda c, y, z: conv_targets(model.conv, c, min(y // 2, 1), min(z // 2, 1),
                                                               (2, 2))) / len(x)
    assert got.acs != pytest.approx(rim_counted)  # planted: the dropped rim counted as if pooled
    assert paths == want  # 2×2 disjoint windows: targets and paths coincide here


class Strided1x1(nn.Module):
    """LIF → conv 1×1 stride 2 (odd rows/columns are never read) and dilation 2 conv 3×3 pad 2."""

    def __init__(self) -> None:
        super().__init__()
        self.n = LIFNeuron(NeuronSpec(), T)
        self.skip = nn.Conv2d(2, 4, 1, stride=2)
        self.dilated = nn.Conv2d(2, 3, 3, padding=2, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.n(x.repeat(T, 1, 1, 1))
        return self.skip(s).sum() + self.dilated(s).sum()


def test_strided_1x1_and_dilated_conv():
    model = Strided1x1().double().eval()
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 1.4
    s = record_spikes(model, x)["n"]
    (form,) = count_forms({"m": model}, [x])
    layers = {c.name: c for c in form.layers}
    for name, conv in (("skip", model.skip), ("dilated", model.dilated)):
        want = brute_count(s, lambda c, y, z, conv=conv: conv_targets(conv, c, y, z, (6, 6))) / len(x)
        assert layers[name].acs == pytest.approx(want, rel=1e-12), name
    assert layers["skip"].acs < float(s.sum()) * 4 / len(x)  # odd positions really cost nothing
