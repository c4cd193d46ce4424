"""Every registered architecture × spike setting builds, runs forward and backward, and has sane shapes."""

from __future__ import annotations

import pytest
import torch

from realspike_cli.core.errors import UnknownNameError
from realspike_cli.core.models import arch_entry, build_model, list_archs, register_arch
from realspike_cli.core.neuron import LIFNeuron, RealSpike
from realspike_cli.core.specs import ModelSpec
from tests.conftest import tiny_spec

SETTINGS = ["binary", "layer", "channel", "element"]


@pytest.mark.parametrize("spike", SETTINGS)
@pytest.mark.parametrize("arch", list_archs())
def test_forward_backward(arch, spike):
    spec = tiny_spec(arch, spike)
    model = build_model(spec)
    x = torch.randn(2, spec.in_channels, *spec.input_size)
    logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    coeffs = [m for m in model.modules() if isinstance(m, RealSpike)]
    assert (len(coeffs) == 0) == (spike == "binary")
    for c in coeffs:
        assert c.a.grad is not None and c.a.grad.shape == c.a.shape
    stem_weight = next(model.stem.parameters())
    assert stem_weight.grad is not None and stem_weight.grad.abs().sum() > 0


def test_sew_resnets_use_if_neurons_by_default():
    assert arch_entry("sew_resnet18").default_neuron == "if"
    assert arch_entry("resnet19").default_neuron == "lif"


def test_time_steps_and_neuron_settings_reach_every_neuron():
    spec = tiny_spec("resnet20", time_steps=3)
    neurons = [m for m in build_model(spec).modules() if isinstance(m, LIFNeuron)]
    assert neurons and all(n.time_steps == 3 and n.spec == spec.neuron for n in neurons)


def test_direct_encoding_runs_the_stem_once():
    spec = tiny_spec("vgg11", time_steps=4)
    model = build_model(spec)
    calls = []
    model.stem.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    model(torch.randn(3, 3, 32, 32))
    assert calls == [3]  # batch 3, not T·B = 12


def test_channels_last_network_stays_channels_last_after_the_time_repeat():
    # `repeat` returns NCHW; every layer after it then converted back (copies in forward and backward).
    spec = tiny_spec("resnet20", "element", time_steps=3)
    model = build_model(spec).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    fast = build_model(spec).double().to(memory_format=torch.channels_last)
    fast.load_state_dict(model.state_dict())
    seen = []
    first_neuron = next(m for m in fast.modules() if isinstance(m, LIFNeuron))
    first_neuron.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x_cl = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    x_plain = x.clone().requires_grad_()
    want, got = model(x_plain), fast(x_cl)
    assert seen[0].shape[0] == 6 and seen[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    want.square().sum().backward()
    got.square().sum().backward()
    torch.testing.assert_close(x_cl.grad, x_plain.grad, rtol=1e-10, atol=1e-12)
    for (name, a), b in zip(model.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_frame_encoding_takes_one_frame_per_step():
    spec = tiny_spec("resnet19", time_steps=3, in_channels=2, input_size=(16, 16), encoding="frames")
    model = build_model(spec)
    assert model(torch.rand(2, 3, 2, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize(
    "arch, size, classes, expected",
    [
        ("resnet19", (32, 32), 10, 12_569_226),
        ("resnet20", (32, 32), 10, 11_247_946),
        ("vgg16", (32, 32), 10, 14_724_042),
        ("sew_resnet18", (224, 224), 1000, 11_689_512),  # = torchvision resnet18
        ("sew_resnet34", (224, 224), 1000, 21_797_672),  # = torchvision resnet34
    ],
)
def test_parameter_counts_at_full_width(arch, size, classes, expected):
    spec = ModelSpec(arch=arch, num_classes=classes, in_channels=3, input_size=size, time_steps=4, spike="binary")
    assert sum(p.numel() for p in build_model(spec).parameters()) == expected


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(UnknownNameError, match="did you mean 'resnet19'"):
        arch_entry("resnet91")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        register_arch("vgg16")(lambda spec: None)
