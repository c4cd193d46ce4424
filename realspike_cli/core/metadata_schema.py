"""The schema of a checkpoint's JSON metadata, checked before anything is built from it.

`parse_metadata` reads the text strictly: at most MAX_METADATA_CHARS characters nested at most MAX_DEPTH deep
(checked before parsing, so deep nesting never reaches the recursive parser), no NaN or Infinity literals
(which Python's json would accept), no duplicate keys. `check_document` checks the fields around the model
(schema, form, data set, class names, metrics, recipe, parent, provider, ...); the model itself is checked by
`ModelSpec.from_dict` against the bounds in core/limits.py. Unknown keys are ignored (a newer file that needs
them has a newer schema number). Every problem is one InvalidValue naming the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from realspike_cli.core import limits as L

MAX_METADATA_CHARS = 16 << 20  # 50,000 class names of 300 characters fit
MAX_DEPTH = 8  # the deepest object written is 3 levels (recipe.train, model.neuron)
FORMS = ("train", "inference")
WEIGHT_LAYOUTS = ("shared", "factorized", "materialized")
# Metrics other commands compute with (a zoo card formats test_top1 as a percentage): numbers when present.
NUMERIC_METRICS = ("train_loss", "train_top1", "val_top1", "val_top5", "val_loss", "test_top1", "test_top5",
                   "test_loss", "epoch")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def parse_metadata(text: str) -> dict[str, Any]:
    """The metadata object; InvalidValue for a document that is too large, too deep, not an object, or holds
    NaN/Infinity or a key twice. (Malformed JSON raises json.JSONDecodeError, a ValueError.)"""
    if len(text) > MAX_METADATA_CHARS:
        raise L.InvalidValue("metadata", f"is {len(text):,} characters, more than {MAX_METADATA_CHARS:,}")
    if nesting_depth(text) > MAX_DEPTH:
        raise L.InvalidValue("metadata", f"is nested more than {MAX_DEPTH} levels deep")
    raw = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    if not isinstance(raw, dict):
        raise L.InvalidValue("metadata", f"must be a JSON object, got {type(raw).__name__}")
    return raw


def nesting_depth(text: str) -> int:
    """How deep objects and arrays nest in a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", _STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
    return deepest


def _refuse_constant(literal: str) -> Any:
    raise L.InvalidValue("metadata", f"holds {literal}, which is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise L.InvalidValue("metadata", f"holds the key {L.shown(key)} twice")
        result[key] = value
    return result


def check_schema(raw: dict[str, Any], newest: int) -> int:
    """The format number: an integer from 1 (a newer one is the caller's to report, with 'upgrade')."""
    if "schema" not in raw:
        raise L.InvalidValue("schema", "is missing")
    return L.integer(raw["schema"], "schema", 1, max(newest, 2**31))


def check_document(raw: dict[str, Any]) -> None:
    """Every field beside `model` and `schema`; required: form, dataset, model."""
    for key in ("form", "dataset", "model"):
        if key not in raw:
            raise L.InvalidValue(key, "is missing")
    L.choice(raw["form"], "form", FORMS)
    L.name(raw["dataset"], "dataset")
    if "weight_layout" in raw:
        L.choice(raw["weight_layout"], "weight_layout", WEIGHT_LAYOUTS)
    _class_names(raw.get("class_names", []))
    _metrics(raw.get("metrics", {}))
    _object(raw.get("recipe", {}), "recipe")
    if "command" in raw.get("recipe", {}):
        L.text(raw["recipe"]["command"], "recipe.command", 10_000)
    if raw.get("parent_sha256") is not None and not (
            isinstance(raw["parent_sha256"], str) and _SHA256.fullmatch(raw["parent_sha256"])):
        raise L.InvalidValue("parent_sha256", f"must be 64 lowercase hex digits or null, got "
                                              f"{L.shown(raw['parent_sha256'])}")
    if raw.get("equivalence") is not None:
        _object(raw["equivalence"], "equivalence")
    _strings(raw.get("versions", {}), "versions")
    if raw.get("provider") is not None:
        _strings(raw["provider"], "provider")
    L.text(raw.get("created_utc", ""), "created_utc", 64)


def check_input_shape(raw: dict[str, Any], in_channels: int, size: tuple[int, int]) -> None:
    """`input_shape`, where present, repeats [in_channels, *input_size] of the model: it must agree."""
    if "input_shape" in raw and raw["input_shape"] != [in_channels, *size]:
        raise L.InvalidValue("input_shape", f"is {L.shown(raw['input_shape'])}, but the model says "
                                            f"{[in_channels, *size]}")


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise L.InvalidValue(field, f"must be an object, got {L.shown(value)}")
    return value


def _strings(value: Any, field: str) -> None:
    for key, item in _object(value, field).items():
        L.text(item, f"{field}.{key}", 200)


def _class_names(value: Any) -> None:
    if not isinstance(value, list) or len(value) > L.MAX_CLASSES:
        raise L.InvalidValue("class_names", f"must be a list of at most {L.MAX_CLASSES:,} names, got "
                                            f"{L.shown(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or len(item) > 1000:
            raise L.InvalidValue(f"class_names[{i}]", f"must be a string of at most 1,000 characters, got "
                                                      f"{L.shown(item)}")


def _metrics(value: Any) -> None:
    for key, item in _object(value, "metrics").items():
        if key in NUMERIC_METRICS and item is not None:
            L.real(item, f"metrics.{key}")
        elif isinstance(item, (dict, list)):
            raise L.InvalidValue(f"metrics.{key}", f"must be a number, a string, true/false or null, got "
                                                   f"{L.shown(item)}")
