"""The model zoo: a reviewed catalogue (zoo/catalogue.toml) of checkpoints and paper recipes; pull from the
Hugging Face Hub or a local mirror with sha256 + metadata verification; push with a generated model card.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realspike_cli import __version__
from realspike_cli.core.errors import CheckpointError, RealSpikeError, UnknownNameError
from realspike_cli.core.specs import Form, Spike
from realspike_cli.core.zoo_card import catalogue_snippet, model_card

CATALOGUE_ENV = "REALSPIKE_ZOO_CATALOGUE"
MIRROR_ENV = "REALSPIKE_ZOO_MIRROR"
SCHEMA = 1
KINDS = ("trained", "paper")
DEFAULT_FILES = {Form.TRAIN: "model.safetensors", Form.INFERENCE: "model-inference.safetensors"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class ZooError(RealSpikeError):
    """A catalogue, download, verification or publishing problem, in one line."""


class NoWeightsError(ZooError):
    """The entry documents a result but publishes no weights: its recipe is the answer."""

    def __init__(self, entry: Entry) -> None:
        super().__init__(f"no weights are published for {entry.name!r}; train them with: {entry.recipe}")
        self.entry = entry


# The catalogue ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Weights:
    """One published file of an entry: its form, where it lives in the repository, and what it must be."""

    form: Form
    file: str
    sha256: str
    size: int
    top1: float | None = None  # as `realspike eval` measures it on the full test set
    images: int | None = None
    command: str | None = None  # how this file was made from the entry's other files (e.g. realspike reparam)


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    arch: str
    dataset: str
    time_steps: int
    spike: Spike
    recipe: str
    licence: str
    summary: str
    cite: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    width: float = 1.0
    repo: str | None = None
    revision: str | None = None
    paper_table: str | None = None  # e.g. "Table 3" of the cited paper
    reported_top1: float | None = None  # the paper's number (a fraction), as zoo/paper_results.toml holds it
    reported_std: float | None = None  # its "± s" over the paper's trials, where the paper prints one
    forms: dict[Form, Weights] = field(default_factory=dict)

    @property
    def reported_accuracy(self) -> str | None:
        """The paper's number as the paper prints it, in percent: '95.71 ± 0.07' (None if none)."""
        if self.reported_top1 is None:
            return None
        std = f" ± {100 * self.reported_std:.2f}" if self.reported_std is not None else ""
        return f"{100 * self.reported_top1:.2f}{std}"

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "forms"}
        d.update(spike=self.spike.value, cite=list(self.cite), aliases=list(self.aliases))
        d["forms"] = {f.value: {**w.__dict__, "form": f.value} for f, w in self.forms.items()}
        return d


@dataclass(frozen=True)
class Catalogue:
    path: Path
    entries: tuple[Entry, ...]
    citations: dict[str, str]

    def get(self, name: str) -> Entry:
        """Look up a name or alias (case, `_` and `-` do not matter); unknown names get suggestions."""
        key = _norm(name)
        for entry in self.entries:
            if key == _norm(entry.name) or key in (_norm(a) for a in entry.aliases):
                return entry
        error = UnknownNameError("zoo entry", name, [n for e in self.entries for n in (e.name, *e.aliases)])
        error.args = (str(error).split(" (known: ")[0] + " (see: realspike zoo list)",)  # 50 names are too many
        raise error

    def select(self, dataset: str | None = None, arch: str | None = None, spike: str | None = None) -> list[Entry]:
        return [e for e in self.entries if (dataset is None or e.dataset == dataset)
                and (arch is None or _norm(e.arch) == _norm(arch)) and (spike is None or e.spike.value == spike)]


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def zoo_file(name: str) -> Path:
    """A reviewed file of zoo/: the copy inside an installed wheel, else zoo/ of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "_zoo" / name  # force-included into the wheel (pyproject.toml)
    return packaged if packaged.is_file() else package.parent / "zoo" / name


def catalogue_path() -> Path:
    """$REALSPIKE_ZOO_CATALOGUE, else the copy inside an installed wheel, else zoo/ of a source checkout."""
    if os.environ.get(CATALOGUE_ENV):
        return Path(os.environ[CATALOGUE_ENV])
    return zoo_file("catalogue.toml")


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as a dict; unreadable or invalid files are one ZooError line naming `what` and the path."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ZooError(f"{what} {path} is not valid TOML: {exc}") from None


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Parse and validate the catalogue; every problem names the entry and the key."""
    path = Path(path) if path is not None else catalogue_path()
    raw = read_toml(path, "the zoo catalogue")
    if raw.get("schema") != SCHEMA:
        raise ZooError(f"the zoo catalogue {path} has schema {raw.get('schema')!r}; this realspike reads {SCHEMA}")
    citations = dict(raw.get("citations", {}))
    entries = tuple(_parse_entry(item, f"{path.name} entry {i + 1}", citations)
                    for i, item in enumerate(raw.get("entry", [])))
    seen: dict[str, str] = {}
    for entry in entries:
        for name in (entry.name, *entry.aliases):
            if _norm(name) in seen:
                raise ZooError(f"{path}: name {name!r} of {entry.name!r} is already used by {seen[_norm(name)]!r}")
            seen[_norm(name)] = entry.name
    return Catalogue(path, entries, citations)


