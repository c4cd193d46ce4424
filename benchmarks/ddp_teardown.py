"""Run the two-rank Ctrl-C scenario many times and count the runs whose interrupted rank aborted at exit.

By hand, not in CI (about 10 s a run on 2 CPU cores):

    python benchmarks/ddp_teardown.py --runs 20

Each run is tests/test_distributed.py::test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step in its own
pytest process: SIGINT to rank 1 alone, both ranks must stop at the same step and torchrun must exit 0. A run
counts as an abort when torchrun reports a worker killed by a signal (`exitcode : -6`, SIGABRT, which the
"terminate called without an active exception" abort gives); the test text itself is not searched, since
pytest prints the assertion's source.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/test_distributed.py::test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step"


def one_run() -> tuple[bool, bool, float]:
    """(passed, aborted (a rank killed by a signal), seconds)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--runxfail", "-m", "slow",
                           TEST],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    aborted = re.search(r"exitcode\s*:\s*-\d+", done.stdout + done.stderr) is not None
    return done.returncode == 0, aborted, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    passed = aborted = 0
    for i in range(1, runs + 1):
        ok, abort, seconds = one_run()
        passed += ok
        aborted += abort
        print(f"run {i}/{runs}: {'passed' if ok else 'FAILED'}{' (a rank killed by a signal)' if abort else ''} "
              f"in {seconds:.1f} s", flush=True)
    print(f"{passed} of {runs} passed, {aborted} aborted (a rank killed by a signal)")
    sys.exit(0 if passed == runs else 1)


if __name__ == "__main__":
    main()
