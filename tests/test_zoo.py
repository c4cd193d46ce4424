"""The model zoo, offline: catalogue, pull from a mirror and from a pre-filled Hugging Face cache, push round
trip, refusal of tampered files, the honest answer for paper entries, and the shipped accuracies.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realspike_cli.cli.app import main
from realspike_cli.core.checkpoint import read_meta
from realspike_cli.core.specs import Form, Spike
from realspike_cli.core.zoo import ZooError, check_file, hub_download, load_catalogue, mirror_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "zoo" / "weights"
CATALOGUE = load_catalogue(ROOT / "zoo" / "catalogue.toml")
TRAINED = [e for e in CATALOGUE.entries if e.kind == "trained"]
PAPER = [e for e in CATALOGUE.entries if e.kind == "paper"]
SHIPPED = [(e, w) for e in TRAINED for w in e.forms.values()]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process, so huggingface_hub reads HF_* variables as it would for a user."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "REALSPIKE_ZOO"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "realspike_cli", *argv], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=120)


def assert_one_error_line(code: int, err: str, expected: str) -> None:
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("error:"), err
    assert expected in " ".join(err.split()), err


def fill_hf_cache(cache: Path, repo: str, filename: str, data: bytes, revision: str = "main") -> Path:
    """Lay a file out as huggingface_hub's cache does: blobs/<sha256>, refs/<revision> holding a commit
    hash, and snapshots/<commit>/<file> as a relative link to the blob."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode() + data).hexdigest()
    blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
    snapshot = folder / "snapshots" / commit / filename
    for path in (blob.parent, snapshot.parent, folder / "refs"):
        path.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    (folder / "refs" / revision).write_text(commit)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    return snapshot


def write_catalogue(path: Path, *entries: str) -> Path:
    citations = "\n".join(f"{k} = {json.dumps(v)}" for k, v in CATALOGUE.citations.items())
    path.write_text(f"schema = 1\n\n[citations]\n{citations}\n\n" + "\n\n".join(entries))
    return path


# --- the catalogue and what ships with it --------------------------------------------------------------


# The 14 Real Spike rows of the paper's Table 3 (Guo et al., ECCV 2022), typed from the paper's text.
TABLE3_ROWS = {("cifar10", "resnet19", 2), ("cifar10", "resnet19", 4), ("cifar10", "resnet19", 6),
               ("cifar10", "resnet20", 5), ("cifar10", "resnet20", 10), ("cifar10", "vgg16", 5),
               ("cifar10", "vgg16", 10), ("cifar100", "resnet20", 5), ("cifar100", "vgg16", 5),
               ("cifar100", "vgg16", 10), ("imagenet", "sew_resnet18", 4), ("imagenet", "sew_resnet34", 4),
               ("cifar10-dvs", "resnet19", 10), ("cifar10-dvs", "resnet20", 10)}


def test_catalogue_covers_every_spike_setting_and_exactly_the_papers_rows():
    assert {e.spike for e in TRAINED} == {s for s in Spike if not s.ternary}  # no ternary entries yet
    assert all(e.dataset == "mnist10k" for e in TRAINED)
    assert len(PAPER) == 14 and {(e.dataset, e.arch, e.time_steps) for e in PAPER} == TABLE3_ROWS
    for e in PAPER:
        assert not e.forms and e.repo is None and f"train {e.dataset}" in e.recipe and e.cite == ("guo2022",)
        assert e.spike is (Spike.CHANNEL if e.dataset == "imagenet" else Spike.ELEMENT)
    assert all(e.reported_top1 is None and e.paper_table is None for e in TRAINED)


@pytest.mark.parametrize("entry", PAPER, ids=[e.name for e in PAPER])
def test_paper_entries_carry_the_data_files_numbers(entry):
    from realspike_cli.core.paper_results import load_paper_results

    rows = load_paper_results(ROOT / "zoo" / "paper_results.toml").find(
        entry.dataset, entry.arch, entry.time_steps, entry.spike.value)
    (row,) = [r for r in rows if r.table == "Table 3"]
    assert entry.paper_table == row.table == "Table 3"
    assert abs(100 * entry.reported_top1 - row.top1) < 1e-9 and abs(100 * entry.reported_std - row.std) < 1e-9
    assert entry.reported_accuracy == row.accuracy == f"{row.top1:.2f} ± {row.std:.2f}"


