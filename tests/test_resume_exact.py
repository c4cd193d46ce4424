"""Resume exactness with every random stream in use: augmentation and dropout draw from torch's global RNG,
shuffling from the (seed, epoch) generator. A run stopped mid-epoch (--max-steps) and resumed through its
resume.pt must end tensor for tensor equal to the uninterrupted run: weights, BN statistics, optimizer
momentum, schedule, RNG state.

The oracle is the uninterrupted run itself (no tolerance: torch.equal). The test fails when the resume point
does not restore the RNG (checked by hand and by benchmarks/mutants.py, mutant `rng-restore-skipped`)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from realspike_cli.core import registry
from realspike_cli.core.checkpointer import Checkpointer
from realspike_cli.core.datasets import load_dataset
from realspike_cli.core.datasets.loaders import InMemoryDataset
from realspike_cli.core.datasets.transforms import RandomShift
from realspike_cli.core.events import EpochDone, Finished, Stopped
from realspike_cli.core.layers import SpikingNetwork, conv_bn, spiking
from realspike_cli.core.specs import ModelSpec, TrainConfig
from realspike_cli.core.train import RunOptions, train_events

ARCH = "test_resume_dropout_net"
SPEC = ModelSpec(ARCH, num_classes=10, in_channels=1, input_size=(14, 14), time_steps=2, spike="element")
# 256 digits at 14×14 in batches of 32: 8 steps per epoch; 2 epochs; stopped at step 11 = step 3 of epoch 2.
CFG = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=11, augment="standard", amp=False)
STOP_AT = 11


def dropout_net(spec: ModelSpec) -> nn.Module:
    """conv-BN → neuron → pool → dropout → FC-BN → neuron → dropout → FC: dropout draws every step."""
    body = nn.Sequential(
        spiking(spec, (4, 14, 14)),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(4 * 7 * 7, 32, bias=False),
        nn.BatchNorm1d(32),
        spiking(spec, (32,)),
        nn.Dropout(0.2),
    )
    return SpikingNetwork(spec, conv_bn(1, 4), body, nn.Linear(32, 10))


class CountingShift(RandomShift):
    """The project's RandomShift (global-RNG draws per image), counting its calls."""

    calls = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        CountingShift.calls += 1
        return super().__call__(images)


@pytest.fixture(scope="module")
def data():
    mnist = load_dataset("mnist10k")
    train, test = mnist.train, mnist.test
    augmented = InMemoryDataset(train.images[:256, :, ::2, ::2].contiguous(), train.labels[:256], (0.1307,),
                                (0.3081,), augment=CountingShift(2))
    plain = InMemoryDataset(test.images[:128, :, ::2, ::2].contiguous(), test.labels[:128], (0.1307,), (0.3081,))
    return augmented, plain


@pytest.fixture
def arch(monkeypatch):
    """The architecture registered for this test only (removed from the registry afterwards)."""
    monkeypatch.setitem(registry._ARCHS, ARCH, registry.ArchEntry(ARCH, dropout_net, "lif", "test", "test"))


def run(data, out, resume=False, max_steps=None):
    files = Checkpointer(out, resume=resume)
    opts = RunOptions(device="cpu", max_steps=max_steps, eval_batch_size=128)
    return list(train_events(SPEC, data, CFG, options=opts, callbacks=[files]))


def assert_same(a, b, where=""):
    """Equal structure and bit-equal tensors, recursively (dicts, lists, tensors, numbers, strings)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resumed_mid_epoch_with_augmentation_and_dropout_equals_uninterrupted(data, arch, one_thread, tmp_path):
    torch.manual_seed(123)  # the caller's RNG: neither run may depend on it
    whole = run(data, tmp_path / "whole")
    assert isinstance(whole[-1], Finished)
    torch.manual_seed(456)
    stopped = run(data, tmp_path / "split", max_steps=STOP_AT)
    assert isinstance(stopped[-1], Stopped) and (stopped[-1].epoch, stopped[-1].step) == (1, 3)
    calls_before = CountingShift.calls
    torch.manual_seed(789)  # another caller state at resume: only resume.pt's RNG state may count
    resumed = run(data, tmp_path / "split", resume=True)
    assert isinstance(resumed[-1], Finished)
    assert [e.epoch for e in resumed if isinstance(e, EpochDone)] == [2]
    assert CountingShift.calls - calls_before == 8 - 3  # augmentation ran on every remaining step

    a = torch.load(tmp_path / "whole" / "resume.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "resume.pt", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "position", "best", "epoch_sums", "torch_rng", "rank_rng"):
        assert_same(a[key], b[key], key)
    assert a["optimizer"]["state"]  # momentum buffers exist and were compared
    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = load_file(tmp_path / "whole" / name), load_file(tmp_path / "split" / name)
        assert_same(wa, wb, name)


def test_the_streams_change_the_result(data, arch, one_thread, tmp_path, monkeypatch):
    """Guard against a vacuous comparison: with the same seed but dropout off, the weights differ — so the
    test above compared runs whose outcome really depends on the RNG stream being restored."""
    whole = run(data, tmp_path / "dropout", max_steps=4)
    assert isinstance(whole[-1], Stopped)
    monkeypatch.setattr(nn.Dropout, "forward", lambda self, x: x)
    run(data, tmp_path / "no-dropout", max_steps=4)
    a = torch.load(tmp_path / "dropout" / "resume.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "no-dropout" / "resume.pt", weights_only=True)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
