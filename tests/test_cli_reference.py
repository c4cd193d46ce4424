"""docs/cli.md is generated from the CLI: it lists every option of every command and is never stale."""

from __future__ import annotations

from pathlib import Path

from realspike_cli.cli.reference import cli_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_committed_cli_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == cli_reference(), (
        "docs/cli.md is stale: regenerate it with `python -m realspike_cli.cli.reference > docs/cli.md`"
    )


def test_reference_names_options_that_were_once_missing():
    text = cli_reference()
    for option in ("--probe-images", "--dt", "--opset", "--max-dense-weights", "--nir-pooling"):
        assert f"`{option}" in text, option
