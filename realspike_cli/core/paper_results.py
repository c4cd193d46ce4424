"""The accuracies Guo et al. (ECCV 2022) report, as data: zoo/paper_results.toml, read and validated here.

Recipes (`core/recipes.py`) and the zoo catalogue cite these rows; nothing here trains or measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from realspike_cli.core.specs import Spike
from realspike_cli.core.zoo import ZooError, read_toml, zoo_file

SCHEMA = 1
TABLES = ("Table 1", "Table 2", "Table 3")
# Sec. 4.3: "For each run, we report the mean accuracy as well as the standard deviation with 3 trials".
STD_MEANING = "mean ± std over 3 trials"


@dataclass(frozen=True)
class PaperResult:
    """One row of the paper: a configuration in realspike's names and the top-1 (%) the paper prints."""

    table: str
    dataset: str
    arch: str
    time_steps: int
    spike: str
    top1: float  # percent, as printed
    std: float | None  # percent; only where the paper prints "± s"
    printed: str  # the row as the paper prints it

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.dataset, self.arch, self.time_steps, self.spike)

    @property
    def accuracy(self) -> str:
        """'95.71 ± 0.07' or '92.53': the paper's digits, nothing rounded or added."""
        return f"{self.top1:.2f}" + (f" ± {self.std:.2f}" if self.std is not None else "")


@dataclass(frozen=True)
class PaperResults:
    path: Path
    source: str
    citation: str
    rows: tuple[PaperResult, ...]

    def find(self, dataset: str, arch: str, time_steps: int, spike: str) -> tuple[PaperResult, ...]:
        """Every row of this configuration (Tables 1 and 2 share their T = 4 binary and element rows)."""
        return tuple(r for r in self.rows if r.key == (dataset, arch, time_steps, spike))

    def table(self, name: str) -> tuple[PaperResult, ...]:
        return tuple(r for r in self.rows if r.table == name)


def describe(rows: tuple[PaperResult, ...] | list[PaperResult]) -> str:
    """'paper (Table 3): 95.71 ± 0.07 top-1 (mean ± std over 3 trials)'; rows of one configuration
    printed alike in several tables are named together: 'paper (Tables 1, 2): 92.53 top-1'."""
    if not rows:
        return "paper: no reported accuracy"
    accuracies = {r.accuracy for r in rows}
    if len(accuracies) > 1:  # never expected from this paper; say so rather than pick one
        return "paper: " + "; ".join(f"{r.table}: {r.accuracy} top-1" for r in rows)
    names = [r.table for r in rows]
    where = names[0] if len(names) == 1 else "Tables " + ", ".join(n.split()[-1] for n in names)
    trials = f" ({STD_MEANING})" if rows[0].std is not None else ""
    return f"paper ({where}): {rows[0].accuracy} top-1{trials}"


def paper_results_path() -> Path:
    return zoo_file("paper_results.toml")


@lru_cache(maxsize=4)
def load_paper_results(path: str | Path | None = None) -> PaperResults:
    """Parse and validate the file; every problem names the table, the row and the key."""
    path = Path(path) if path is not None else paper_results_path()
    raw = read_toml(path, "the paper results file")
    if raw.get("schema") != SCHEMA:
        raise ZooError(f"{path} has schema {raw.get('schema')!r}; this realspike reads {SCHEMA}")
    source, citation = raw.get("source"), raw.get("citation")
    if not isinstance(source, str) or not isinstance(citation, str):
        raise ZooError(f"{path}: 'source' and 'citation' must be strings")
    rows = []
    for table in raw.get("table", []):
        name = table.get("name") if isinstance(table, dict) else None
        if name not in TABLES:
            raise ZooError(f"{path}: a [[table]] is named {name!r}; expected one of {', '.join(TABLES)}")
        for i, row in enumerate(table.get("rows", [])):
            rows.append(_parse_row(row, name, f"{path.name} {name} row {i + 1}"))
    seen = set()
    for r in rows:
        if (r.table, r.key) in seen:
            raise ZooError(f"{path}: {r.table} lists {r.key} twice")
        seen.add((r.table, r.key))
    return PaperResults(path, source, citation, tuple(rows))


def _parse_row(row: object, table: str, where: str) -> PaperResult:
    if not isinstance(row, dict):
        raise ZooError(f"{where}: not a table")
    kinds = {"dataset": str, "arch": str, "time_steps": int, "spike": str, "top1": float, "printed": str}
    for key, kind in kinds.items():
        if not isinstance(row.get(key), kind) or isinstance(row.get(key), bool):
            raise ZooError(f"{where}: {key!r} is missing or not a {kind.__name__}")
    std = row.get("std")
    if std is not None and not isinstance(std, float):
        raise ZooError(f"{where}: 'std' must be a number")
    if row["spike"] not in {s.value for s in Spike} or row["time_steps"] < 1:
        raise ZooError(f"{where}: spike must be binary/layer/channel/element and time_steps ≥ 1")
    if not (math.isfinite(row["top1"]) and 0 < row["top1"] <= 100):
        raise ZooError(f"{where}: top1 {row['top1']!r} is not a percentage")
    if std is not None and not (math.isfinite(std) and 0 <= std < 100):
        raise ZooError(f"{where}: std {std!r} is not a percentage")
    return PaperResult(table, row["dataset"], row["arch"], row["time_steps"], row["spike"], row["top1"], std,
                       row["printed"])
