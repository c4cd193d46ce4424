"""The paper's numbers as data (zoo/paper_results.toml) and the named recipes built on them.

Oracle: the tables and in-text statements of Guo et al. (ECCV 2022), typed into this file by hand from the
paper; the data file, the recipes and `realspike train --recipe` are checked against them.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from realspike_cli.cli.app import main
from realspike_cli.core.paper_results import load_paper_results
from realspike_cli.core.recipes import RECIPES, list_recipes, recipe
from realspike_cli.core.zoo import ZooError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PAPER = load_paper_results(ROOT / "zoo" / "paper_results.toml")

# --- typed from the paper ------------------------------------------------------------------------------
# Table 1 (ResNet20): (data set, spike) -> top-1 at T = 2, 4, 6. RS is element-wise.
TABLE1 = {("cifar10", "binary"): (88.91, 91.73, 92.98), ("cifar10", "element"): (90.47, 92.53, 93.44),
          ("cifar100", "binary"): (62.59, 63.27, 67.12), ("cifar100", "element"): (63.40, 64.87, 68.60)}
# Table 2 (ResNet20, T = 4): vanilla, layer-wise, channel-wise, element-wise.
TABLE2 = {"cifar10": (91.73, 92.12, 92.25, 92.53), "cifar100": (63.27, 64.28, 64.71, 64.87)}
# Table 3, the Real Spike rows: (data set, arch, T) -> (top-1, ± over 3 trials).
TABLE3 = {
    ("cifar10", "resnet19", 2): (94.01, 0.10), ("cifar10", "resnet19", 4): (95.60, 0.08),
    ("cifar10", "resnet19", 6): (95.71, 0.07), ("cifar10", "resnet20", 5): (93.01, 0.07),
    ("cifar10", "resnet20", 10): (93.65, 0.05), ("cifar10", "vgg16", 5): (92.90, 0.09),
    ("cifar10", "vgg16", 10): (93.58, 0.06), ("cifar100", "resnet20", 5): (66.60, 0.11),
    ("cifar100", "vgg16", 5): (70.62, 0.08), ("cifar100", "vgg16", 10): (71.17, 0.07),
    ("imagenet", "sew_resnet18", 4): (63.68, 0.08), ("imagenet", "sew_resnet34", 4): (67.69, 0.07),
    ("cifar10-dvs", "resnet19", 10): (72.85, 0.12), ("cifar10-dvs", "resnet20", 10): (78.00, 0.10),
}
SETTINGS = ("binary", "layer", "channel", "element")


def expected_rows() -> dict[tuple, tuple[float, float | None]]:
    rows = {}
    for (dataset, spike), values in TABLE1.items():
        for steps, v in zip((2, 4, 6), values, strict=True):
            rows[("Table 1", dataset, "resnet20", steps, spike)] = (v, None)
    for dataset, values in TABLE2.items():
        for spike, v in zip(SETTINGS, values, strict=True):
            rows[("Table 2", dataset, "resnet20", 4, spike)] = (v, None)
    for (dataset, arch, steps), (v, std) in TABLE3.items():
        rows[("Table 3", dataset, arch, steps, "channel" if dataset == "imagenet" else "element")] = (v, std)
    return rows


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


# --- the data file is the paper --------------------------------------------------------------------------


def test_data_file_holds_exactly_the_papers_tables():
    held = {(r.table, *r.key): (r.top1, r.std) for r in PAPER.rows}
    assert len(PAPER.rows) == len(held) == 12 + 8 + 14
    assert held == expected_rows()
    for r in PAPER.rows:  # the row as printed carries the same digits
        assert r.printed.endswith(f"{r.top1:.2f}%" + (f" ± {r.std:.2f}" if r.std is not None else ""))
    assert "@inproceedings{guo2022realspike" in PAPER.citation and "ECCV 2022" in PAPER.source


def test_comparison_catches_a_planted_difference(tmp_path):
    path = tmp_path / "planted.toml"
    path.write_text((ROOT / "zoo" / "paper_results.toml").read_text().replace("top1 = 95.71", "top1 = 95.17"))
    planted = {(r.table, *r.key): (r.top1, r.std) for r in load_paper_results(path).rows}
    assert planted != expected_rows() and planted[("Table 3", "cifar10", "resnet19", 6, "element")] == (95.17, 0.07)


def test_data_file_agrees_with_the_papers_text():
    """Sentences of Sec. 4 restate Table 3 against other methods' rows (typed here); the data must fit."""
    t3 = {k[1:4]: v for k, v in ((("Table 3", *r.key), r.top1) for r in PAPER.table("Table 3"))}
    cifar10 = {k: v for k, v in t3.items() if k[0] == "cifar10"}
    assert max(cifar10, key=cifar10.get) == ("cifar10", "resnet19", 6) and cifar10[max(cifar10, key=cifar10.get)] \
        == 95.71  # "the best result of 95.71% ... ResNet19 with 6 timesteps"
    claims = [  # (Real Spike row, other method's top-1 in Table 3, the gain the text states)
        (("cifar10", "resnet19", 2), 93.16, 0.85),  # vs STBP-tdBN ResNet19 T = 6
        (("cifar100", "resnet20", 5), 64.07, 2.53),  # vs Diet-SNN ResNet20
        (("cifar100", "vgg16", 5), 69.67, 0.95),  # vs Diet-SNN VGG16
        (("imagenet", "sew_resnet18", 4), 63.18, 0.5),  # vs SEW ResNet18
        (("imagenet", "sew_resnet34", 4), 67.04, 0.65),  # vs SEW ResNet34
        (("imagenet", "sew_resnet34", 4), 63.72, 3.97),  # vs STBP-tdBN ResNet34 T = 6
        (("cifar10-dvs", "resnet19", 10), 67.80, 5.05),  # vs STBP-tdBN ResNet19
    ]
    for key, other, gain in claims:
        assert math.isclose(t3[key] - other, gain, abs_tol=1e-6), key
    assert t3[("cifar10-dvs", "resnet20", 10)] == 78.00  # "Real Spike achieves ... 78.00% accuracy in 10 timesteps"
    for dataset in ("cifar10", "cifar100"):  # Sec. 4.1 and 4.2
        t1 = {(r.spike, r.time_steps): r.top1 for r in PAPER.table("Table 1") if r.dataset == dataset}
        assert all(t1[("element", t)] > t1[("binary", t)] for t in (2, 4, 6))
        t2 = {r.spike: r.top1 for r in PAPER.table("Table 2") if r.dataset == dataset}
        assert max(t2, key=t2.get) == "element" and all(t2[s] > t2["binary"] for s in SETTINGS[1:])
        assert (t2["binary"], t2["element"]) == (t1[("binary", 4)], t1[("element", 4)])  # same runs