def _field(raw: dict, key: str, kind: type | tuple, where: str, default: Any = ...) -> Any:
    if key not in raw:
        if default is ...:
            raise ZooError(f"{where}: missing {key!r}")
        return default
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ZooError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _parse_entry(raw: dict, where: str, citations: dict[str, str]) -> Entry:
    name = _field(raw, "name", str, where)
    where = f"zoo entry {name!r}"
    kind = _field(raw, "kind", str, where)
    spike = _field(raw, "spike", str, where)
    if kind not in KINDS or spike not in {s.value for s in Spike}:
        raise ZooError(f"{where}: kind must be one of {KINDS} and spike one of binary/layer/channel/element")
    cite = tuple(_field(raw, "cite", list, where, []))
    if any(c not in citations for c in cite):
        raise ZooError(f"{where}: cites {cite} but [citations] defines only {sorted(citations)}")
    forms = {}
    for form_name, w in _field(raw, "forms", dict, where, {}).items():
        if form_name not in {f.value for f in Form}:
            raise ZooError(f"{where}: unknown form {form_name!r} (choose from: train, inference)")
        forms[Form(form_name)] = _parse_weights(w, Form(form_name), f"{where} form {form_name!r}")
    repo = _field(raw, "repo", str, where, None)
    if (forms or repo) and not (repo and _REPO_ID.fullmatch(repo)):
        raise ZooError(f"{where}: an entry with weights needs repo = 'owner/name', got {repo!r}")
    if (kind == "paper") == bool(forms):
        raise ZooError(f"{where}: a trained entry lists its files in [entry.forms.*]; a paper entry lists none")
    reported = _parse_reported(raw, kind, where)
    return Entry(
        name=name, kind=kind, arch=_field(raw, "arch", str, where), dataset=_field(raw, "dataset", str, where),
        time_steps=_field(raw, "time_steps", int, where), spike=Spike(spike), recipe=_field(raw, "recipe", str, where),
        licence=_field(raw, "licence", str, where), summary=_field(raw, "summary", str, where), cite=cite,
        aliases=tuple(_field(raw, "aliases", list, where, [])), repo=repo, forms=forms,
        width=float(_field(raw, "width", (int, float), where, 1.0)), revision=_field(raw, "revision", str, where, None),
        **reported,
    )


def _parse_reported(raw: dict, kind: str, where: str) -> dict[str, Any]:
    """A paper entry states the paper's number and its table; a fraction in (0, 1], its ± in [0, 1)."""
    required = ... if kind == "paper" else None
    reported = {"paper_table": _field(raw, "paper_table", str, where, required),
                "reported_top1": _field(raw, "reported_top1", float, where, required),
                "reported_std": _field(raw, "reported_std", float, where, None)}
    top1, std = reported["reported_top1"], reported["reported_std"]
    if top1 is not None and not (math.isfinite(top1) and 0 < top1 <= 1):
        raise ZooError(f"{where}: reported_top1 must be a fraction in (0, 1] (0.9571 = 95.71 %), got {top1!r}")
    if std is not None and (top1 is None or not (math.isfinite(std) and 0 <= std < 1)):
        raise ZooError(f"{where}: reported_std must be a fraction in [0, 1) next to reported_top1, got {std!r}")
    return reported


def _parse_weights(raw: dict, form: Form, where: str) -> Weights:
    sha = _field(raw, "sha256", str, where)
    if not _SHA256.fullmatch(sha):
        raise ZooError(f"{where}: sha256 must be 64 lowercase hex digits")
    return Weights(form, _field(raw, "file", str, where), sha, _field(raw, "size", int, where),
                   _field(raw, "top1", float, where, None), _field(raw, "images", int, where, None),
                   _field(raw, "command", str, where, None))


# Pull -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pulled:
    entry: Entry
    weights: Weights
    path: Path
    source: str  # "mirror", "bundled" (the source tree's zoo/weights) or "hub"


# zoo/weights in a source checkout, laid out as a mirror; absent from an installed wheel.
BUNDLED_WEIGHTS = Path(__file__).resolve().parents[2] / "zoo" / "weights"


def mirror_path(mirror: str | Path, repo: str, filename: str) -> Path:
    """Where a file lives in a mirror folder: <mirror>/<owner>/<name>/<file>, as `zoo push --to` writes it."""
    return Path(mirror).expanduser().absolute() / repo / filename


