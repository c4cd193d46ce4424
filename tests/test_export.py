"""`realspike export`: ONNX (onnxruntime), NIR (reference simulator, snnTorch and Norse) and torch.export files
match PyTorch; what a format cannot express, and every bad input, is one clear error."""

from __future__ import annotations

import json
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from realspike_cli.cli.app import main
from realspike_cli.core.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from realspike_cli.core.errors import ReparamError
from realspike_cli.core.export import ExportError, ExportOptions, export_checkpoint
from realspike_cli.core.export.common import load_inference
from realspike_cli.core.models import arch_entry, build_model, list_archs
from realspike_cli.core.neuron import LIFNeuron, RealSpike
from realspike_cli.core.reparam import to_inference
from realspike_cli.core.specs import ModelSpec, NeuronSpec
from tests.conftest import randomize_batchnorm
from tests.oracles import (
    assert_nir_runs_the_checkpoint,
    assert_onnx_runs_the_checkpoint,
    onnx_logits,
    snntorch_run,
    spike_counts,
)

nir = pytest.importorskip("nir")
SETTINGS = ["binary", "layer", "channel", "element"]
MNIST_IMAGES = 200  # third-party simulators run on this many mnist10k test images


pytestmark = pytest.mark.usefixtures("one_thread")


def make_spec(arch: str, spike: str, *, size: int | None = None, channels: int = 3, kind: str | None = None,
              width: float | None = None, encoding: str = "direct") -> ModelSpec:
    small = arch == "small_convnet"
    size = size or (28 if small else 32)
    neuron = NeuronSpec(kind=kind or arch_entry(arch).default_neuron)
    width = width or (0.25 if small else 0.0625)
    return ModelSpec(arch, 10, 1 if small else channels, (size, size), 2, spike=spike, neuron=neuron,
                     encoding=encoding, arch_kwargs={"width": width})


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm statistics and coefficients that keep every layer firing (a ~ U(0.2, 1.5))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            randomize_batchnorm(m, g)
            if isinstance(m, RealSpike):
                m.a.uniform_(0.2, 1.5, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Checkpoint factory: a randomized training-form model saved once per (arch, setting, options)."""
    folder, made = tmp_path_factory.mktemp("ckpt"), {}

    def make(arch: str, spike: str, dataset: str = "none", **kw):
        key = (arch, spike, dataset, tuple(sorted(kw.items())))
        if key not in made:
            torch.manual_seed(0)
            spec = make_spec(arch, spike, **kw)
            path = folder / f"{arch}-{spike}-{len(made)}.safetensors"
            save_checkpoint(path, randomize(build_model(spec)), CheckpointMeta(spec, dataset))
            made[key] = path
        return made[key]

    return make


def quick(**kw) -> ExportOptions:
    return ExportOptions(probe_images=8, random_probe=True, **kw)


def mnist(n: int, size: int = 28) -> torch.Tensor:
    """mnist10k test images; size 16: halved (2×2 average) and padded with background, for the CIFAR nets."""
    from realspike_cli.core.datasets import DataOptions, load_dataset

    x, _ = load_dataset("mnist10k", DataOptions(augment="none")).test.batch(torch.arange(n))
    if size == 28:
        return x
    return F.pad(F.avg_pool2d(x, 2), (1, 1, 1, 1), value=float(x.min()))


def one_error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return " ".join(err.split())


# --- ONNX ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spike", SETTINGS)
@pytest.mark.parametrize("arch", list_archs())
def test_onnx_matches_pytorch(ckpt, tmp_path, arch, spike):
    """Every architecture × setting at its full test size (28×28 small_convnet, 32×32 the rest)."""
    pytest.importorskip("onnxruntime")
    if arch.startswith("sew") and spike == "element":  # the inference form itself does not exist
        with pytest.raises(ReparamError, match="through MaxPool2d body.1"):
            export_checkpoint(ckpt(arch, spike), "onnx", tmp_path / "m.onnx", options=quick())
        return
    result = export_checkpoint(ckpt(arch, spike), "onnx", tmp_path / "m.onnx", options=quick())
    assert result.source_form == "train"
    assert_onnx_runs_the_checkpoint(tmp_path / "m.onnx", ckpt(arch, spike))


@pytest.mark.slow
def test_onnx_dynamo_exporter(ckpt, tmp_path):
    """--onnx-exporter dynamo (torch.export-based, needs onnxscript) gives the same graph semantics."""
    pytest.importorskip("onnxscript")
    options = quick(onnx_exporter="dynamo")
    result = export_checkpoint(ckpt("small_convnet", "channel"), "onnx", tmp_path / "m.onnx", options=options)
    assert result.checks["exporter"] == "dynamo"
    assert_onnx_runs_the_checkpoint(tmp_path / "m.onnx", ckpt("small_convnet", "channel"))


def test_frame_encoding(ckpt, tmp_path):
    """Event-frame input [B, T, C, H, W]: one frame per step in ONNX and in NIR (dense form included)."""
    pytest.importorskip("onnxruntime")
    for spike in ("channel", "element"):
        source = ckpt("small_convnet", spike, width=0.125, encoding="frames")
        export_checkpoint(source, "onnx", tmp_path / f"{spike}.onnx", options=quick())
        assert_onnx_runs_the_checkpoint(tmp_path / f"{spike}.onnx", source)
        export_checkpoint(source, "nir", tmp_path / f"{spike}.nir", options=quick())
        assert_nir_runs_the_checkpoint(tmp_path / f"{spike}.nir", source)


def test_onnx_materialized_inference_checkpoint(ckpt, tmp_path):
    """An inference-form checkpoint (explicit per-position kernels) exports without re-parameterizing."""
    pytest.importorskip("onnxruntime")
    path = tmp_path / "inf.safetensors"
    source, meta = load_checkpoint(ckpt("small_convnet", "element", width=0.125))
    materialized = to_inference(source, materialize=True)
    save_checkpoint(path, materialized, CheckpointMeta(meta.spec, "none", form="inference",
                                                       weight_layout="materialized"))
    result = export_checkpoint(path, "onnx", tmp_path / "m.onnx", options=quick())
    assert result.source_form == "inference"
    assert_onnx_runs_the_checkpoint(tmp_path / "m.onnx", path)


def test_onnx_refusal_writes_nothing(ckpt, tmp_path, monkeypatch):
    """A planted difference in what onnxruntime returns (onnxruntime itself is exact on this model)."""
    pytest.importorskip("onnxruntime")
    from realspike_cli.core.export import onnx_export

    real_run = onnx_export._run
    monkeypatch.setattr(onnx_export, "_run", lambda ort, job: real_run(ort, job) + 1e-3)
    source = ckpt("small_convnet", "layer")
    with pytest.raises(ExportError, match="above the tolerance 1e-06; nothing written"):
        export_checkpoint(source, "onnx", tmp_path / "m.onnx", options=quick(tolerance=1e-6))
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file is left behind


def test_the_direct_oracles_catch_a_planted_difference(ckpt, tmp_path):
    """assert_onnx_runs_the_checkpoint / assert_nir_runs_the_checkpoint fail when the checkpoint they compare
    with differs by 1e-3 in one bias (the files were written from the unplanted one)."""
    pytest.importorskip("onnxruntime")
    source = ckpt("small_convnet", "channel")
    export_checkpoint(source, "onnx", tmp_path / "m.onnx", options=quick())
    export_checkpoint(source, "nir", tmp_path / "m.nir", options=quick())
    assert_onnx_runs_the_checkpoint(tmp_path / "m.onnx", source)
    assert_nir_runs_the_checkpoint(tmp_path / "m.nir", source)
    model, meta = load_checkpoint(source)
    with torch.no_grad():
        model.get_submodule("head").bias[2] += 1e-3
    planted = save_checkpoint(tmp_path / "planted.safetensors", model, meta)
    with pytest.raises(AssertionError):
        assert_onnx_runs_the_checkpoint(tmp_path / "m.onnx", planted)
    with pytest.raises(AssertionError):
        assert_nir_runs_the_checkpoint(tmp_path / "m.nir", planted)


# --- torch.export ----------------------------------------------------------------------------------------------


def test_pt2_round_trip(ckpt, tmp_path):
    path = tmp_path / "m.pt2"
    result = export_checkpoint(ckpt("small_convnet", "element", width=0.125), "pt2", path, options=quick())
    assert result.checks["max_abs_diff"] <= 1e-6
    extra = {"realspike.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.load(str(path), extra_files=extra)
    assert json.loads(extra["realspike.json"])["model"]["arch"] == "small_convnet"
    model, _ = load_inference(ckpt("small_convnet", "element", width=0.125))
    x = torch.rand(3, 1, 28, 28)  # a batch size it was not traced with
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), rtol=0, atol=1e-6)


# --- NIR -------------------------------------------------------------------------------------------------------

# Every architecture × setting NIR can express (small_convnet's run in snnTorch below; SEW's max pooling is
# refused), on small maps: the graph is the same as at 32×32 and the dense element-wise forms stay small.
NIR_CASES = [(a, s) for a in ("vgg11", "vgg16", "resnet19", "resnet20") for s in SETTINGS]
SIZES = {"resnet20": 16}  # its ceil-mode shortcut pools need even maps down to 2×2


@pytest.mark.parametrize(("arch", "spike"), NIR_CASES)
def test_nir_file_runs_in_snntorch_like_the_checkpoint(ckpt, tmp_path, arch, spike):
    """The written file, read and run by snnTorch, gives the training form's spikes and logits (the exporter's
    own check, nir_sim, is not the judge here)."""
    size = SIZES.get(arch, 8)
    result = export_checkpoint(ckpt(arch, spike, size=size), "nir", tmp_path / "m.nir", options=quick())
    assert result.checks["mode"] == ("dense" if spike == "element" else "layers")
    assert_nir_runs_the_checkpoint(tmp_path / "m.nir", ckpt(arch, spike, size=size))  # snnTorch reads it


def test_nir_neuron_mapping(ckpt, tmp_path):
    """LIF: tau = dt/(1−λ), r = 1, v_leak = v_reset = 0, incoming weights × 1/(1−λ); IF: decay 1 -> nir.IF."""
    export_checkpoint(ckpt("small_convnet", "binary"), "nir", tmp_path / "lif.nir", options=quick(dt=1e-3))
    graph = nir.read(str(tmp_path / "lif.nir"))
    lif, conv = graph.nodes["body.0.neuron"], graph.nodes["stem.0"]
    assert isinstance(lif, nir.LIF) and float(graph.metadata["dt"]) == 1e-3
    assert torch.allclose(torch.as_tensor(lif.tau), torch.tensor(1e-3 / 0.75, dtype=torch.float64))
    assert (lif.r == 1).all() and (lif.v_leak == 0).all() and (lif.v_reset == 0).all()
    assert (lif.v_threshold == 0.5).all()
    model, _ = load_inference(ckpt("small_convnet", "binary"))
    assert torch.allclose(torch.as_tensor(conv.weight), model.get_submodule("stem.0").weight.double() / 0.75)
    export_checkpoint(ckpt("small_convnet", "binary", kind="if"), "nir", tmp_path / "if.nir", options=quick())
    graph = nir.read(str(tmp_path / "if.nir"))
    assert isinstance(graph.nodes["body.0.neuron"], nir.IF) and float(graph.metadata["input_scale"]) == 1.0


@pytest.mark.parametrize("spike", SETTINGS)
def test_snntorch_small_convnet_same_spikes(ckpt, tmp_path, spike):
    """snnTorch runs the file on mnist10k: same predictions and the same spike count in every layer, up to the
    rare spike that float32 flips (snnTorch computes in float32 with the 1/(1−λ)-scaled weights; measured: at
    most 1 of ~6e5 spikes per layer over 200 images, often none)."""
    width = 0.125 if spike == "element" else None
    path = export_checkpoint(ckpt("small_convnet", spike, width=width), "nir", tmp_path / "m.nir",
                             options=quick()).output
    x = mnist(MNIST_IMAGES, 28)
    logits, counts = snntorch_run(path, x, 2)
    model, _ = load_checkpoint(ckpt("small_convnet", spike, width=width))  # the training form, as saved
    reference, ref_counts = spike_counts(model.eval(), x)
    assert torch.equal(logits.argmax(1), reference.argmax(1))
    assert sorted(counts) == sorted(ref_counts)
    for name, want in ref_counts.items():
        got = float(counts[name])
        assert want > 0 and abs(got - want) <= 1e-5 * want, (name, want, got)


@pytest.mark.parametrize(("arch", "spike"), [("resnet20", "binary"), ("resnet19", "channel")])
def test_snntorch_same_predictions(ckpt, tmp_path, arch, spike):
    """Residual sums (several edges into one node), identity spikes and identity scales, on 16×16 mnist10k."""
    path = export_checkpoint(ckpt(arch, spike, channels=1, size=16), "nir", tmp_path / "m.nir",
                             options=quick()).output
    x = mnist(MNIST_IMAGES, 16)
    logits, _ = snntorch_run(path, x, 2)
    model, _ = load_checkpoint(ckpt(arch, spike, channels=1, size=16))  # the training form, as saved
    with torch.no_grad():
        assert torch.equal(logits.argmax(1), model.eval()(x).argmax(1))


def test_norse_if_neurons_with_sum_pooling(ckpt, tmp_path):
    """Norse reads IF nodes and SumPool2d (not AvgPool2d): --nir-pooling sum, dt from the file's metadata."""
    norse = pytest.importorskip("norse.torch")
    path = export_checkpoint(ckpt("small_convnet", "channel", kind="if"), "nir", tmp_path / "m.nir",
                             options=quick(pooling="sum")).output
    graph = nir.read(str(path))
    assert any(isinstance(n, nir.SumPool2d) for n in graph.nodes.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = norse.from_nir(graph, dt=float(graph.metadata["dt"]), ignore_warnings=True)
    for m in net.modules():
        if isinstance(m, nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1
    x = mnist(MNIST_IMAGES, 28)
    counts: dict[str, float] = {}
    with torch.no_grad():
        state, outs = None, []
        for _ in range(2):
            out, state = net(x, state)
            outs.append(out)
            for name, value in state.cache.items():
                if name.endswith("neuron"):
                    counts[name] = counts.get(name, 0.0) + float(value.sum())
    model, _ = load_checkpoint(ckpt("small_convnet", "channel", kind="if"))  # the training form, as saved
    reference, ref_counts = spike_counts(model.eval(), x)
    assert torch.equal(torch.stack(outs).mean(0).argmax(1), reference.argmax(1))
    assert ref_counts == counts


@pytest.mark.parametrize(("arch", "spike", "kw", "message"), [
    ("sew_resnet18", "binary", {}, "NIR has no max-pooling node, so body.1 (MaxPool2d) cannot be exported"),
    ("resnet19", "element", {}, "dense Affine form needs 822,104,064 weights, above the limit of 50,000,000"),
    ("resnet20", "channel", {"size": 28}, "uses ceil_mode on a 7x7 map"),
])
def test_nir_refuses_what_it_cannot_express(ckpt, tmp_path, arch, spike, kw, message):
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_checkpoint(ckpt(arch, spike, **kw), "nir", tmp_path / "m.nir", options=quick())
    assert list(tmp_path.iterdir()) == []


# --- the command line ------------------------------------------------------------------------------------------


def test_cli_nir_json(ckpt, tmp_path, capsys):
    out = tmp_path / "m.nir"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(ckpt("small_convnet", "layer")), "--format", "nir", "-o", str(out), "--random",
              "--probe-images", "4", "--json"])
    assert exit_info.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "nir" and report["checks"]["spike_count_diff"] == 0 and out.exists()
    assert_nir_runs_the_checkpoint(out, ckpt("small_convnet", "layer"))  # the report is not the judge