def test_a_broken_data_file_is_one_clear_error(tmp_path):
    good = (ROOT / "zoo" / "paper_results.toml").read_text()
    for bad, expected in [(good.replace("top1 = 95.71", "top1 = nan"), "is not a percentage"),
                          (good.replace("top1 = 95.71", 'top1 = "95.71"'), "'top1' is missing or not a float"),
                          (good.replace('name = "Table 2"', 'name = "Table 9"'), "is named 'Table 9'"),
                          (good.replace("schema = 1", "schema = 2"), "has schema 2"),
                          ("rows = [", "is not valid TOML")]:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.toml"
        path.write_text(bad)
        with pytest.raises(ZooError, match=expected.replace("(", r"\(")):
            load_paper_results(path)


def test_the_data_file_ships_in_the_wheel_and_nothing_reads_the_shared_folder():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include["zoo/paper_results.toml"] == "realspike_cli/_zoo/paper_results.toml"
    for source in (ROOT / "realspike_cli").rglob("*.py"):
        assert "shared/paper" not in source.read_text(), source


# --- every recipe is a configuration of the paper, with its number ----------------------------------------


def test_recipes_are_exactly_the_papers_configurations():
    keys = {r.key for r in PAPER.rows}
    assert {(r.dataset, r.arch, r.time_steps, r.spike) for r in RECIPES.values()} == keys
    assert len(RECIPES) == len(keys) == 30  # 14 Table 3 rows + 16 Table 1/2 configurations
    assert {"cifar100-resnet19-t2", "cifar100-resnet19-t4", "cifar100-resnet20-t10"}.isdisjoint(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_carries_the_data_files_number(name):
    r = recipe(name)
    rows = PAPER.find(r.dataset, r.arch, r.time_steps, r.spike)
    assert r.reported() == rows and {x.table for x in rows} == set(r.tables)
    expected = expected_rows()[(rows[0].table, *rows[0].key)]
    assert r.target().startswith(f"paper ({'Table ' if len(rows) == 1 else 'Tables '}")
    assert f"): {expected[0]:.2f}" + (f" ± {expected[1]:.2f}" if expected[1] is not None else "") + " top-1" \
        in r.target()


def test_recipe_fields_agree_with_the_papers_text():
    for r in list_recipes():
        s, n = r.settings(), r.neuron()
        assert (s["arch"], s["time_steps"], s["spike"]) == (r.arch, r.time_steps, r.spike)
        assert n["v_th"] == 0.5  # Eq. 6: "V_th is set to 0.5 in this work"
        if r.dataset == "imagenet":  # Sec. 4.3: SEW-style ResNet18/34, IF, channel-wise, 200 epochs, T = 4
            assert r.arch in ("sew_resnet18", "sew_resnet34") and r.spike == "channel" and r.time_steps == 4
            assert s["epochs"] == 200 and (n["neuron"], n["decay"]) == ("if", 1.0) and r.gpus == 8
            assert "V_th = 0.5" in r.notes and "V_th = 1.0" in r.notes and "200 epochs" in r.notes
        else:
            assert (n["neuron"], n["decay"]) == ("lif", 0.25)
        if r.tables != ("Table 3",):  # Tables 1 and 2: ResNet20, CIFAR-10/100, T = 2, 4, 6
            assert r.arch == "resnet20" and r.dataset in ("cifar10", "cifar100") and r.time_steps in (2, 4, 6)
    assert all(r.time_steps == 10 for r in list_recipes() if r.dataset == "cifar10-dvs")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_setting_names_its_source(name):
    r = recipe(name)
    sources = r.sources()
    assert set(sources) == {*r.settings(), *r.neuron(), "selection"}
    origins = ("paper ", "authors' released code", "realspike's choice")
    assert all(text.startswith(origins) for key, text in sources.items() if key != "selection"), sources
    for key in ("arch", "time_steps", "spike", "neuron", "v_th"):  # what the paper's text fixes
        assert sources[key].startswith("paper "), (key, sources[key])
    if r.dataset == "imagenet":
        assert sources["epochs"].startswith("paper Sec. 4.3")
    assert "best test top-1" in r.selection and "authors' released code" in r.selection


def test_the_cli_trains_what_the_recipe_says():
    """`realspike train --recipe NAME` with no other flag builds exactly the recipe, neuron included."""
    import typer.main

    from realspike_cli.cli.app import app
    from realspike_cli.cli.train import _spec_and_config

    train = typer.main.get_command(app).commands["train"]
    for r in list_recipes():
        flags = train.make_context("train", ["--recipe", r.name]).params
        spec, cfg = _spec_and_config({**flags, "dataset": r.dataset})
        assert (spec.neuron.kind, spec.neuron.decay, spec.neuron.v_th) == tuple(r.neuron().values()), r.name
        assert {k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "augment")} == {
            k: r.settings()[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "augment")}
        assert r.departures(spec, cfg) == []
    spec, cfg = _spec_and_config({**train.make_context("train", ["--recipe", r.name, "--epochs", "3"]).params,
                                  "dataset": r.dataset})
    assert r.departures(spec, cfg) == [f"epochs 3 (recipe: {r.settings()['epochs']})"]