def pull(name: str, form: Form | str = Form.TRAIN, *, mirror: str | Path | None = None,
         revision: str | None = None, catalogue: Catalogue | None = None) -> Pulled:
    """Fetch one form of an entry (mirror first if given or $REALSPIKE_ZOO_MIRROR is set, else the hub),
    verify it, and return its local path; a file that fails verification is refused (and, from the hub
    cache, removed)."""
    entry = (catalogue or load_catalogue()).get(name)
    form = Form(form)
    if not entry.forms:
        raise NoWeightsError(entry)
    if form not in entry.forms:
        have = ", ".join(f.value for f in entry.forms)
        raise ZooError(f"{entry.name!r} publishes no {form.value} form (available: {have}); "
                       "make one with: realspike reparam CKPT -o OUT")
    weights = entry.forms[form]
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    bundled = mirror_path(BUNDLED_WEIGHTS, entry.repo, weights.file)
    if mirror is not None:
        if revision:
            raise ZooError("--revision applies to the hub only; a mirror folder holds one version of each file")
        path, source = mirror_path(mirror, entry.repo, weights.file), "mirror"
        if not path.is_file():
            raise ZooError(f"{weights.file} of {entry.repo} is not in the mirror {mirror} (looked for {path})")
    else:
        try:
            path, source = hub_download(entry.repo, weights.file, revision or entry.revision), "hub"
        except ZooError:
            # A source checkout ships the small entries; the sha256 check makes that copy as good as the hub's.
            if not bundled.is_file() or revision:
                raise
            path, source = bundled, "bundled"
    problem = check_file(path, entry, weights)
    if problem:
        if source == "hub":
            _discard_cached(path)
            fate = "removed it from the Hugging Face cache"
        else:  # a mirror or the source tree is a shared source, not ours to delete from
            fate = f"left the {source} copy untouched: replace it (realspike zoo push CKPT --repo ... --to DIR)"
        raise ZooError(f"refused {path}: {problem}; {fate}")
    return Pulled(entry, weights, path, source)


def check_file(path: Path, entry: Entry, weights: Weights) -> str:
    """Why `path` is not the catalogue's file (sha256 first, then the checkpoint's own metadata); '' if it is."""
    from realspike_cli.core.checkpoint import file_sha256, read_meta

    digest = file_sha256(path)
    if digest != weights.sha256:
        return f"its sha256 {digest} is not the catalogue's {weights.sha256}"
    try:
        meta = read_meta(path)
    except CheckpointError as exc:
        return str(exc)
    found = {"arch": meta.spec.arch, "dataset": meta.dataset, "T": meta.spec.time_steps,
             "spike": meta.spec.spike.value, "form": meta.form.value,
             "width": float(meta.spec.arch_kwargs.get("width", 1.0))}
    expected = {"arch": entry.arch, "dataset": entry.dataset, "T": entry.time_steps, "spike": entry.spike.value,
                "form": weights.form.value, "width": entry.width}
    diffs = [f"{k} {found[k]!r} (catalogue: {expected[k]!r})" for k in expected if found[k] != expected[k]]
    return f"its metadata does not match the catalogue: {', '.join(diffs)}" if diffs else ""


