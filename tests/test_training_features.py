"""Validation split, per-epoch train metrics and epoch time, fine-tuning (--init-from) and extending (--resume with
more --epochs), each against an oracle computed here: counts, a forward hook, direct evaluation, a fresh run."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from realspike_cli.core.checkpoint import load_checkpoint, read_meta
from realspike_cli.core.checkpointer import Checkpointer
from realspike_cli.core.datasets import DataSplits, load_dataset
from realspike_cli.core.datasets.loaders import BatchStream
from realspike_cli.core.errors import ConfigError
from realspike_cli.core.events import Callback, EpochDone, FinalTest, Finished, StepDone, Stopped
from realspike_cli.core.finetune import init_weights_from
from realspike_cli.core.models import build_model
from realspike_cli.core.specs import Form, TrainConfig
from realspike_cli.core.train import RunOptions, train_events
from realspike_cli.core.validation import split_indices, subset, with_validation
from tests.conftest import tiny_spec
from tests.test_cli import assert_one_error_line, cli

SPEC = tiny_spec("small_convnet", "element", time_steps=2, num_classes=10, in_channels=1)
CFG = TrainConfig(epochs=3, batch_size=100, lr=0.05, seed=1, augment="none")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist10k")


@pytest.fixture(scope="module")
def small(mnist):
    """2,000 training and 500 test images: epochs of 20 steps."""
    return DataSplits(mnist.info, subset(mnist.train, list(range(0, 8000, 4))), subset(mnist.test, list(range(500))))


def naive_top1(model, dataset) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dataset), 250):
            x, y = dataset.batch(torch.arange(i, min(i + 250, len(dataset))))
            correct += int((model(x).argmax(1) == y).sum())
    return correct / len(dataset)


def metrics(path, drop=("seconds",)):
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()]


# validation split ---------------------------------------------------------------------------------------
def test_split_is_stratified_disjoint_and_seeded(mnist):
    labels = mnist.train.labels.tolist()
    train, val = split_indices(len(labels), labels, 0.1, seed=5)
    assert sorted(train + val) == list(range(len(labels)))  # a partition
    per_class, held = Counter(labels), Counter(labels[i] for i in val)
    assert all(held[c] == round(0.1 * per_class[c]) for c in per_class)
    assert split_indices(len(labels), labels, 0.1, seed=5) == (train, val)
    assert split_indices(len(labels), labels, 0.1, seed=6)[1] != val
    uniform = split_indices(100, None, 0.25, seed=0)[1]
    assert len(uniform) == 25 and uniform != list(range(25))


def test_carve_out_leaves_the_test_set_alone(mnist):
    carved = with_validation(mnist, 0.2, seed=0)
    assert carved.test is mnist.test and torch.equal(carved.test.images, mnist.test.images)
    per_class = Counter(mnist.train.labels.tolist()).values()  # each class rounds on its own
    assert len(carved.train) + len(carved.val) == 8000 and len(carved.val) == sum(round(0.2 * n) for n in per_class)

    def rows(ds):
        return Counter(hashlib.sha1(img.numpy().tobytes() + bytes([int(y)])).hexdigest()
                       for img, y in zip(ds.images, ds.labels, strict=True))

    assert rows(carved.train) + rows(carved.val) == rows(mnist.train)
    assert not set(rows(carved.train)) & set(rows(carved.val))


class EveryEpochOnTest(Callback):
    """The test's own view: each epoch's weights and their test accuracy, measured with a naive loop."""

    def __init__(self, test_set):
        self.test_set, self.top1, self.states = test_set, [], []

    def on_event(self, event, trainer):
        if isinstance(event, EpochDone):
            self.top1.append(naive_top1(trainer.model, self.test_set))
            self.states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
            trainer.model.train()


@pytest.mark.slow
def test_best_follows_validation_not_test(small, tmp_path):
    # The validation set is the test images with every label shifted by one: the better the model gets on the
    # test set, the worse it does there, so selection on validation and on test must pick different epochs.
    shifted = subset(small.test, list(range(len(small.test))))
    shifted.labels = (shifted.labels + 1) % 10
    data = replace(small, val=shifted)
    oracle = EveryEpochOnTest(small.test)
    events = list(train_events(SPEC, data, CFG, callbacks=[Checkpointer(tmp_path), oracle]))
    history = [r for r in metrics(tmp_path / "metrics.jsonl") if "epoch" in r and "final" not in r]
    val = [r["val_top1"] for r in history]
    assert all("test_top1" not in r for r in history)  # the test set is not looked at during training
    best = val.index(max(val))
    assert best != oracle.top1.index(max(oracle.top1))  # the planted difference is real
    finished, tested = events[-1], events[-2]
    assert isinstance(finished, Finished) and finished.selected_on == "validation"
    assert finished.best_epoch == best + 1 and finished.best_top1 == max(val)
    saved = load_file(tmp_path / "best.safetensors")
    assert all(torch.equal(saved[k], oracle.states[best][k]) for k in saved)
    assert isinstance(tested, FinalTest) and tested.record["test_top1"] == oracle.top1[best]
    meta = read_meta(tmp_path / "best.safetensors")
    assert meta.metrics["test_top1"] == oracle.top1[best] and meta.metrics["selected_on"] == "validation"
    assert metrics(tmp_path / "metrics.jsonl")[-1] == {"final": "test", **tested.record}


@pytest.mark.slow
def test_cli_val_split_resumed_equals_uninterrupted(tmp_path, capsys):
    base = ["train", "mnist10k", "--width", "0.25", "--t", "2", "--epochs", "2", "--batch-size", "500",
            "--val-split", "0.1"]
    code, out, err = cli(capsys, *base, "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert "800 images held out" in out and "test set, model of epoch" in out
    assert cli(capsys, *base, "--out", str(tmp_path / "b"), "--max-steps", "20")[0] == 0  # 15 steps per epoch
    assert cli(capsys, *base, "--out", str(tmp_path / "b"), "--resume")[0] == 0
    assert metrics(tmp_path / "a" / "metrics.jsonl") == metrics(tmp_path / "b" / "metrics.jsonl")
    final = metrics(tmp_path / "a" / "metrics.jsonl")[-1]
    model, meta = load_checkpoint(tmp_path / "b" / "best.safetensors")
    assert final["images"] == 2000 and final["test_top1"] == naive_top1(model, load_dataset("mnist10k").test)
    assert meta.metrics["test_top1"] == final["test_top1"] and "--val-split 0.1" in meta.recipe["command"]


# per-epoch train metrics and time -------------------------------------------------------------------------
def test_train_loss_and_accuracy_are_those_of_the_epochs_steps(small):
    model = build_model(SPEC)
    seen = []
    model.register_forward_hook(lambda m, i, out: seen.append(out.detach().clone()) if m.training else None)
    cfg = replace(CFG, epochs=1, label_smoothing=0.1)
    events = list(train_events(model, small, cfg))
    labels = [y for _, y in BatchStream(small.train, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=0)]
    assert len(seen) == len(labels) == 20
    n = sum(len(y) for y in labels)
    loss = sum(float(F.cross_entropy(o, y, label_smoothing=0.1)) * len(y) for o, y in zip(seen, labels, strict=True))
    correct = sum(int((o.argmax(1) == y).sum()) for o, y in zip(seen, labels, strict=True))
    record = next(e for e in events if isinstance(e, EpochDone)).record
    assert record["train_top1"] == correct / n
    assert record["train_loss"] == pytest.approx(loss / n, rel=1e-12)
    assert set(record["firing_rates"]) == {"body.0.neuron", "body.3.neuron", "body.8.neuron"}


def test_epoch_seconds_include_the_part_before_an_interruption(small, tmp_path):
    cfg = replace(CFG, epochs=1)
    files = Checkpointer(tmp_path, save_every=1)
    assert isinstance(list(train_events(SPEC, small, cfg, options=RunOptions(max_steps=18), callbacks=[files]))[-1],
                      Stopped)
    before = float(torch.load(tmp_path / "resume.pt", weights_only=True)["epoch_seconds"])
    started = time.perf_counter()
    list(train_events(SPEC, small, cfg, callbacks=[Checkpointer(tmp_path, resume=True)]))
    resumed_part = time.perf_counter() - started
    seconds = metrics(tmp_path / "metrics.jsonl", drop=())[0]["seconds"]
    # 18 of the 20 steps ran before the stop: the old count (the resumed 2 steps only) is below `before`.
    assert before - 0.01 <= seconds <= before + resumed_part + 0.01


# --init-from -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def binary_checkpoint(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("binary")
    spec = replace(SPEC, spike="binary")
    list(train_events(spec, small, replace(CFG, epochs=1), callbacks=[Checkpointer(out)]))
    return out / "last.safetensors"


def test_init_from_binary_copies_every_tensor_and_sets_coefficients_to_one(binary_checkpoint, small):
    source = load_file(binary_checkpoint)
    target = build_model(SPEC)  # element-wise
    report = init_weights_from(target, binary_checkpoint)
    state = target.state_dict()
    coefficients = {k for k in state if k.endswith("coeff.a")}
    assert len(coefficients) == 3 and set(report.set_to_one) == coefficients
    assert set(report.copied) == set(source) == set(state) - coefficients
    assert all(torch.equal(state[k], source[k]) for k in source)
    assert all(torch.equal(state[k], torch.ones_like(state[k])) for k in coefficients)
    parent, _ = load_checkpoint(binary_checkpoint)  # a = 1 everywhere: the same function as its parent
    x, _ = small.test.batch(torch.arange(64))
    target.eval()
    with torch.no_grad():
        assert torch.equal(target(x), parent(x))


def test_init_from_broadcasts_a_coarser_coefficient(tmp_path, small):
    from realspike_cli.core.checkpoint import CheckpointMeta, save_checkpoint

    layer = build_model(replace(SPEC, spike="layer"))
    with torch.no_grad():
        for i, m in enumerate(m for m in layer.modules() if hasattr(m, "a")):
            m.a.fill_(0.5 + i)
    save_checkpoint(tmp_path / "layer.safetensors", layer, CheckpointMeta(layer.spec, "mnist10k"))
    element = build_model(SPEC)
    init_weights_from(element, tmp_path / "layer.safetensors")
    for (name, a), (_, b) in zip(((n, m.a) for n, m in layer.named_modules() if hasattr(m, "a")),
                                 ((n, m.a) for n, m in element.named_modules() if hasattr(m, "a")), strict=True):
        assert b.shape != a.shape and torch.equal(b, a.expand_as(b)), name


@pytest.mark.parametrize("change, expected", [
    ({"arch_kwargs": {"width": 0.5}}, "tensor stem.0.weight has shape (8, 1, 3, 3) there, the new model needs"),
    ({"num_classes": 5}, "tensor head.weight has shape (10, 64) there, the new model needs (5, 64)"),
])
def test_init_from_refuses_what_does_not_fit(binary_checkpoint, change, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        init_weights_from(build_model(replace(SPEC, **change)), binary_checkpoint)


@pytest.mark.slow
def test_cli_init_from_records_the_parent_and_refuses_coefficients_without_a_place(binary_checkpoint, tmp_path,
                                                                                   capsys):
    args = ["train", "mnist10k", "--width", "0.25", "--t", "4", "--epochs", "1", "--batch-size", "250"]
    code, out, err = cli(capsys, *args, "--init-from", str(binary_checkpoint), "--out", str(tmp_path / "ft"))
    assert code == 0, err
    assert "weights start from last.safetensors" in out
    meta = read_meta(tmp_path / "ft" / "best.safetensors")
    sha = hashlib.sha256(binary_checkpoint.read_bytes()).hexdigest()
    assert meta.parent_sha256 == sha and meta.recipe["init_from"]["source"] == "last.safetensors"
    assert meta.recipe["init_from"]["coefficients_set_to_one"] == 3 and meta.spec.time_steps == 4
    code, _, err = cli(capsys, *args, "--spike", "binary", "--init-from", str(tmp_path / "ft" / "best.safetensors"),
                       "--out", str(tmp_path / "back"))
    assert_one_error_line(code, err, "its Real Spike coefficient body.0.coeff.a has no place in the new model")
    code, _, err = cli(capsys, *args, "--init-from", "no-such-entry", "--out", str(tmp_path / "x"))
    assert_one_error_line(code, err, "unknown zoo entry 'no-such-entry'")


def test_cli_init_from_a_zoo_entry(tmp_path, capsys, monkeypatch):
    from realspike_cli.core.zoo import load_catalogue
    from tests.test_zoo import WEIGHTS

    monkeypatch.setenv("REALSPIKE_ZOO_MIRROR", str(WEIGHTS))
    entry = load_catalogue().get("small-convnet-mnist10k-t4-channel")
    args = ["train", "mnist10k", "--width", "0.5", "--t", "2", "--spike", "element", "--max-steps", "1"]
    code, _, err = cli(capsys, *args, "--init-from", entry.name, "--out", str(tmp_path))
    assert code == 0, err
    state = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert json.loads(state["parent"])["sha256"] == entry.forms[Form.TRAIN].sha256


# --resume with more --epochs ----------------------------------------------------------------------------
@pytest.mark.slow
def test_extending_a_constant_schedule_equals_planning_it_from_the_start(small, tmp_path):
    cfg = replace(CFG, epochs=1, schedule="constant", warmup_epochs=1)
    list(train_events(SPEC, small, cfg, callbacks=[Checkpointer(tmp_path / "a")]))
    extended = list(train_events(SPEC, small, replace(cfg, epochs=2),
                                 callbacks=[Checkpointer(tmp_path / "a", resume=True)]))
    assert [e.epoch for e in extended if isinstance(e, EpochDone)] == [2]
    list(train_events(SPEC, small, replace(cfg, epochs=2), callbacks=[Checkpointer(tmp_path / "b")]))
    a, b = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(tmp_path / "a" / "metrics.jsonl") == metrics(tmp_path / "b" / "metrics.jsonl")
    assert sum(isinstance(e, StepDone) for e in extended) == 20


@pytest.mark.slow
def test_a_cosine_run_is_not_stretched(small, tmp_path, capsys):
    args = ["train", "mnist10k", "--width", "0.25", "--t", "2", "--batch-size", "2000", "--out", str(tmp_path)]
    assert cli(capsys, *args, "--epochs", "1")[0] == 0
    code, _, err = cli(capsys, *args, "--epochs", "2", "--resume")
    assert_one_error_line(code, err, "cosine schedule was laid out for 1 epoch(s) and cannot be stretched to 2")
    assert f"--init-from {tmp_path / 'last.safetensors'}" in " ".join(err.split())
    constant = ["--schedule", "constant", "--out", str(tmp_path / "c")]
    assert cli(capsys, *args[:-2], *constant, "--epochs", "2")[0] == 0
    code, _, err = cli(capsys, *args[:-2], *constant, "--epochs", "1", "--resume")
    assert_one_error_line(code, err, "the run has already trained 2 epochs; --epochs 1 is fewer")