def test_list_recipes_shows_the_reported_numbers(capsys, monkeypatch):
    from realspike_cli.cli.render import console

    monkeypatch.setattr(console, "width", 200)
    code, out, _ = cli(capsys, "train", "--list-recipes")
    assert code == 0
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == set(RECIPES)
    assert "95.71 ± 0.07" in rows["cifar10-resnet19-t6"] and "67.69 ± 0.07" in rows["imagenet-sew_resnet34-t4"]
    assert "200 × 40 × 8" in rows["imagenet-sew_resnet34-t4"]
    assert "92.53" in rows["cifar10-resnet20-t4-element"] and "1, 2" in rows["cifar10-resnet20-t4-element"]
    assert "64.28" in rows["cifar100-resnet20-t4-layer"]


# --- `realspike train --recipe`: the target before training, the measured number beside it at the end ------


@pytest.fixture
def cifar10_dir(tmp_path):
    from tests.test_datasets import write_cifar10

    write_cifar10(tmp_path / "cifar10", per_batch=2, n_test=4)  # the real python-pickle release layout
    return tmp_path / "cifar10"


def test_train_recipe_prints_the_target_first_and_the_result_beside_it(capsys, monkeypatch, tmp_path, cifar10_dir):
    from realspike_cli.cli.render import console

    monkeypatch.setattr(console, "width", 300)
    out_dir = tmp_path / "run"
    code, out, err = cli(capsys, "train", "--recipe", "cifar10-resnet20-t2-element", "--data-dir", str(cifar10_dir),
                         "--width", "0.0625", "--epochs", "1", "--batch-size", "4", "--out", str(out_dir))
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    target = next(i for i, line in enumerate(lines) if "aims for paper (Table 1): 90.47 top-1" in line)
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch"))
    assert target < first_epoch  # printed before training
    assert "epochs 1 (recipe: 400)" in lines[target] and "width 0.0625 (recipe: 1.0)" in lines[target]
    record = json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[-1])  # what the run itself wrote
    measured = f"{100 * record['test_top1']:.2f}%"
    assert lines[-1].startswith("paper (Table 1): 90.47 top-1; measured here: " + measured)
    assert f"last epoch {measured}" in lines[-1] and "selected on the test set" in lines[-1]


def test_train_recipe_prints_the_target_of_a_table3_row_before_the_first_step(capsys, monkeypatch, tmp_path,
                                                                             cifar10_dir):
    from realspike_cli.cli.render import console

    monkeypatch.setattr(console, "width", 300)
    code, out, err = cli(capsys, "train", "--recipe", "cifar10-resnet19-t6", "--data-dir", str(cifar10_dir),
                         "--width", "0.0625", "--batch-size", "4", "--max-steps", "1", "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "aims for paper (Table 3): 95.71 ± 0.07 top-1 (mean ± std over 3 trials)" in out
    assert "stopped" in out and "measured here" not in out  # a stopped run has no result to compare yet
