"""Export of the neuron family: ONNX and torch.export for ternary spikes, MPBN (per-channel thresholds) and
soft reset; NIR for MPBN (per-neuron threshold arrays) checked with the reference simulator and with Norse;
NIR's refusals (ternary, soft reset); and the issue's "Done when" from the command line on mnist10k.

Oracles: a naive neuron loop written here; onnxruntime and torch.export.load run by the test against the
TRAINING form (not the inference form the exporter validates against); Norse reading the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import pytest
import torch
from torch import nn

from realspike_cli.cli.app import main
from realspike_cli.core.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from realspike_cli.core.export import ExportError, ExportOptions, export
from realspike_cli.core.export.common import StepLIF
from realspike_cli.core.models import build_model
from realspike_cli.core.neuron import LIFNeuron
from realspike_cli.core.reparam import to_inference
from realspike_cli.core.specs import NeuronSpec
from realspike_cli.core.threshold_neuron import ThresholdLIF
from tests.oracles import assert_onnx_runs_the_checkpoint, onnx_logits, own_probe
from tests.test_family_folds import neuron_outputs, randomize, spec_of

pytestmark = pytest.mark.usefixtures("one_thread")
nir = pytest.importorskip("nir")


def naive_lif(x: torch.Tensor, steps: int, decay: float, upper, lower=None, reset_by=None) -> torch.Tensor:
    """The neuron of docs/neurons.md written out: h = decay·u + x; s = +1 / −1 / 0; u = 0 after a spike (hard)
    or u = h − reset_by·s (soft); thresholds broadcast over the features."""
    u, out = torch.zeros_like(x[: len(x) // steps]), []
    for x_t in x.unflatten(0, (steps, -1)):
        h = decay * u + x_t
        s = torch.where(h >= upper, 1.0, 0.0).to(x.dtype)
        if lower is not None:
            s = torch.where(h <= lower, -1.0, s).to(x.dtype)
        u = torch.where(s != 0, torch.zeros_like(h), h) if reset_by is None else h - reset_by * s
        out.append(s)
    return torch.cat(out)


@pytest.mark.parametrize("ternary", [False, True], ids=["binary", "ternary"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_traceable_twin_equals_the_kernel_and_a_naive_loop(ternary, reset):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * 5, 4, 2, 2, generator=g) * 0.8
    neuron = LIFNeuron(NeuronSpec(decay=0.3, v_th=0.4, reset=reset), 3, backend="eager", ternary=ternary)
    with torch.no_grad():
        want = neuron(x)
        assert torch.equal(StepLIF(neuron)(x), want)  # float32: the same arithmetic as the eager kernel
    soft = 0.4 if reset == "soft" else None
    assert torch.equal(want, naive_lif(x, 3, 0.3, 0.4, -0.4 if ternary else None, soft))
    upper = torch.tensor([0.3, -0.1, 0.5, 0.8]).view(4, 1, 1)
    lower = torch.tensor([-0.2, -0.6, 0.1, -0.9]).view(4, 1, 1) if ternary else None
    reset_by = torch.tensor([0.5, -0.5, 0.0, 0.5]).view(4, 1, 1) if reset == "soft" else None
    per_channel = ThresholdLIF(NeuronSpec(decay=0.3, reset=reset), 3, upper, ternary=ternary, lower=lower,
                               reset_by=reset_by)
    with torch.no_grad():
        got = per_channel(x)
        assert torch.equal(StepLIF(per_channel)(x), got)
    assert torch.equal(got, naive_lif(x, 3, 0.3, upper, lower, reset_by))
    planted = naive_lif(x, 3, 0.3, upper + 0.05, lower, reset_by)
    assert not torch.equal(got, planted)  # the loop is sensitive to the thresholds


# --- ONNX and torch.export ---------------------------------------------------------------------------------

FORMATS_CASES = [
    ("small_convnet", "ternary-channel", "lif", "hard"),
    ("small_convnet", "element", "mpbn", "hard"),
    ("small_convnet", "ternary-channel", "mpbn", "soft"),
    ("small_convnet", "binary", "lif", "soft"),
    ("resnet20", "ternary-layer", "mpbn", "soft"),
]


@pytest.mark.parametrize(("arch", "spike", "kind", "reset"), FORMATS_CASES)
def test_onnx_and_pt2_run_the_training_forms_function(tmp_path, arch, spike, kind, reset):
    """The files, run by onnxruntime and torch.export.load here, give the training form's predictions and
    its logits up to float32 rounding (the training form run in float64 is the reference)."""
    pytest.importorskip("onnx")
    spec = spec_of(arch, spike, kind, reset)
    model = randomize(build_model(spec)).float()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(12, *((spec.in_channels, *spec.input_size)), generator=g) * 3 - 0.5
    with torch.no_grad():
        want = model.double()(x.double()).float()
    model.float()
    for fmt in ("onnx", "pt2") if arch == "small_convnet" else ("onnx",):
        result = export(model, fmt, tmp_path / f"m.{fmt}", example_input=x)
        assert result.checks["agreement"] == 1.0 and result.source_form == "train"
        if fmt == "onnx":
            got = onnx_logits(result.output, x)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.load(str(result.output)).module()
            with torch.no_grad():
                got = program(x)
        assert torch.equal(got.argmax(1), want.argmax(1))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * float(want.abs().max()))


def test_onnx_comparison_catches_a_planted_difference(tmp_path):
    spec = spec_of("small_convnet", "ternary-channel", "mpbn")
    model = randomize(build_model(spec)).float()
    x = torch.rand(8, 1, 28, 28) * 3
    path = export(model, "onnx", tmp_path / "m.onnx", example_input=x).output
    with torch.no_grad():
        model.get_submodule("body.3.neuron").norm.bias.add_(0.3)
        want = model(x)
    assert not torch.allclose(onnx_logits(path, x), want, rtol=0, atol=1e-4 * float(want.abs().max()))


# --- NIR: MPBN with per-neuron thresholds -----------------------------------------------------------------------


@pytest.mark.parametrize(("spike", "mode"), [("channel", "layers"), ("element", "dense")])
def test_nir_carries_the_per_channel_thresholds(tmp_path, spike, mode):
    spec = spec_of("small_convnet", spike, "mpbn", width=0.125)
    model = randomize(build_model(spec)).float()
    x = torch.rand(8, 1, 28, 28) * 3
    result = export(model, "nir", tmp_path / "m.nir", example_input=x)
    c = result.checks
    assert c["mode"] == mode and c["spike_count_diff"] == 0 and c["spikes"] > 0 and c["relative_diff"] <= 1e-12
    assert any("per-neuron v_threshold" in note for note in result.notes)
    graph, inference = nir.read(str(result.output)), to_inference(model)
    for name in ("body.0.neuron", "body.3.neuron", "body.8.neuron"):
        written = torch.as_tensor(graph.nodes[name].v_threshold)
        upper = inference.get_submodule(name).upper.double()
        features = upper.shape if name == "body.8.neuron" else (upper.shape[0], *((28, 28) if name == "body.0.neuron"
                                                                                 else (14, 14)))
        assert torch.equal(written.flatten(), upper.expand(features).flatten())
        assert len(written.unique()) > 1  # really per channel
    assert graph.metadata["thresholds"] == "per neuron"


@pytest.mark.parametrize("decay", [1.0, 0.25], ids=["if", "lif"])
def test_norse_reads_the_per_neuron_thresholds(tmp_path, decay):
    """Norse (IF and LIF nodes, sum pooling) gives the same predictions and the same spike count per layer
    as the training form, negative and zero γ included."""
    norse = pytest.importorskip("norse.torch")
    spec = spec_of("small_convnet", "channel", "mpbn", decay=decay)
    model = randomize(build_model(spec)).float()
    x = torch.rand(32, 1, 28, 28) * 3
    path = export(model, "nir", tmp_path / "m.nir", example_input=x, options=ExportOptions(pooling="sum")).output
    graph = nir.read(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = norse.from_nir(graph, dt=float(graph.metadata["dt"]), ignore_warnings=True)
    for m in net.modules():
        if isinstance(m, nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1
    counts: dict[str, float] = {}
    with torch.no_grad():
        state, outs = None, []
        for _ in range(spec.time_steps):
            out, state = net(x, state)
            outs.append(out)
            for name, value in state.cache.items():
                if name.endswith("neuron"):
                    counts[name] = counts.get(name, 0.0) + float(value.sum())
    want, spikes = neuron_outputs(model, x)
    assert torch.equal(torch.stack(outs).mean(0).argmax(1), want.argmax(1))
    assert counts == {name.replace(".", "_"): float(s.sum()) for name, s in spikes.items()}


def test_snntorch_cannot_read_per_neuron_thresholds(tmp_path):
    """What we found: snnTorch 1.0's NIR importer asserts one threshold per layer (the exporter notes it)."""
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    model = randomize(build_model(spec_of("small_convnet", "channel", "mpbn"))).float()
    path = export(model, "nir", tmp_path / "m.nir", example_input=torch.rand(4, 1, 28, 28)).output
    with pytest.raises(AssertionError, match="must be same for all neurons"), contextlib.redirect_stdout(io.StringIO()):
        import_from_nir(nir.read(str(path)))


