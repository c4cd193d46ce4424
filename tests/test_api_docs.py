"""Every Python example in docs/api.md runs, in order, in one namespace (as a reader would run them).

The examples assert their own claims against independent computations where they make one (the two forms
compared with torch.testing.assert_close, a reloaded state_dict compared tensor by tensor); this test adds
that the page's examples are all there and that each claim the prose makes of the results holds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_block_extraction_sees_every_block():
    text = "a\n```python\nx = 1\n```\n```toml\nk = 1\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = 2\n"]


@pytest.fixture(scope="module")
def namespace(tmp_path_factory):
    import os

    workdir = tmp_path_factory.mktemp("api-docs")
    previous = Path.cwd()
    os.chdir(workdir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the zoo example falls back to the source tree's copy
    threads = torch.get_num_threads()
    scope: dict = {"__name__": "api_docs"}
    try:
        for block in python_blocks(DOC.read_text(encoding="utf-8")):
            exec(compile(block, str(DOC), "exec"), scope)  # noqa: S102 - our own documentation
        yield scope | {"workdir": workdir}
    finally:
        from realspike_cli.core import registry

        registry._ARCHS.pop("mynet_registered", None)  # the page registers one: keep other tests' registry clean
        os.chdir(previous)
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_every_example_runs(namespace):
    assert {"model", "inference", "report", "energy", "exported", "pulled", "mine"} <= namespace.keys()


@pytest.mark.slow
def test_the_user_network_is_registered_nowhere_and_converted_exactly(namespace):
    import realspike_cli as rs

    assert type(namespace["model"]).__name__ == "MyNet" and "MyNet" not in rs.list_models()
    assert not any(isinstance(m, rs.RealSpike) for m in namespace["inference"].modules())
    assert namespace["report"].non_binary_layers == []


@pytest.mark.slow
def test_the_export_and_checkpoint_files_exist(namespace):
    workdir = namespace["workdir"]
    assert (workdir / "mynet.nir").is_file() and (workdir / "mynet.safetensors").is_file()
    assert (workdir / "runs" / "api-demo" / "resume.pt").is_file()  # the Checkpointer's resume point


@pytest.mark.slow
def test_the_energy_counts_match_the_recorded_spikes(namespace):
    """The prose: counted from the spikes the model really emits. Recount them with hooks of our own."""
    import realspike_cli as rs

    model, images = namespace["model"].double().eval(), namespace["images"][:64].double()
    spikes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: spikes.append(float(out.sum())))
             for m in model.modules() if isinstance(m, rs.LIFNeuron)]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    energy = namespace["energy"]
    train = next(f for f in energy.forms if f.form == "train")
    assert train.totals(energy.profile, energy.ann_energy_pj)["spikes"] == pytest.approx(sum(spikes) / 64)


@pytest.mark.slow
def test_the_readme_python_example_runs_and_its_comment_holds(capsys):
    readme = DOC.parents[1] / "README.md"
    blocks = python_blocks(readme.read_text(encoding="utf-8"))
    assert len(blocks) == 1
    scope: dict = {"__name__": "readme"}
    exec(compile(blocks[0], str(readme), "exec"), scope)  # noqa: S102 - our own documentation
    model, inference, images = scope["model"], scope["inference"], scope["images"]
    with torch.no_grad():  # "exact fold": judged here directly, not by the report the example prints
        torch.testing.assert_close(inference.double()(images.double()), model.double()(images.double()))
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("train 0 ACs") and printed[2].startswith("inference ")  # ACs only after the fold