def expected_command(name: str) -> str:
    """The canonical `realspike train` line (as checkpoints record it) for a named recipe of core/recipes.py,
    with the CLI's neuron defaults, under torchrun with SyncBN where the recipe spans several GPUs."""
    import dataclasses

    from realspike_cli.core.datasets import dataset_info
    from realspike_cli.core.models import arch_entry
    from realspike_cli.core.recipes import recipe
    from realspike_cli.core.specs import ModelSpec, NeuronSpec, TrainConfig
    from realspike_cli.core.train import recipe_command

    r = recipe(name)
    s, info, kind = r.settings(), dataset_info(r.dataset), arch_entry(r.arch).default_neuron
    spec = ModelSpec(arch=s["arch"], num_classes=info.num_classes, in_channels=info.in_channels,
                     input_size=info.input_size, time_steps=s["time_steps"], spike=s["spike"],
                     neuron=NeuronSpec(kind=kind, decay=1.0 if kind == "if" else 0.25, v_th=0.5))
    cfg = TrainConfig(**{f.name: s[f.name] for f in dataclasses.fields(TrainConfig) if f.name in s})
    line = recipe_command(r.dataset, spec, cfg)
    if r.gpus > 1:
        line = line.replace("realspike train", f"torchrun --nproc_per_node {r.gpus} -m realspike_cli train", 1)
        line += " --sync-bn"
    return line


def test_every_recipe_is_a_valid_train_command():
    import shlex

    import typer.main

    from realspike_cli.cli.app import app

    train = typer.main.get_command(app).commands["train"]
    for entry in CATALOGUE.entries:
        args = shlex.split(entry.recipe)
        train.make_context("train", args[args.index("train") + 1:])  # parses and checks every flag, runs nothing


@pytest.mark.parametrize("entry", PAPER, ids=[e.name for e in PAPER])
def test_paper_recipes_are_the_projects_recipes(entry):
    from realspike_cli.core.recipes import recipe

    named = recipe(entry.aliases[0])  # the first alias of a paper entry is its recipe's name in core/recipes.py
    assert (named.dataset, named.arch, named.time_steps, named.spike) == (
        entry.dataset, entry.arch, entry.time_steps, entry.spike.value)
    assert entry.recipe == expected_command(entry.aliases[0]), f"update {entry.name}'s recipe in zoo/catalogue.toml"


@pytest.mark.parametrize("entry, weights", SHIPPED, ids=[f"{e.name}:{w.form.value}" for e, w in SHIPPED])
def test_shipped_weights_are_the_catalogued_files(entry, weights):
    path = mirror_path(WEIGHTS, entry.repo, weights.file)
    assert path.stat().st_size == weights.size and check_file(path, entry, weights) == ""
    assert (path.parent / "README.md").is_file()
    meta = read_meta(path)
    assert meta.recipe["command"] == entry.recipe
    if weights.form.value == "inference":  # made from the training form that ships next to it
        assert meta.parent_sha256 == entry.forms[Form.TRAIN].sha256 and "realspike reparam" in weights.command


def test_shipped_weights_stay_small():
    assert sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file()) < 10 * 2**20


PAPER_ENTRY = ('[[entry]]\nname = "a"\nkind = "paper"\nspike = "element"\narch = "x"\ndataset = "d"\n'
               'time_steps = 4\nrecipe = "r"\nlicence = "l"\nsummary = "s"\n')


@pytest.mark.parametrize("body, expected", [
    ("[[entry]\n", "is not valid TOML"),
    ('[[entry]]\nname = "a"\nkind = "paper"\n', "zoo entry 'a': missing 'spike'"),
    ('[[entry]]\nname = "a"\nkind = "trained"\nspike = "element"\narch = "x"\ndataset = "d"\ntime_steps = 4\n'
     'recipe = "r"\nlicence = "l"\nsummary = "s"\n', "a trained entry lists its files"),
    (PAPER_ENTRY + 'reported_top1 = 0.9\n', "zoo entry 'a': missing 'paper_table'"),
    (PAPER_ENTRY + 'paper_table = "Table 3"\n', "zoo entry 'a': missing 'reported_top1'"),
    (PAPER_ENTRY + 'paper_table = "Table 3"\nreported_top1 = 95.71\n', "must be a fraction in (0, 1]"),
    (PAPER_ENTRY + 'paper_table = "Table 3"\nreported_top1 = nan\n', "must be a fraction in (0, 1]"),
    (PAPER_ENTRY + 'paper_table = "Table 3"\nreported_top1 = 0.9\nreported_std = inf\n', "reported_std must"),
])
def test_a_broken_catalogue_is_one_error_line(tmp_path, capsys, monkeypatch, body, expected):
    monkeypatch.setenv("REALSPIKE_ZOO_CATALOGUE", str(write_catalogue(tmp_path / "c.toml", body)))
    code, _, err = cli(capsys, "zoo", "list")
    assert_one_error_line(code, err, expected)


