"""The model zoo: a reviewed catalogue (zoo/catalogue.toml) of checkpoints and paper recipes; pull from the
Hugging Face Hub or a local mirror with sha256 + metadata verification; push with a generated model card.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from realspike_cli import __version__
from realspike_cli.core.errors import CheckpointError
from realspike_cli.core.specs import Form
from realspike_cli.core.zoo_card import catalogue_snippet, model_card

# The catalogue lives in zoo_catalogue; its names are importable from here as before.
from realspike_cli.core.zoo_catalogue import (  # noqa: F401  isort: skip
    CATALOGUE_ENV, KINDS, SCHEMA, Catalogue, Entry, NoWeightsError, Weights, ZooError, catalogue_path,
    check_file_name, check_repo_id, load_catalogue, read_toml, zoo_file,
)

MIRROR_ENV = "REALSPIKE_ZOO_MIRROR"
DEFAULT_FILES = {Form.TRAIN: "model.safetensors", Form.INFERENCE: "model-inference.safetensors"}


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
    """Where a file lives in a mirror folder: <mirror>/<owner>/<name>/<file>, as `zoo push --to` writes it;
    the repository id and file name are checked first, so the path cannot leave the mirror."""
    return Path(mirror).expanduser().absolute() / check_repo_id(repo) / check_file_name(filename)


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
    from huggingface_hub import constants as hfc
    from huggingface_hub import errors as hfe

    where = f"{filename} from {repo}" + (f"@{revision}" if revision else "")
    hint = "an air-gapped lab can use --mirror DIR"
    # Without a network huggingface_hub retries for half a minute, warning each time: one quick connection
    # first, and if it fails only the cache is asked.
    unreachable = "" if hfc.HF_HUB_OFFLINE else _unreachable(hfc.ENDPOINT)
    try:
        return Path(hf.hf_hub_download(repo, filename, revision=revision, library_name="realspike",
                                       library_version=__version__, local_files_only=bool(unreachable)))
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
        why = f": {unreachable}" if unreachable else ""
        raise ZooError(f"cannot reach the Hugging Face Hub ({hf.constants.ENDPOINT}{why}) and {where} is not in "
                       f"the cache ({cache}); check the network or HF_ENDPOINT, or {hint}") from None
    except hfe.EntryNotFoundError:
        raise ZooError(f"cannot download {where}: {repo} has no file {filename!r} at that revision") from None
    except Exception as exc:  # the HTTP stack differs across huggingface_hub versions; any other failure is one line
        raise ZooError(f"cannot download {where}: {type(exc).__name__}: {_first_line(exc)}") from None


NETWORK_PROBE_SECONDS = 5.0


def _unreachable(endpoint: str) -> str:
    """'' if a TCP connection to the hub (or the proxy the environment names for it) opens, else why not."""
    import socket
    import urllib.parse
    import urllib.request

    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname or host, via.port or 80
    try:
        socket.create_connection((host, port), timeout=NETWORK_PROBE_SECONDS).close()
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or type(exc).__name__}"
    return ""


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
    a mirror folder laid out as <to>/<owner>/<name>/; returns the catalogue entry to add. The checkpoint must
    load (model rebuilt, weights verified) before anything is written or uploaded."""
    from realspike_cli.core.checkpoint import file_sha256, load_checkpoint

    check_repo_id(repo)
    if filename is not None:
        check_file_name(filename)
    checkpoint = Path(checkpoint)
    try:  # what users will do with it: rebuild the model and load every tensor (and its recorded sha256)
        _, meta = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise ZooError(f"refusing to publish a checkpoint that does not load: {exc}") from None
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
    from realspike_cli.core.checkpoint import file_sha256
    from realspike_cli.core.files import atomic_write, check_output, new_folders

    same, existed = dest.is_file() and file_sha256(dest) == digest, dest.exists()
    if dest.exists() and not same and not overwrite:
        raise ZooError(f"{dest} already holds a different file; pass --overwrite to replace it")
    for path in (dest, dest.parent / "README.md"):  # both checked before either is written
        check_output(path, overwrite=True)
    with new_folders(dest.parent):  # a failure (a full disk) takes back what this push had written
        try:
            if not same:
                atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp), overwrite=True)
            atomic_write(dest.parent / "README.md", lambda tmp: tmp.write_text(card, encoding="utf-8"),
                         overwrite=True)
        except BaseException:
            if not same and not existed:
                dest.unlink(missing_ok=True)
            raise


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
