"""Planted bugs: each mutant edits one exact snippet of the core in a temporary copy of the repository and
runs the tests that should notice; a mutant is caught when they fail. Run by hand (not in CI), from the
repository root:

    python benchmarks/mutants.py            # every mutant; writes benchmarks/results/mutants.md
    python benchmarks/mutants.py -k fold    # the mutants whose name contains "fold"

The worktree is never modified. Each snippet must occur exactly once in its file: when the code drifts the
script stops with a message naming the mutant, instead of silently testing nothing. The selected tests are
first run on the unmutated copy (the baseline): they must pass.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutants.md"
CORE = "realspike_cli/core/"


@dataclass(frozen=True)
class Mutant:
    name: str
    edits: tuple[tuple[str, str, str], ...]  # (file, exact original snippet, replacement)
    tests: tuple[str, ...]


def one(file: str, old: str, new: str) -> tuple[tuple[str, str, str], ...]:
    return ((CORE + file, old, new),)


MUTANTS = [
    Mutant("fold-drops-coefficient", one("synapses.py", "        return w * scale\n", "        return w\n"),
           ("tests/test_fold_oracles.py",)),
    Mutant("fold-wrong-and-comparator-self", (
        (CORE + "synapses.py", "        return w * scale\n", "        return w\n"),
        (CORE + "reparam.py", "want, got = ref(x), inf(x)", "want, got = ref(x), ref(x)"),
    ), ("tests/test_reparam.py",)),
    Mutant("threshold-flipped", one("neuron.py", "return (h >= v_th).to(h.dtype)\n", "return (h > v_th).to(h.dtype)\n"),
           ("tests/test_neuron_oracles.py", "tests/test_neuron.py")),
    Mutant("surrogate-window-shifted", one(
        "neuron.py", "((h - v_th).abs() <= half_width)", "((h - v_th - half_width).abs() <= half_width)"),
        ("tests/test_neuron.py",)),
    Mutant("reset-always-detached", one(
        "neuron.py", "r = s.detach() if spec.detach_reset else s", "r = s.detach()"), ("tests/test_neuron.py",)),
    Mutant("hard-reset-value-wrong", one(
        "neuron.py", "u = h * (1 - (r.abs() if ternary else r))", "u = h * (1 - 0.5 * (r.abs() if ternary else r))"),
        ("tests/test_neuron.py",)),
    Mutant("decay-ignored", one("neuron.py", "h = spec.decay * u + x_t\n", "h = u + x_t\n"),
           ("tests/test_neuron.py",)),
    Mutant("bn-epsilon-ignored", one(
        "synapses.py", "s = gamma / torch.sqrt(var + bn.eps)", "s = gamma / torch.sqrt(var)"),
           ("tests/test_fold_oracles.py",)),
    Mutant("element-positions-rolled", one(
        "reparam.py", "a = self.g.coefficient(t).double()\n", "a = self.g.coefficient(t).double().roll(1, -1)\n"),
        ("tests/test_fold_oracles.py",)),
    Mutant("fanout-ignores-stride", one(
        "synops.py", "k, s, d = m.kernel_size[axis], m.stride[axis], m.dilation[axis]",
        "k, s, d = m.kernel_size[axis], 1, m.dilation[axis]"), ("tests/test_energy_fanout.py",)),
    Mutant("energy-ac-counted-as-mac", one(
        "energy_counts.py", "return p.e_mac_pj * self.macs + p.e_ac_pj * self.acs",
        "return p.e_mac_pj * (self.macs + self.acs)"), ("tests/test_energy.py",)),
    Mutant("sha256-check-skipped", one(
        "checkpoint.py", "if recorded is not None and tensor_digest(state) != recorded:",
        "if False and recorded is not None and tensor_digest(state) != recorded:"),
        ("tests/test_hostile_files.py::test_flipped_tensor_bytes_are_one_error_line",)),
    Mutant("load-state-dict-skipped", one(
        "checkpoint.py", "    model.load_state_dict(state, strict=True)\n    return model.to(device).eval(), meta",
        "    return model.to(device).eval(), meta"), ("tests/test_checkpoint.py",)),
    Mutant("rng-restore-skipped", one(
        "train.py", "            torch.set_rng_state(self.rng_after_resume)\n", "            pass\n"),
        ("tests/test_resume_exact.py",)),
    Mutant("compare-logits-broken", (
        (CORE + "export/common.py", "diff, scale = float((reference - got).abs().max())",
         "diff, scale = float((reference - reference).abs().max())"),), ("tests/test_export.py",)),
]


def copy_repo(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the worktree (no caches, no build outputs)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dest / src.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / src.relative_to(ROOT))


def apply(copy: Path, mutant: Mutant) -> None:
    for file, old, new in mutant.edits:
        path = copy / file
        text = path.read_text()
        if text.count(old) != 1:
            sys.exit(f"error: mutant {mutant.name}: the snippet occurs {text.count(old)} times in {file} "
                     f"(expected once); update the mutant to the current code")
        path.write_text(text.replace(old, new))


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[bool, float]:
    """True when the tests pass; a timeout counts as a failure (reported as such by the caller)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow", *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - start
    return done.returncode == 0, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test run")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.k in m.name]
    rows, missed = [], 0
    with tempfile.TemporaryDirectory(prefix="realspike-mutants-") as tmp:
        clean = Path(tmp) / "clean"
        copy_repo(clean)
        for m in chosen:  # every snippet is checked before anything runs
            for file, old, _ in m.edits:
                if (clean / file).read_text().count(old) != 1:
                    sys.exit(f"error: mutant {m.name}: its snippet does not occur exactly once in {file}")
        baseline = tuple(sorted({t for m in chosen for t in m.tests}))
        ok, seconds = run_tests(clean, baseline, args.timeout)
        print(f"baseline ({' '.join(baseline)}): {'pass' if ok else 'FAIL'} in {seconds:.0f} s", flush=True)
        if not ok:
            sys.exit("error: the selected tests fail on the unmutated copy; fix them first")
        for m in chosen:
            work = Path(tmp) / m.name
            shutil.copytree(clean, work)
            apply(work, m)
            passed, seconds = run_tests(work, m.tests, args.timeout)
            shutil.rmtree(work)
            result = "NOT CAUGHT" if passed else "caught"
            missed += passed
            files = ", ".join(sorted({f.removeprefix("realspike_cli/") for f, _, _ in m.edits}))
            rows.append(f"| {m.name} | {files} | {' '.join(m.tests)} | {result} | {seconds:.0f} |")
            print(rows[-1], flush=True)
    table = ["| mutant | file | tests run | result | seconds |", "|---|---|---|---|---|", *rows]
    text = "\n".join([f"# Planted bugs ({len(rows) - missed} of {len(rows)} caught)", "",
                      "`python benchmarks/mutants.py`; baseline passed on the unmutated copy.", "", *table, ""])
    if not args.k:
        RESULTS.write_text(text)
    print(text)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