def test_list_shows_the_papers_number_on_paper_rows_only(capsys, monkeypatch):
    from realspike_cli.cli.render import console

    monkeypatch.setattr(console, "width", 200)  # one row per line, nothing folded
    code, out, _ = cli(capsys, "zoo", "list")
    assert code == 0
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    for e in PAPER:
        assert f"paper: {e.reported_accuracy}" in rows[e.name]
    assert "paper: 95.71 ± 0.07" in rows["resnet19-cifar10-t6-element"]  # typed from Table 3
    assert "paper: 67.69 ± 0.07" in rows["sew-resnet34-imagenet-t4-channel"]
    assert out.count("paper:") == len(PAPER) and all("paper" not in rows[e.name] for e in TRAINED)


def test_list_never_imports_torch():
    code = ("import sys\nfrom realspike_cli.cli.app import main\ntry:\n    main(['zoo', 'list'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\nassert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "paper: 95.71 ± 0.07" in done.stdout


def test_list_filters_and_json(capsys):
    code, out, _ = cli(capsys, "zoo", "list", "--json", "--dataset", "mnist10k", "--spike", "layer")
    assert code == 0
    listed = json.loads(out)
    assert [e["name"] for e in listed] == [e.name for e in TRAINED if e.spike is Spike.LAYER]
    assert set(listed[0]["forms"]) >= {"train"} and listed[0]["forms"]["train"]["sha256"]
    code, out, _ = cli(capsys, "zoo", "list", "--arch", "sew_resnet34")
    assert code == 0 and "sew-resnet34-imagenet-t4-channel" in out and "mnist10k" not in out


def test_info_shows_the_card(capsys):
    entry = TRAINED[0]
    code, out, _ = cli(capsys, "zoo", "info", entry.aliases[0])
    assert code == 0 and entry.name in out and entry.recipe in out and "@inproceedings{guo2022realspike" in out
    assert entry.forms[next(iter(entry.forms))].sha256[:16] in out


def test_info_of_a_paper_entry_cites_its_table(capsys, monkeypatch):
    from realspike_cli.cli.render import console

    monkeypatch.setattr(console, "width", 200)
    code, out, _ = cli(capsys, "zoo", "info", "cifar10-resnet19-t6")
    assert code == 0 and "Guo et al. (ECCV 2022), Table 3" in out
    assert "95.71 ± 0.07 % (mean ± std over 3 trials)" in out and "@inproceedings{guo2022realspike" in out
    assert "--recipe cifar10-resnet19-t6" in out and "best test top-1" in out


def test_unknown_name_suggests_the_nearest(capsys):
    code, _, err = cli(capsys, "zoo", "pull", "resnet34-imagenett")
    assert_one_error_line(code, err, "did you mean 'resnet34-imagenet'")


# --- pull ----------------------------------------------------------------------------------------------


def test_paper_entry_pull_gives_the_recipe_and_downloads_nothing(capsys):
    code, out, _ = cli(capsys, "zoo", "pull", "resnet34-imagenet")
    entry = CATALOGUE.get("resnet34-imagenet")
    assert code == 3 and entry.arch == "sew_resnet34" and entry.dataset == "imagenet"
    assert out.startswith("sew-resnet34-imagenet-t4-channel:") and "nothing was downloaded" in out
    assert f"  {entry.recipe}\n" in out  # on one line, ready to copy
    # The paper's ImageNet run: 200 epochs (Sec. 4.3), 67.69 ± 0.07 (Table 3), channel-wise, IF, T = 4.
    assert "--epochs 200 " in entry.recipe and "--epochs 320" not in out
    assert "--spike channel" in entry.recipe and "--neuron if" in entry.recipe and "--t 4 " in entry.recipe
    assert "Table 3 reports 67.69 ± 0.07 % top-1 (mean ± std over 3 trials)" in out
    assert "V_th = 0.5" in out and "--recipe imagenet-sew_resnet34-t4" in out


def test_pull_from_mirror_by_flag_and_by_env(capsys, monkeypatch):
    entry, weights = SHIPPED[0]
    expected = mirror_path(WEIGHTS, entry.repo, weights.file)
    code, out, err = cli(capsys, "zoo", "pull", entry.name, "--form", weights.form.value, "--mirror", str(WEIGHTS))
    assert code == 0 and out.strip() == str(expected) and "sha256 and metadata match" in err
    monkeypatch.setenv("REALSPIKE_ZOO_MIRROR", str(WEIGHTS))
    code, out, _ = cli(capsys, "zoo", "pull", entry.aliases[0], "--form", weights.form.value)
    assert code == 0 and out.strip() == str(expected)


def test_pull_offline_from_a_prefilled_hf_cache(tmp_path):
    entry, weights = SHIPPED[0]
    data = mirror_path(WEIGHTS, entry.repo, weights.file).read_bytes()
    cache = tmp_path / "hf" / "hub"
    fill_hf_cache(cache, entry.repo, weights.file, data)
    from huggingface_hub import scan_cache_dir  # huggingface_hub itself must recognise the layout

    assert [r.repo_id for r in scan_cache_dir(cache).repos] == [entry.repo]
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(cache)}
    done = run(env, "zoo", "pull", entry.name, "--form", weights.form.value)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).read_bytes() == data and str(cache) in done.stdout