@pytest.mark.parametrize(("spike", "reset", "message"), [
    ("ternary-channel", "hard", "NIR has no ternary spiking node (its LIF/IF emit 0/1 spikes), so body.0.neuron "
     "(ternary spikes) cannot be exported to NIR"),
    ("channel", "soft", "NIR's LIF/IF reset to v_reset after a spike (a hard reset), so body.0.neuron (soft reset) "
     "cannot be exported to NIR"),
])
def test_nir_refuses_ternary_spikes_and_soft_reset(tmp_path, capsys, spike, reset, message):
    spec = spec_of("small_convnet", spike, "lif", reset)
    model = randomize(build_model(spec)).float()
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export(model, "nir", tmp_path / "m.nir", example_input=torch.rand(2, 1, 28, 28))
    path = save_checkpoint(tmp_path / "m.safetensors", model, CheckpointMeta(spec=spec, dataset="mnist10k"))
    code, _, err = cli(capsys, "export", str(path), "--format", "nir", "--random", "-o", str(tmp_path / "c.nir"))
    assert code == 1 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    assert message in " ".join(err.split()) and not (tmp_path / "c.nir").exists() and not (tmp_path / "m.nir").exists()


# --- the command line, end to end on mnist10k (issue 17's "Done when") -------------------------------------------


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def train_convert_count_export(tmp_path, capsys, flags: list[str], train: list[str]) -> dict:
    """train -> reparam (100 % agreement, spikes in the alphabet) -> energy -> export onnx, pt2 (and NIR for
    binary spikes, refused for ternary); returns the measured numbers."""
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "mnist10k", *train, *flags, "--out", str(run))
    assert code == 0, err
    best = run / "best.safetensors"
    code, out, err = cli(capsys, "reparam", str(best), "--json")
    assert code == 0, err
    reparam = json.loads(out)
    assert reparam["agreement"] == 1.0 and reparam["spikes_in_alphabet"] and reparam["relative_diff"] <= 1e-4
    ternary = "ternary" in flags[-1]
    assert reparam["spike_alphabets"] == [[-1.0, 0.0, 1.0] if ternary else [0.0, 1.0]]
    mpbn = "mpbn" in flags
    assert reparam["folds"].get("membrane-threshold", 0) == (3 if mpbn else 0)
    code, out, err = cli(capsys, "energy", str(best), "--batches", "1", "--batch-size", "32", "--json", "-")
    assert code == 0, err
    energy = json.loads(out)
    inference = energy["forms"]["inference"]
    assert inference["totals"]["spikes"] > 0 and inference["totals"]["macs"] == energy["forms"]["inference"][
        "layers"][0]["macs"]  # the stem only: no MAC on spikes, no BatchNorm (MPBN: compares)
    assert not any(layer["kind"] == "batchnorm" for layer in inference["layers"])
    exported = {}
    for fmt in ("onnx", "pt2", "nir"):
        target = run / f"model.{fmt}"
        code, out, err = cli(capsys, "export", str(best), "--format", fmt, "-o", str(target), "--json")
        if fmt == "nir" and ternary:
            assert code == 1 and "NIR has no ternary spiking node" in " ".join(err.split()) and not target.exists()
            continue
        assert code == 0, err
        exported[fmt] = json.loads(out)["checks"]
        assert exported[fmt]["agreement"] == 1.0 and exported[fmt]["relative_diff"] <= 1e-4
    # judged here, not by the reports: the written files run against the training checkpoint's own forward
    assert_onnx_runs_the_checkpoint(run / "model.onnx", best)
    model, meta = load_checkpoint(best)
    x = own_probe(meta.spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.load(str(run / "model.pt2")).module()
    folded, _ = load_checkpoint(run / "best.inference.safetensors")
    with torch.no_grad():
        want = model.double().eval()(x.double())
        for got in (program(x), folded.eval()(x)):
            assert torch.equal(got.argmax(1), want.argmax(1))
            torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4 * float(want.abs().max()))
    return {"reparam": reparam, "energy": inference["totals"], "export": exported}