def test_cli_bad_inputs(ckpt, tmp_path, capsys, monkeypatch):
    source = str(ckpt("small_convnet", "layer"))
    err = one_error_line(capsys, ["export", str(tmp_path / "missing.safetensors"), "--format", "onnx"])
    assert "checkpoint not found" in err
    err = one_error_line(capsys, ["export", source, "--format", "onxx"])
    assert "unknown export format 'onxx'; did you mean 'onnx'?" in err
    (tmp_path / "taken.nir").write_text("keep me")
    err = one_error_line(capsys, ["export", source, "-f", "nir", "-o", str(tmp_path / "taken.nir")])
    assert "already exists; choose another -o path or pass --overwrite" in err
    assert (tmp_path / "taken.nir").read_text() == "keep me"
    err = one_error_line(capsys, ["export", source, "-f", "nir", "--nir-pooling", "max"])
    assert "unknown pooling 'max' (choose from: avg, sum)" in err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    err = one_error_line(capsys, ["export", source, "-f", "onnx", "-o", str(tmp_path / "m.onnx")])
    assert "--format onnx needs the optional package 'onnxruntime': pip install 'realspike[export]'" in err


# --- export() of an in-memory model ----------------------------------------------------------------------------


class BinaryNet(nn.Module):
    """A user's own network in the inference form already (binary spikes, no BatchNorm): nothing to fold."""

    def __init__(self, time_steps: int = 2, second_t: int | None = None) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.n1 = LIFNeuron(NeuronSpec(), time_steps)
        self.n2 = LIFNeuron(NeuronSpec(), second_t or time_steps)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.time_steps = time_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.n2(self.conv2(self.n1(self.conv1(x).repeat(self.time_steps, 1, 1, 1))))
        return self.fc(s.flatten(1)).unflatten(0, (self.time_steps, -1)).mean(0)


