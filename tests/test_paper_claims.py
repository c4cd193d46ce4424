"""The paper-claims report is regenerated from the committed raw results, and what it states follows from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "paper_claims.json"


def test_report_is_reproducible_from_the_raw_results(tmp_path):
    report = tmp_path / "results.md"
    script = ROOT / "benchmarks" / "paper_claims.py"
    subprocess.run([sys.executable, str(script), "--from-json", str(RESULTS), "--report", str(report)], check=True)
    text = report.read_text()
    assert text == (ROOT / "docs" / "results.md").read_text()  # docs/results.md is exactly what the data says
    results = json.loads(RESULTS.read_text())
    for network in {(r.get("arch", "small_convnet"), r.get("width", 0.5)) for r in results}:
        group = [r for r in results if (r.get("arch", "small_convnet"), r.get("width", 0.5)) == network]
        assert len({r["seed"] for r in group}) >= 3, network
        agreeing = sum(r["agreement"] == 1.0 and r["top1_train_form"] == r["top1_inference_form"] for r in group)
        assert f"{agreeing} of {len(group)} models" in text
        assert f"## `{network[0]}` at width {network[1]}" in text
    assert (tmp_path / "img" / "information_capacity.png").stat().st_size > 10_000
