"""Checkpoints: one safetensors file with the weights and JSON metadata that rebuilds the model on its own.

Header: `__metadata__ = {"format": "pt", "realspike": "<JSON>"}` with a `schema` integer checked on read.
Writes go through core.files.atomic_write (never half a file, never a silent replace); a sha256 of the tensor
data rides in the header (`realspike_tensors_sha256`) and is checked on load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realspike_cli import __version__
from realspike_cli.core import metadata_schema as schema
from realspike_cli.core.errors import CheckpointError, RealSpikeError
from realspike_cli.core.files import atomic_write
from realspike_cli.core.limits import InvalidValue, fields_of
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
            "metrics": _json_metrics(self.metrics),
            "recipe": self.recipe,
            "parent_sha256": self.parent_sha256,
            "equivalence": self.equivalence,
            "versions": self.versions or {"realspike": __version__, "torch": torch.__version__.split("+")[0]},
            "created_utc": self.created_utc or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "provider": self.provider,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointMeta:
        """Checked against the schema (core/metadata_schema.py, core/limits.py) first: InvalidValue names the
        first field that is missing, of the wrong type or out of range; nothing is coerced."""
        if not isinstance(d, dict):
            raise InvalidValue("metadata", f"must be an object, got {type(d).__name__}")
        version = schema.check_schema(d, SCHEMA)
        schema.check_document(d)
        with fields_of("model"):
            spec = ModelSpec.from_dict(d["model"])
        schema.check_input_shape(d, spec.in_channels, spec.input_size)
        return cls(
            spec=spec,
            dataset=d["dataset"],
            form=Form(d["form"]),
            weight_layout=d.get("weight_layout", "shared"),
            class_names=list(d.get("class_names", [])),
            metrics=dict(d.get("metrics", {})),
            recipe=dict(d.get("recipe", {})),
            parent_sha256=d.get("parent_sha256"),
            equivalence=d.get("equivalence"),
            schema=version,
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
    header = {"format": "pt", "realspike": json.dumps(meta.to_dict(), sort_keys=True, allow_nan=False),
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


def _json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity (and the reader refuses them): a non-finite metric is recorded as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


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
        raw = schema.parse_metadata(header["realspike"])
        version = schema.check_schema(raw, SCHEMA)
    except RealSpikeError as exc:
        raise CheckpointError(f"{path} has invalid metadata: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise CheckpointError(f"{path} has corrupt realspike metadata (not JSON: {_first_line(exc)})") from None
    if version > SCHEMA:
        raise CheckpointError(
            f"{path} uses checkpoint format {version}, newer than this realspike reads ({SCHEMA}); upgrade realspike"
        )
    try:
        return CheckpointMeta.from_dict(raw)
    except RealSpikeError as exc:
        raise CheckpointError(f"{path} has invalid metadata: {exc}") from None


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
    # Names, shapes and dtypes first, from the header and a model built on the meta device: a file whose
    # metadata asks for a huge model but holds small tensors is refused before anything is allocated.
    expected = model.state_dict() if model is not None else skeleton_state(meta, path)
    problem = describe_mismatch(expected, tensor_layout(path))
    if problem:
        raise CheckpointError(f"{path}: weights do not match architecture {meta.spec.arch!r} ({problem})")
    model = build_from_meta(meta) if model is None else model
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({_first_line(exc)})") from None
    recorded = _recorded_digest(path) if verify else None
    if recorded is not None and tensor_digest(state) != recorded:
        raise CheckpointError(f"{path} is corrupt: its tensor data does not match the sha256 recorded when it was "
                              "saved (damaged on disk or in transfer, or edited); restore it from a good copy")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


def _recorded_digest(path: str | Path) -> str | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(TENSOR_DIGEST_KEY)


def skeleton_state(meta: CheckpointMeta, path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict `build_from_meta(meta)` would have, built on the meta device: shapes and dtypes, no
    memory. A layer left with no elements (an input too small for the architecture) is an error here."""
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")  # torch warns that initializing zero-element tensors is a no-op
            state = build_from_meta(meta).state_dict()
    except NotImplementedError:  # an inference form whose fold reads values (MPBN thresholds): build it for real;
        with warnings.catch_warnings():  # the metadata's size bounds (core/limits.py) were checked already
            warnings.simplefilter("ignore")
            state = build_from_meta(meta).state_dict()
    empty = next((k for k, t in state.items() if t.numel() == 0 and t.dim() > 0), None)
    if empty is not None:
        c, (h, w) = meta.spec.in_channels, meta.spec.input_size
        raise CheckpointError(f"{path}: architecture {meta.spec.arch!r} cannot take {c}×{h}×{w} inputs "
                              f"({empty} would have no elements)")
    return state


Layout = tuple[tuple[int, ...], "torch.dtype | str"]
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def _dtype(name: str) -> torch.dtype | str:
    return _DTYPES.get(name, name)  # a dtype no realspike model has stays its safetensors name (F8_E4M3, ...)


def tensor_layout(path: str | Path) -> dict[str, Layout]:
    """Each tensor's (shape, dtype) as the file's header states them, without reading any tensor data."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), _dtype(f.get_slice(k).get_dtype()))
                    for k in f.keys()}  # noqa: SIM118  (a safe_open handle is not a dict)
    except Exception as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({_first_line(exc)})") from None


def describe_mismatch(expected: dict[str, torch.Tensor | Layout], found: dict[str, torch.Tensor | Layout]) -> str:
    """The first difference between two state dicts (tensors, or (shape, dtype) pairs), in words; empty
    when names, shapes and dtypes line up."""
    missing = [k for k in expected if k not in found]
    if missing:
        return f"{len(missing)} tensor(s) missing, e.g. {missing[0]}"
    unexpected = [k for k in found if k not in expected]
    if unexpected:
        return f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}"
    for key, tensor in expected.items():
        (want, want_dtype), (got, got_dtype) = _layout(tensor), _layout(found[key])
        if got != want:
            return f"{key} has shape {got}, expected {want}"
        if got_dtype != want_dtype:
            return f"{key} has dtype {str(got_dtype).removeprefix('torch.')}, expected " \
                   f"{str(want_dtype).removeprefix('torch.')}"
    return ""


def _layout(value: torch.Tensor | Layout) -> Layout:
    return (tuple(value.shape), value.dtype) if isinstance(value, torch.Tensor) else value


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