def test_export_in_memory_model(tmp_path):
    """No checkpoint: the module as built, validated on the given inputs; ONNX carries a description of it."""
    onnx = pytest.importorskip("onnx")
    from realspike_cli.core.export import export

    torch.manual_seed(1)
    model, x = BinaryNet().eval(), torch.rand(6, 1, 8, 8) * 3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for fmt in ("nir", "onnx"):  # pt2 takes the same path (test_pt2_round_trip covers the format)
        result = export(model, fmt, tmp_path / f"m.{fmt}", example_input=x)
        assert result.source_form == "inference", fmt
    assert result.probe == "6 example inputs"
    want, want_counts = spike_counts(model.double(), x.double())  # the module's own forward, float64
    model.float()
    logits, counts = snntorch_run(tmp_path / "m.nir", x, 2)
    for got in (onnx_logits(tmp_path / "m.onnx", x), logits):
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5 * float(want.abs().max()))
    assert {n: float(c) for n, c in counts.items()} == want_counts
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    described = {"producer": "realspike", "module": "BinaryNet", "source_form": "inference"}
    assert json.loads(props["realspike"]) == described
    network = build_model(make_spec("small_convnet", "channel"))  # a SpikingNetwork: random inputs of its spec
    result = export(network, "onnx", tmp_path / "net.onnx")
    assert result.source_form == "train" and result.probe.startswith("random inputs")


