"""Memory presets: energy per access by buffer size, bit widths and buffer organisation (memory_presets.toml,
shipped as data), or a user's TOML/JSON file with the same keys. Every value is validated before use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from realspike_cli.core.energy_profiles import MAX_PJ, _toml, positive_number, read_profile_file
from realspike_cli.core.errors import ConfigError, UnknownNameError

DEFAULT_MEMORY = "lemaire"
SYNAPSE_LAYOUTS = ("as-stored", "one-to-one")
_BITS = ("weight_bits", "state_bits", "spike_bits", "activation_bits")
_REQUIRED = ("name", "access_bits", "sram_pj", *_BITS)
_KEYS = (*_REQUIRED, "source", "dram_pj", "core_bytes", "synapses", "fifo_events")
MAX_BYTES = 1 << 50  # a petabyte buffer is a typo
MAX_POINTS = 64


@dataclass(frozen=True)
class MemoryProfile:
    """What one memory access costs (pJ per `access_bits`, by buffer size) and how data is laid out."""

    name: str
    access_bits: int
    sram_pj: tuple[tuple[float, float], ...]
    weight_bits: int
    state_bits: int
    spike_bits: int
    activation_bits: int
    dram_pj: float | None = None
    core_bytes: int = 0
    synapses: str = "as-stored"
    fifo_events: int = 1000
    source: str = ""

    def access_pj(self, bits: float, buffer_bytes: float) -> float:
        """Energy of moving `bits` to or from a buffer of `buffer_bytes` (split into cores if core_bytes)."""
        size = min(buffer_bytes, self.core_bytes) if self.core_bytes else buffer_bytes
        return self.price(size) * bits / self.access_bits

    def price(self, size: float) -> float:
        """pJ per access of `access_bits` to a buffer of `size` bytes: linear between the points, clamped,
        or the DRAM price above the last point when there is one."""
        points = self.sram_pj
        if self.dram_pj is not None and size > points[-1][0]:
            return self.dram_pj
        if size <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
            if size <= x1:
                return y0 + (y1 - y0) * (size - x0) / (x1 - x0)
        return points[-1][1]

    def fifo_bytes(self) -> float:
        return self.fifo_events * self.spike_bits / 8

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sram_pj"] = [list(p) for p in self.sram_pj]
        return d


def _integer(raw: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    v = raw[key]
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ConfigError(f"{where}: {key} must be a whole number from {low} to {high}, got {v!r}")
    return v


def _points(raw: Any, where: str) -> tuple[tuple[float, float], ...]:
    msg = f"{where}: sram_pj must be a list of 1 to {MAX_POINTS} [buffer bytes, pJ per access] pairs"
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_POINTS:
        raise ConfigError(msg)
    points = []
    for p in raw:
        if not isinstance(p, list) or len(p) != 2:
            raise ConfigError(msg)
        size, pj = p
        if not (positive_number(size, MAX_BYTES) or size == 0) or isinstance(size, bool):
            raise ConfigError(f"{where}: sram_pj buffer sizes must be numbers of bytes from 0 to 2^50, got {size!r}")
        if not (positive_number(pj, MAX_PJ) or pj == 0) or isinstance(pj, bool):
            raise ConfigError(f"{where}: sram_pj energies must be numbers of pJ from 0 to {MAX_PJ:g}, got {pj!r}")
        if points and size <= points[-1][0]:
            raise ConfigError(f"{where}: sram_pj buffer sizes must increase strictly, got {size!r} after "
                              f"{points[-1][0]!r}")
        points.append((float(size), float(pj)))
    return tuple(points)


def _validate(raw: Any, where: str, name: str | None = None) -> MemoryProfile:
    """One memory profile from a mapping; every problem is one ConfigError line naming `where`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a memory profile must be a table/object with keys {', '.join(_REQUIRED)}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected: {', '.join(_KEYS)})")
    values = {"name": name, "core_bytes": 0, "synapses": "as-stored", "fifo_events": 1000, "source": "", **raw}
    missing = [k for k in _REQUIRED if values.get(k) is None]
    if missing:
        raise ConfigError(f"{where}: missing {missing[0]!r} (expected: {', '.join(_REQUIRED)})")
    if not isinstance(values["name"], str) or not isinstance(values["source"], str):
        raise ConfigError(f"{where}: name and source must be strings")
    if values["synapses"] not in SYNAPSE_LAYOUTS:
        raise ConfigError(f"{where}: synapses must be one of {', '.join(SYNAPSE_LAYOUTS)}, "
                          f"got {values['synapses']!r}")
    dram = values.get("dram_pj")
    if dram is not None and not positive_number(dram, MAX_PJ):
        raise ConfigError(f"{where}: dram_pj must be a positive number of pJ (at most {MAX_PJ:g}), got {dram!r}")
    bits = {k: _integer(values, k, where, 1, 64) for k in ("access_bits", *_BITS)}
    return MemoryProfile(
        name=values["name"], sram_pj=_points(values["sram_pj"], where), **bits,
        dram_pj=None if dram is None else float(dram),
        core_bytes=_integer(values, "core_bytes", where, 0, MAX_BYTES),
        synapses=values["synapses"], fifo_events=_integer(values, "fifo_events", where, 1, 1 << 40),
        source=values["source"],
    )


def memory_presets() -> dict[str, MemoryProfile]:
    text = resources.files(__package__).joinpath("memory_presets.toml").read_text(encoding="utf-8")
    return {name: _validate(raw, "memory_presets.toml", name) for name, raw in _toml(text).items()}


def load_memory_file(path: str | Path) -> MemoryProfile:
    """A user's memory profile: a .toml or .json file with the keys of memory_presets.toml (and a name)."""
    return _validate(read_profile_file(path, "a memory profile"), str(path))


def resolve_memory(name_or_path: str) -> MemoryProfile:
    """A memory preset by name, else a file (anything ending in .toml/.json or naming an existing file)."""
    known = memory_presets()
    if name_or_path in known:
        return known[name_or_path]
    if Path(name_or_path).suffix.lower() in (".toml", ".json") or Path(name_or_path).is_file():
        return load_memory_file(name_or_path)
    raise UnknownNameError("memory profile", name_or_path, known)