@pytest.mark.slow
def test_mpbn_ternary_channel_from_the_command_line(tmp_path, capsys):
    """The fast variant: one training step (5 % of mnist10k, the rest held out), T = 1, width 0.125."""
    tiny = ["--width", "0.125", "--t", "1", "--epochs", "1", "--batch-size", "400", "--val-split", "0.95"]
    train_convert_count_export(tmp_path, capsys, ["--neuron", "mpbn", "--spike", "ternary-channel"], tiny)


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [["--spike", "ternary-channel"], ["--neuron", "mpbn", "--spike", "element"],
     ["--neuron", "mpbn", "--spike", "ternary-channel"]],
    ids=["ternary-channel", "mpbn-element", "mpbn-ternary-channel"],
)
def test_family_trains_converts_counts_and_exports_on_mnist10k(tmp_path, capsys, flags):
    """One full epoch at width 0.25, T = 2: it learns, then converts at 100 % agreement, is counted, exported."""
    train = ["--width", "0.25", "--t", "2", "--epochs", "1", "--batch-size", "250"]
    numbers = train_convert_count_export(tmp_path, capsys, flags, train)
    epoch = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert epoch["test_top1"] > 0.5
    print(json.dumps({"flags": flags, "test_top1": epoch["test_top1"], **numbers}, default=str))
