"""The zoo catalogue (zoo/catalogue.toml): its entries, parsed and validated, and the rules for the names in
it: repository ids and file names are checked before any path is made of them, so no name from a catalogue,
a flag or a checkpoint can reach outside the folder it belongs in.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realspike_cli.core.errors import RealSpikeError, UnknownNameError
from realspike_cli.core.specs import Form, Spike

CATALOGUE_ENV = "REALSPIKE_ZOO_CATALOGUE"
SCHEMA = 1
KINDS = ("trained", "paper")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The hub's rules for OWNER/NAME (no '--' or '..', no '-' or '.' at either end of a part, 96 characters at
# most), which also keep a mirror path <DIR>/<owner>/<name>/ inside DIR.
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
# A file in a repository: one plain name (no folder, no '..'), a safetensors checkpoint.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.safetensors")


class ZooError(RealSpikeError):
    """A catalogue, download, verification or publishing problem, in one line."""


def check_repo_id(repo: object, where: str = "--repo") -> str:
    """OWNER/NAME as the hub allows it; anything else (absolute, '..', more or fewer parts) is refused."""
    parts = repo.split("/") if isinstance(repo, str) else []
    if not (len(parts) == 2 and len(repo) <= 96 and all(_REPO_PART.fullmatch(p) for p in parts)  # type: ignore[arg-type]
            and ".." not in repo and "--" not in repo):  # type: ignore[operator]
        raise ZooError(f"{where} must look like OWNER/NAME (letters, digits, '-', '_', '.'; no '..' or '--'), "
                       f"got {repo!r}")
    return repo  # type: ignore[return-value]


def check_file_name(name: object, where: str = "--file") -> str:
    """A plain NAME.safetensors: no folder part, no '..', nothing absolute, so it stays in its repository."""
    if not (isinstance(name, str) and len(name) <= 200 and _FILE_NAME.fullmatch(name) and ".." not in name):
        raise ZooError(f"{where} must be a plain file name ending in .safetensors (letters, digits, '-', '_', "
                       f"'.'; no folder, no '..'), got {name!r}")
    return name


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
    if forms or repo:
        check_repo_id(repo, f"{where}: repo")
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
    file = check_file_name(_field(raw, "file", str, where), f"{where}: file")
    return Weights(form, file, sha, _field(raw, "size", int, where),
                   _field(raw, "top1", float, where, None), _field(raw, "images", int, where, None),
                   _field(raw, "command", str, where, None))
