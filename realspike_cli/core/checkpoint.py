"""Checkpoints: one safetensors file with the weights and JSON metadata that rebuilds the model on its own.

Header: `__metadata__ = {"format": "pt", "realspike": "<JSON>"}` with a `schema` integer checked on read.
Writes go through core.files.atomic_write (never half a file, never a silent replace); a sha256 of the tensor
data rides in the header (`realspike_tensors_sha256`) and is checked on load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realspike_cli import __version__
from realspike_cli.core.errors import CheckpointError, RealSpikeError
from realspike_cli.core.files import atomic_write
from realspike_cli.core.specs import Form, ModelSpec

SCHEMA = 1
# Header key of the tensors' sha256 (beside `realspike`, so the metadata schema is unchanged); older files lack it.
TENSOR_DIGEST_KEY = "realspike_tensors_sha256"


@dataclass
class CheckpointMeta:
    """What a checkpoint says about itself; `spec` rebuilds the architecture, `form` its structure."""

    spec: ModelSpec
    dataset: str
    form: Form = Form.TRAIN
    weight_layout: str = "shared"
    class_names: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    parent_sha256: str | None = None
    equivalence: dict[str, Any] | None = None
    schema: int = SCHEMA
    versions: dict[str, str] = field(default_factory=dict)
    created_utc: str = ""
    provider: dict[str, str] | None = None  # {"distribution", "version"} of a plugin architecture

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "form": Form(self.form).value,
            "dataset": self.dataset,
            "model": self.spec.to_dict(),
            "input_shape": [self.spec.in_channels, *self.spec.input_size],
            "weight_layout": self.weight_layout,
            "class_names": list(self.class_names),
            "metrics": self.metrics,
            "recipe": self.recipe,
            "parent_sha256": self.parent_sha256,
            "equivalence": self.equivalence,
            "versions": self.versions or {"realspike": __version__, "torch": torch.__version__.split("+")[0]},
            "created_utc": self.created_utc or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "provider": self.provider,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointMeta:
        return cls(
            spec=ModelSpec.from_dict(d["model"]),
            dataset=d["dataset"],
            form=Form(d["form"]),
            weight_layout=d.get("weight_layout", "shared"),
            class_names=list(d.get("class_names", [])),
            metrics=dict(d.get("metrics", {})),
            recipe=dict(d.get("recipe", {})),
            parent_sha256=d.get("parent_sha256"),
            equivalence=d.get("equivalence"),
            schema=int(d["schema"]),
            versions=dict(d.get("versions", {})),
            created_utc=d.get("created_utc", ""),
            provider=d.get("provider"),
        )


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta, *, overwrite: bool = False) -> Path:
    """Write `model`'s state_dict and `meta` atomically; refuses to replace a file unless `overwrite`.

    The package that provides a plugin architecture (and its version) is recorded, so that loading the file
    where it is missing can say what to install. A sha256 of the tensors is recorded beside the metadata
    and checked by `load_checkpoint`."""
    path = Path(path)
    atomic_write(path, lambda tmp: write_checkpoint_file(tmp, model, meta), overwrite=overwrite)
    return path


def write_checkpoint_file(path: Path, model: nn.Module, meta: CheckpointMeta) -> None:
    """The checkpoint written straight to `path` (not atomic: `save_checkpoint` and other atomic writers
    call this on their temporary file)."""
    from safetensors.torch import save_file

    if meta.provider is None:
        meta = dataclasses.replace(meta, provider=_provider(meta.spec.arch))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {"format": "pt", "realspike": json.dumps(meta.to_dict(), sort_keys=True),
              TENSOR_DIGEST_KEY: tensor_digest(tensors)}
    save_file(tensors, str(path), metadata=header)


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order: flipped weight bytes, a renamed
    or reshaped tensor all change it (the safetensors header carries no checksum of its own)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _provider(arch: str) -> dict[str, str] | None:
    from realspike_cli.core.models import find_arch

    entry = find_arch(arch)
    return entry.provider_dict() if entry is not None else None


def read_meta(path: str | Path) -> CheckpointMeta:
    """Read and validate only the header; clear errors for missing, truncated, foreign or newer files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error type for every malformed header
        raise CheckpointError(f"{path} is not a readable safetensors file ({_first_line(exc)})") from None
    if "realspike" not in header:
        raise CheckpointError(f"{path} is a safetensors file but not a realspike checkpoint (no realspike metadata)")
    try:
        raw = json.loads(header["realspike"])
        schema = int(raw["schema"])
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path} has corrupt realspike metadata") from None
    if schema > SCHEMA:
        raise CheckpointError(
            f"{path} uses checkpoint format {schema}, newer than this realspike reads ({SCHEMA}); upgrade realspike"
        )
    try:
        return CheckpointMeta.from_dict(raw)
    except RealSpikeError as exc:
        raise CheckpointError(f"{path} has invalid metadata: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} has incomplete metadata (missing {_first_line(exc)})") from None


def build_from_meta(meta: CheckpointMeta) -> nn.Module:
    """The module structure a checkpoint's weights belong to: the only place that maps form -> structure.

    The caller's global RNG is left as it was (the initial values are overwritten by the weights anyway)."""
    from realspike_cli.core.errors import UnknownNameError
    from realspike_cli.core.models import build_model

    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(meta.spec)
    except UnknownNameError as exc:
        raise CheckpointError(_missing_architecture(meta, exc)) from None
    if meta.form is Form.INFERENCE:
        from realspike_cli.core.reparam import to_inference

        model.eval()
        model = to_inference(model, materialize=meta.weight_layout == "materialized", check_values=False)
    return model


def _missing_architecture(meta: CheckpointMeta, exc: Exception) -> str:
    p = meta.provider or {}
    if p.get("distribution"):
        version = f"=={p['version']}" if p.get("version") else ""
        return (f"architecture {meta.spec.arch!r} of this checkpoint comes from the package "
                f"{p['distribution']!r} {p.get('version', '')}, which is not installed: pip install "
                f"'{p['distribution']}{version}'")
    return f"{exc}; the checkpoint does not name a package that provides it"


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", *, model: nn.Module | None = None, verify: bool = True
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model from the file alone (or use `model`, e.g. an unregistered network of your own) and
    load its weights strictly; returns it in eval mode. `verify` checks the tensors' recorded sha256 (files
    written before it was recorded load without the check)."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    model = build_from_meta(meta) if model is None else model
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({_first_line(exc)})") from None
    recorded = _recorded_digest(path) if verify else None
    if recorded is not None and tensor_digest(state) != recorded:
        raise CheckpointError(f"{path} is corrupt: its tensor data does not match the sha256 recorded when it was "
                              "saved (damaged on disk or in transfer, or edited); restore it from a good copy")
    problem = describe_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{path}: weights do not match architecture {meta.spec.arch!r} ({problem})")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


def _recorded_digest(path: str | Path) -> str | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(TENSOR_DIGEST_KEY)


def describe_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """The first difference between two state dicts, in words; empty when they line up."""
    missing = [k for k in expected if k not in found]
    if missing:
        return f"{len(missing)} tensor(s) missing, e.g. {missing[0]}"
    unexpected = [k for k in found if k not in expected]
    if unexpected:
        return f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}"
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            return f"{key} has shape {tuple(found[key].shape)}, expected {tuple(tensor.shape)}"
    return ""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
