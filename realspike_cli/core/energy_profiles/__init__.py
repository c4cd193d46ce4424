"""Energy-per-operation profiles: named presets (presets.toml, shipped as data) or a user's TOML/JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from realspike_cli.core.errors import ConfigError, UnknownNameError

DEFAULT_PROFILE = "45nm"
_KEYS = ("name", "e_mac_pj", "e_ac_pj", "source")
MAX_PJ = 1e6  # a microjoule per operation or access: anything above is a typo, not a chip


def positive_number(v: Any, limit: float) -> bool:
    """A finite number in (0, limit]; bool (an int in Python) is not one."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= limit


@dataclass(frozen=True)
class EnergyProfile:
    """Energy of one multiply-accumulate and one accumulate, in picojoules, and where the numbers come from."""

    name: str
    e_mac_pj: float
    e_ac_pj: float
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _toml(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def _validate(raw: Any, where: str, name: str | None = None) -> EnergyProfile:
    """One profile from a mapping; every problem is one ConfigError line naming `where`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a profile must be a table/object with keys {', '.join(_KEYS)}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected: {', '.join(_KEYS)})")
    values = {"name": name, **raw}
    for key in ("name", "e_mac_pj", "e_ac_pj"):
        if values.get(key) is None:
            raise ConfigError(f"{where}: missing {key!r} (expected: {', '.join(_KEYS)})")
    for key in ("e_mac_pj", "e_ac_pj"):
        v = values[key]
        if not positive_number(v, MAX_PJ):
            raise ConfigError(f"{where}: {key} must be a positive number of picojoules (at most {MAX_PJ:g}), "
                              f"got {v!r}")
    if not isinstance(values["name"], str) or not isinstance(values.get("source", ""), str):
        raise ConfigError(f"{where}: name and source must be strings")
    return EnergyProfile(values["name"], float(values["e_mac_pj"]), float(values["e_ac_pj"]), values.get("source", ""))


def presets() -> dict[str, EnergyProfile]:
    text = resources.files(__name__).joinpath("presets.toml").read_text(encoding="utf-8")
    return {name: _validate(raw, "presets.toml", name) for name, raw in _toml(text).items()}


def read_profile_file(path: str | Path, what: str = "an energy profile") -> Any:
    """The parsed content of a user's .toml or .json profile file; every problem is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ConfigError(f"{path}: {what} file must end in .toml or .json")
    try:
        if path.stat().st_size > 1 << 20:  # a profile is a few lines; refuse to parse anything huge
            raise ConfigError(f"{path}: {what} file is larger than 1 MiB")
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if suffix == ".json" else _toml(text)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()} ({first})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror or exc})") from None


def load_profile_file(path: str | Path) -> EnergyProfile:
    """A user's profile: a .toml or .json file holding {name, e_mac_pj, e_ac_pj, source}."""
    return _validate(read_profile_file(path), str(path))


def resolve_profile(name_or_path: str) -> EnergyProfile:
    """A preset by name, else a file (anything ending in .toml/.json or naming an existing file)."""
    known = presets()
    if name_or_path in known:
        return known[name_or_path]
    if Path(name_or_path).suffix.lower() in (".toml", ".json") or Path(name_or_path).is_file():
        return load_profile_file(name_or_path)
    raise UnknownNameError("energy profile", name_or_path, known)