def test_export_in_memory_refusals(tmp_path):
    from realspike_cli.core.export import export

    model, x = BinaryNet().eval(), torch.rand(2, 1, 8, 8)
    with pytest.raises(ExportError, match="cannot export BinaryNet without example_input"):
        export(model, "nir", tmp_path / "m.nir")
    (tmp_path / "taken.nir").write_text("keep me")
    with pytest.raises(ExportError, match="already exists"):
        export(model, "nir", tmp_path / "taken.nir", example_input=x)
    assert (tmp_path / "taken.nir").read_text() == "keep me"
    with pytest.raises(ExportError, match=r"one neuron model and T for the whole network, but n1 is .*T=2.* n2 .*T=3"):
        export(BinaryNet(second_t=3).eval(), "nir", tmp_path / "m.nir", example_input=x)
    with pytest.raises(ExportError, match=r"unknown encoding 'spikes' \(choose from: direct, frames\)"):
        export(model, "nir", tmp_path / "m.nir", example_input=x, encoding="spikes")
    with pytest.raises(ExportError, match=r"event frames must be \[B, T=2, C, H, W\]"):
        export(model, "nir", tmp_path / "m.nir", example_input=x, encoding="frames")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.nn.utils.weight_norm(model.conv2)
    with pytest.raises(ExportError, match=r"cannot export: layer conv2 .*weight_norm \(hook-based\)"):
        export(model, "onnx", tmp_path / "m.onnx", example_input=x)
    trained = randomize(build_model(make_spec("small_convnet", "channel")))
    torch.nn.utils.parametrizations.spectral_norm(trained.get_submodule("body.2.0"))
    with pytest.raises(ReparamError, match=r"layer body\.2\.0 computes its weights through a parametrization"):
        export(trained, "onnx", tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.nir"]