def _discard_cached(path: Path) -> None:
    """Remove a cached file: the snapshot link and the blob it points to (huggingface_hub cache layout)."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def hub_download(repo: str, filename: str, revision: str | None = None) -> Path:
    """hf_hub_download (its cache, HF_HUB_OFFLINE, HF_ENDPOINT, tokens, progress bar), failures in one line."""
    import huggingface_hub as hf
    from huggingface_hub import errors as hfe

    where = f"{filename} from {repo}" + (f"@{revision}" if revision else "")
    hint = "an air-gapped lab can use --mirror DIR"
    try:
        return Path(hf.hf_hub_download(repo, filename, revision=revision, library_name="realspike",
                                       library_version=__version__))
    except hfe.RepositoryNotFoundError as exc:  # also GatedRepoError, its subclass
        why = "the repository is gated: accept its terms on the hub" if isinstance(exc, hfe.GatedRepoError) else \
            f"no such repository on {hf.constants.ENDPOINT} (or it is private)"
        raise ZooError(f"cannot download {where}: {why}; log in with hf auth login or set HF_TOKEN; {hint}") from None
    except hfe.RevisionNotFoundError:
        raise ZooError(f"cannot download {where}: revision {revision!r} does not exist in {repo}") from None
    except (hfe.LocalEntryNotFoundError, hfe.OfflineModeIsEnabled):  # before EntryNotFoundError, its parent
        cache = hf.constants.HF_HUB_CACHE
        if hf.constants.HF_HUB_OFFLINE:
            raise ZooError(f"{where} is not in the Hugging Face cache ({cache}) and offline mode is on "
                           f"(HF_HUB_OFFLINE=1): pull it once while online, or {hint}") from None
        raise ZooError(f"cannot reach the Hugging Face Hub ({hf.constants.ENDPOINT}) and {where} is not in the "
                       f"cache ({cache}); check the network or HF_ENDPOINT, or {hint}") from None
    except hfe.EntryNotFoundError:
        raise ZooError(f"cannot download {where}: {repo} has no file {filename!r} at that revision") from None
    except Exception as exc:  # the HTTP stack differs across huggingface_hub versions; any other failure is one line
        raise ZooError(f"cannot download {where}: {type(exc).__name__}: {_first_line(exc)}") from None


# Push -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    repo: str
    file: str
    location: str
    sha256: str
    size: int
    snippet: str


def push(checkpoint: str | Path, repo: str, *, to: str | Path | None = None, filename: str | None = None,
         licence: str = "mit", private: bool = False, overwrite: bool = False) -> Published:
    """Publish a checkpoint and its model card to the hub (create_repo + upload_folder), or with `to` into
    a mirror folder laid out as <to>/<owner>/<name>/; returns the catalogue entry to add."""
    from realspike_cli.core.checkpoint import file_sha256, read_meta

    if not _REPO_ID.fullmatch(repo):
        raise ZooError(f"--repo must look like OWNER/NAME, got {repo!r}")
    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)
    filename = filename or DEFAULT_FILES[meta.form]
    digest, size = file_sha256(checkpoint), checkpoint.stat().st_size
    try:  # one BibTeX, kept in the reviewed catalogue; a broken catalogue must not block publishing
        citation = load_catalogue().citations["guo2022"]
    except (ZooError, KeyError):
        citation = "Guo et al., Real Spike: Learning Real-Valued Spikes for Spiking Neural Networks, ECCV 2022"
    if to is not None:
        dest = mirror_path(to, repo, filename)
        card = model_card(meta, repo, filename, digest, licence, citation, _other_files(dest))
        _write_folder(checkpoint, dest, digest, card, overwrite)
        location = str(dest)
    else:
        location = _upload(checkpoint, repo, filename, model_card(meta, repo, filename, digest, licence, citation),
                           private)
    return Published(repo, filename, location, digest, size, catalogue_snippet(meta, repo, filename, digest, size,
                                                                                licence))


def _other_files(dest: Path) -> dict[str, str]:
    """The other checkpoints already in a folder (e.g. the training form next to the inference form)."""
    from realspike_cli.core.checkpoint import file_sha256, read_meta

    others = {}
    for path in sorted(dest.parent.glob("*.safetensors")) if dest.parent.is_dir() else []:
        if path.name != dest.name:
            try:
                others[path.name] = f"{read_meta(path).form.value} form, sha256 `{file_sha256(path)}`"
            except CheckpointError:
                continue  # not a realspike checkpoint: not ours to describe
    return others


def _write_folder(src: Path, dest: Path, digest: str, card: str, overwrite: bool) -> None:
    """Copy the checkpoint byte for byte (unless already there) and write its card next to it."""
    from realspike_cli.core.checkpoint import atomic_write, file_sha256

    if dest.exists() and file_sha256(dest) != digest and not overwrite:
        raise ZooError(f"{dest} already holds a different file; pass --overwrite to replace it")
    if not dest.exists() or file_sha256(dest) != digest:
        atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp), overwrite=True)
    atomic_write(dest.parent / "README.md", lambda tmp: tmp.write_text(card, encoding="utf-8"), overwrite=True)
    umask = os.umask(0)
    os.umask(umask)
    for path in (dest, dest.parent / "README.md"):  # atomic_write's temporary files are 0600; a mirror is shared
        path.chmod(0o666 & ~umask)


def _upload(checkpoint: Path, repo: str, filename: str, card: str, private: bool) -> str:
    import huggingface_hub as hf

    with tempfile.TemporaryDirectory(prefix="realspike-push-") as staging:
        (Path(staging) / "README.md").write_text(card, encoding="utf-8")
        shutil.copyfile(checkpoint, Path(staging) / filename)
        try:
            url = hf.create_repo(repo, private=private, exist_ok=True)
            hf.upload_folder(repo_id=repo, folder_path=staging,
                             commit_message=f"realspike zoo push: {filename} ({__version__})")
        except Exception as exc:  # no network, no token, no rights: each is one line for the user
            hint = " (log in with hf auth login or set HF_TOKEN)" if "401" in str(exc) or "403" in str(exc) else ""
            raise ZooError(f"cannot publish to {repo} on {hf.constants.ENDPOINT}: {type(exc).__name__}: "
                           f"{_first_line(exc)}{hint}; --to DIR writes the same layout to a folder") from None
    return f"{url}/blob/main/{filename}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