def test_offline_with_an_empty_cache_is_one_error_line(tmp_path):
    entry = TRAINED[0]
    catalogue = tmp_path / "catalogue.toml"  # the same entry, from a repository the source tree does not ship
    catalogue.write_text((ROOT / "zoo" / "catalogue.toml").read_text().replace(entry.repo, "someone/elsewhere"))
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub"),
           "REALSPIKE_ZOO_CATALOGUE": str(catalogue)}
    done = run(env, "zoo", "pull", entry.name)
    assert_one_error_line(done.returncode, done.stderr, "offline mode is on (HF_HUB_OFFLINE=1)")


def test_source_tree_copy_serves_when_the_hub_cannot(tmp_path):
    entry = TRAINED[0]
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = run(env, "zoo", "pull", entry.name)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == mirror_path(WEIGHTS, entry.repo, entry.forms[Form.TRAIN].file)
    assert "source tree" in done.stderr


def test_tampered_cache_file_is_refused_and_removed(tmp_path):
    entry, weights = SHIPPED[0]
    data = bytearray(mirror_path(WEIGHTS, entry.repo, weights.file).read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last weight: still a readable checkpoint, not the published one
    cache = tmp_path / "hub"
    snapshot = fill_hf_cache(cache, entry.repo, weights.file, bytes(data))
    blob = snapshot.resolve()
    done = run({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}, "zoo", "pull", entry.name)
    assert_one_error_line(done.returncode, done.stderr, "is not the catalogue's")
    assert "removed it from the Hugging Face cache" in done.stderr
    assert not snapshot.exists() and not snapshot.is_symlink() and not blob.exists()


def test_metadata_that_contradicts_the_catalogue_is_refused(tmp_path, capsys, monkeypatch):
    entry, weights = next((e, w) for e, w in SHIPPED if e.spike is not Spike.BINARY)
    mirror = tmp_path / "mirror"
    source = mirror_path(WEIGHTS, entry.repo, weights.file)
    copy = mirror_path(mirror, "lab/liar", weights.file)
    copy.parent.mkdir(parents=True)
    copy.write_bytes(source.read_bytes())
    lie = (f'[[entry]]\nname = "liar"\nkind = "trained"\narch = "{entry.arch}"\ndataset = "{entry.dataset}"\n'
           f'time_steps = {entry.time_steps}\nspike = "binary"\nwidth = {entry.width}\nrepo = "lab/liar"\n'
           f'recipe = "x"\nlicence = "mit"\nsummary = "claims binary"\n\n[entry.forms.{weights.form.value}]\n'
           f'file = "{weights.file}"\nsha256 = "{weights.sha256}"\nsize = {weights.size}\n')
    monkeypatch.setenv("REALSPIKE_ZOO_CATALOGUE", str(write_catalogue(tmp_path / "c.toml", lie)))
    code, _, err = cli(capsys, "zoo", "pull", "liar", "--form", weights.form.value, "--mirror", str(mirror))
    assert_one_error_line(code, err, f"spike '{entry.spike.value}' (catalogue: 'binary')")
    assert copy.exists()  # a mirror is a shared source: reported, not deleted


@pytest.mark.parametrize("error, expected", [
    ("LocalEntryNotFoundError", "cannot reach the Hugging Face Hub"),
    ("RepositoryNotFoundError", "no such repository"),
    ("RevisionNotFoundError", "does not exist"),
    ("RemoteEntryNotFoundError", "has no file"),
    ("ConnectionError", "ConnectionError"),
])
def test_hub_failures_are_one_line(monkeypatch, error, expected):
    import huggingface_hub
    from huggingface_hub import errors as hfe

    cls = getattr(hfe, error, None) or ConnectionError
    exc = cls.__new__(cls)  # the hub's errors need an HTTP response to build; only their type matters
    Exception.__init__(exc, "boom")

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ZooError, match=expected):
        hub_download("lab/model", "model.safetensors", "v1")


