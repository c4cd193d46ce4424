"""Test helper run under torchrun: the unchanged `realspike` CLI, plus a per-rank report of what each rank holds.

`python -m torch.distributed.run ... tests/ddp_probe.py train ...` behaves exactly like `-m realspike_cli train`;
after training each rank also writes $PROBE_DIR/rank<R>.json: a digest of its model's state_dict (parameters
and buffers), its position, how the run ended, and every evaluation it took part in; $PROBE_DIR/pid<R> holds
each rank's process id.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes, in name order; equal digests mean bit-equal state."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _install(out: Path) -> None:
    from realspike_cli.core import evaluate as E
    from realspike_cli.core import train as T

    evals: list[dict] = []
    local_sums, sharded = E.evaluate_sums, T.evaluate_sharded

    def evaluate_sums(*args, **kwargs):
        sums = local_sums(*args, **kwargs)
        evals.append({"local_images": int(sums["counts"][0])})
        return sums

    def evaluate_sharded(*args, **kwargs):
        result = sharded(*args, **kwargs)
        evals[-1].update(images=result.images, top1=result.top1, loss=result.loss)
        return result

    run = T.Trainer.run

    def probed_run(self):
        last = None
        for event in run(self):
            last = event
            yield event
        report = {
            "rank": self.dist.rank,
            "world_size": self.dist.world_size,
            "backend": self.dist.backend,
            "digest": state_digest(self.model.state_dict()),
            "position": [self.epoch, self.step, self.global_step],
            "ended": type(last).__name__,
            "reason": getattr(last, "reason", None),
            "evals": evals,
        }
        (out / f"rank{self.dist.rank}.json").write_text(json.dumps(report))

    E.evaluate_sums, T.evaluate_sharded, T.Trainer.run = evaluate_sums, evaluate_sharded, probed_run


if __name__ == "__main__":
    probe_dir = Path(os.environ["PROBE_DIR"])
    probe_dir.mkdir(parents=True, exist_ok=True)
    (probe_dir / f"pid{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))  # to signal one rank alone
    _install(probe_dir)
    from realspike_cli.cli.app import run

    run(sys.argv[1:])  # the console entry point's own exit path
