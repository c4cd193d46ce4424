"""All terminal output: the one module that uses rich (tables, progress bars, one-line errors)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Outside a terminal (a pipe, a log file, SLURM) rich would wrap at 80 columns and split long paths: lines
# are then never wrapped, unless $COLUMNS asks for a width.
_NO_WRAP = 1 << 16


def _console(stream: object, stderr: bool = False) -> Console:
    piped = not getattr(stream, "isatty", lambda: False)() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=_NO_WRAP if piped else None)


console = _console(sys.stdout)
errors = _console(sys.stderr, stderr=True)


def error(message: str) -> None:
    """One line, no traceback: the user can act on it (printed verbatim: brackets are not rich markup)."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        numeric = rows and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
        t.add_column(col, justify="right" if i and numeric else "left")
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    return t


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"