# --- push ----------------------------------------------------------------------------------------------


def test_push_to_folder_then_pull_from_it_round_trips(tmp_path, capsys, monkeypatch):
    entry, weights = SHIPPED[0]
    source = mirror_path(WEIGHTS, entry.repo, weights.file)
    code, out, err = cli(capsys, "zoo", "push", str(source), "--repo", "lab/copy", "--to", str(tmp_path / "m"))
    assert code == 0, err
    written = tmp_path / "m" / "lab" / "copy"
    assert sorted(p.name for p in written.iterdir()) == sorted(["README.md", weights.file])
    from huggingface_hub import ModelCard

    card = ModelCard.load(written / "README.md")
    assert card.data.library_name == "realspike" and "spiking-neural-network" in card.data.tags
    assert card.data.datasets == ["ylecun/mnist"] and weights.sha256 in card.text and entry.recipe in card.text
    snippet = out.split("\n", 1)[1]
    assert tomllib.loads(snippet)["entry"][0]["forms"][weights.form.value]["sha256"] == weights.sha256
    monkeypatch.setenv("REALSPIKE_ZOO_CATALOGUE", str(write_catalogue(tmp_path / "c.toml", snippet)))
    name = tomllib.loads(snippet)["entry"][0]["name"]
    code, out, err = cli(capsys, "zoo", "pull", name, "--form", weights.form.value, "--mirror", str(tmp_path / "m"))
    assert code == 0, err
    assert Path(out.strip()).read_bytes() == source.read_bytes()


def test_push_refuses_to_replace_a_different_file(tmp_path, capsys):
    (a, wa), (b, wb) = SHIPPED[0], next(s for s in SHIPPED if s[0] is not SHIPPED[0][0])
    cli(capsys, "zoo", "push", str(mirror_path(WEIGHTS, a.repo, wa.file)), "--repo", "lab/x", "--to", str(tmp_path))
    code, _, err = cli(capsys, "zoo", "push", str(mirror_path(WEIGHTS, b.repo, wb.file)), "--repo", "lab/x",
                       "--to", str(tmp_path), "--file", wa.file)
    assert_one_error_line(code, err, "already holds a different file")


def test_push_to_the_hub_creates_the_repo_and_uploads_one_folder(capsys, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo, **kw: calls.append(("create", repo, kw))
                        or f"https://huggingface.co/{repo}")

    def upload_folder(**kw):  # record what would be uploaded while the staging folder still exists
        calls.append(("upload", kw["repo_id"], sorted(p.name for p in Path(kw["folder_path"]).iterdir())))

    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    entry, weights = SHIPPED[0]
    code, out, err = cli(capsys, "zoo", "push", str(mirror_path(WEIGHTS, entry.repo, weights.file)), "--repo", "lab/m")
    assert code == 0, err
    assert calls == [("create", "lab/m", {"private": False, "exist_ok": True}),
                     ("upload", "lab/m", sorted(["README.md", weights.file]))]
    assert "https://huggingface.co/lab/m/blob/main/" in err and "[[entry]]" in out


def test_push_without_network_is_one_line(capsys, monkeypatch):
    import huggingface_hub

    def refused(*args, **kwargs):
        raise ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr(huggingface_hub, "create_repo", refused)
    entry, weights = SHIPPED[0]
    code, _, err = cli(capsys, "zoo", "push", str(mirror_path(WEIGHTS, entry.repo, weights.file)), "--repo", "lab/x")
    assert_one_error_line(code, err, "cannot publish to lab/x")


# --- the accuracies in the catalogue are what `realspike eval` measures ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("entry, weights", SHIPPED, ids=[f"{e.name}:{w.form.value}" for e, w in SHIPPED])
def test_shipped_accuracy_is_reproduced_by_eval(entry, weights, capsys):
    assert weights.top1 is not None and weights.images == 2000
    code, out, err = cli(capsys, "eval", str(mirror_path(WEIGHTS, entry.repo, weights.file)), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["images"], report["top1"]) == (weights.images, weights.top1)
