"""A training callback that owns a run directory: best/last checkpoints, metrics.jsonl and an exact resume point.

Layout of `out_dir`: best.safetensors and last.safetensors (checkpoints that rebuild the model on their own),
metrics.jsonl (one JSON line per epoch; with a validation split, a last line {"final": "test", ...} holding the
test metrics of the selected model) and resume.pt (model, optimizer, schedule, position and every rank's
RNG state; tensors and strings only, read back with `torch.load(weights_only=True)`). Under torchrun every
rank runs this callback (the resume point gathers each rank's RNG state) and only rank 0 writes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from realspike_cli.core.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from realspike_cli.core.errors import CheckpointError, ConfigError
from realspike_cli.core.events import Callback, EpochDone, Event, FinalTest, StepDone, Stopped
from realspike_cli.core.files import atomic_write, probe_folder
from realspike_cli.core.run_dir import RunDirectory
from realspike_cli.core.schedule import check_resumable
from realspike_cli.core.specs import TrainConfig

if TYPE_CHECKING:
    from realspike_cli.core.train import Trainer

RESUME_FILE = "resume.pt"
RUN_FILES = ("best.safetensors", "last.safetensors", "metrics.jsonl", RESUME_FILE)
# What a checkpoint's `metrics` keep of an epoch's record (the per-layer firing rates stay in metrics.jsonl).
CHECKPOINT_METRICS = ("train_loss", "train_top1", "val_top1", "val_top5", "val_loss", "test_top1", "test_top5",
                      "test_loss")


class Checkpointer(Callback):
    """Writes the run directory; `resume=True` continues the run saved there exactly where it stopped.

    A directory that already holds a run is refused unless `resume` or `overwrite` is given; one that
    another run is using is refused (a lock held for the whole run). `overwrite` keeps the old run aside
    until this one has saved, and puts it back if this one fails first (core/run_dir.py). Before the first
    step the directory must take a file of the size of everything the run will save. `save_every` also
    saves the resume point every N steps (it is always saved after each epoch and when the run stops early).
    """

    def __init__(self, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                 save_every: int = 0) -> None:
        if save_every < 0:
            raise ConfigError(f"save_every must be non-negative, got {save_every}")
        self.out = Path(out_dir)
        self.resume, self.overwrite, self.save_every = resume, overwrite, save_every
        self.run_dir = RunDirectory(self.out, RUN_FILES, saves=(RUN_FILES[0], RUN_FILES[1], RESUME_FILE))
        self._records: list[dict[str, Any]] = []  # metrics.jsonl, rewritten whole (atomically) on each line

    @property
    def best_path(self) -> Path:
        return self.out / "best.safetensors"

    @property
    def last_path(self) -> Path:
        return self.out / "last.safetensors"

    @property
    def resume_path(self) -> Path:
        return self.out / RESUME_FILE

    # callback --------------------------------------------------------------------------------------------
    def on_start(self, trainer: Trainer) -> None:
        """Rank 0 checks the directory and reads the resume file; every rank then loads that same state."""
        if trainer.spec is None:
            raise ConfigError(
                "a Checkpointer writes checkpoints that rebuild the model from their metadata, so the model "
                "must come from a ModelSpec (create_model / a registered architecture); register your "
                "architecture with @register_arch, or train without a Checkpointer and save it yourself"
            )
        state = trainer.dist.from_main(lambda: self._claim(trainer))
        if state is not None:
            try:
                trainer.load_state_dict(state)
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:  # tensors of another model
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CheckpointError(f"{self.resume_path} does not fit this run's model or optimizer "
                                      f"({first[:160]}); resume with the options it was written with") from None
            if trainer.dist.is_main:
                self._rewrite_metrics(trainer.history)

    def on_event(self, event: Event, trainer: Trainer) -> None:
        if isinstance(event, EpochDone):
            if trainer.dist.is_main:
                self._append_metrics(event.record)
                self._save_weights(self.last_path, trainer, event)
                self.run_dir.saved()
                if event.is_best:
                    self._save_weights(self.best_path, trainer, event)
            self.save_resume(trainer)
        elif isinstance(event, FinalTest):
            if trainer.dist.is_main:
                self._append_metrics(event.record)
                self._add_test_metrics(event)
        elif isinstance(event, Stopped):
            self.save_resume(trainer)
        elif isinstance(event, StepDone) and self.save_every and trainer.global_step % self.save_every == 0:
            self.save_resume(trainer)

    def on_end(self, trainer: Trainer, model: torch.nn.Module) -> None:
        self.release()

    def release(self) -> None:
        """Unlock the directory; a run set aside by --overwrite goes back if this one saved nothing."""
        self.run_dir.release()

    # the directory ---------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Claim the directory before long work (the CLI calls this before loading data): take its lock,
        refuse a run there (without --resume/--overwrite) and prove it writable. Idempotent; rank 0 only."""
        if self.resume and not self.resume_path.exists():
            raise CheckpointError(f"nothing to resume: {self.resume_path} does not exist")
        self.run_dir.claim()
        existing = self.run_dir.existing()
        if existing and not (self.resume or self.overwrite):
            self.release()
            raise ConfigError(
                f"run directory {self.out} already holds a run ({', '.join(existing)}); "
                "pass --resume to continue it, --overwrite to start again, or choose another --out"
            )

    def _claim(self, trainer: Trainer) -> dict[str, Any] | None:
        self.prepare()
        probe_folder(self.out, _bytes_to_save(trainer))
        if self.resume:
            return self._read_resume(trainer)
        self.run_dir.set_aside_previous()
        return None

    def save_resume(self, trainer: Trainer) -> Path:
        """Called on every rank (each one's RNG state is gathered); only rank 0 writes."""
        rank_rng = trainer.dist.gather(torch.get_rng_state())
        if trainer.dist.is_main:
            state = trainer.state_dict(rank_rng)
            atomic_write(self.resume_path, lambda tmp: _torch_save(state, tmp), overwrite=True)
            self.run_dir.saved()
        return self.resume_path

    def _read_resume(self, trainer: Trainer) -> dict[str, Any]:
        path = self.resume_path
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__})") from None
        check_resume_structure(state, path)
        spec = trainer.spec.to_dict() if trainer.spec else None
        if json.loads(state["spec"]) != spec or state["dataset"] != trainer.dataset_name:
            raise ConfigError(f"{path} was made for a different model or data set; resume with the same options")
        if state.get("selected_on", "test") != trainer.selected_on:
            raise ConfigError(f"{path} selected its best model on the {state.get('selected_on', 'test')} set; "
                              "resume with the same validation split")
        # More --epochs extends a run where the schedule allows it (check_resumable says why not otherwise).
        check_resumable(TrainConfig.from_dict(json.loads(state["config"])), trainer.cfg,
                        int(state["position"][0]), str(path), str(self.last_path))
        saved_world = int(state.get("world_size", 1))
        if saved_world != trainer.dist.world_size:
            # Another process count changes the global batch, the shards and the steps per epoch (the schedule).
            raise ConfigError(
                f"{path} was written by a run of {saved_world} process(es); resume it with the same "
                f"number (this run has {trainer.dist.world_size})"
            )
        return state

    def _append_metrics(self, record: dict[str, Any]) -> None:
        self._rewrite_metrics([*self._records, record])

    def _rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """The whole file, atomically: never a torn line; on resume it is cut back to the resume point (a
        crash may have left a later line)."""
        text = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write(self.out / "metrics.jsonl", lambda tmp: tmp.write_text(text), overwrite=True)
        self._records = list(records)

    def _save_weights(self, path: Path, trainer: Trainer, event: EpochDone) -> None:
        from realspike_cli.core.train import recipe_command

        cfg, spec, world = trainer.cfg, trainer.spec, trainer.dist.world_size
        recipe: dict[str, Any] = {"command": recipe_command(trainer.dataset_name, spec, cfg),
                                  "train": cfg.to_dict(), "epochs_completed": event.epoch}
        if world > 1:  # batch_size is per process: the global batch needs the process count
            recipe["command"] = recipe["command"].replace(
                "realspike train", f"torchrun --nproc-per-node {world} -m realspike_cli train", 1)
            recipe["world_size"], recipe["global_batch_size"] = world, world * cfg.batch_size
        if trainer.parent is not None:
            recipe["init_from"] = trainer.parent
        metrics = {k: event.record[k] for k in CHECKPOINT_METRICS if k in event.record}
        meta = CheckpointMeta(
            spec=spec,
            dataset=trainer.dataset_name,
            class_names=trainer.class_names,
            metrics={**metrics, "epoch": event.epoch, "selected_on": trainer.selected_on},
            recipe=recipe,
            parent_sha256=trainer.parent["sha256"] if trainer.parent else None,
        )
        save_checkpoint(path, trainer.model, meta, overwrite=True)

    def _add_test_metrics(self, event: FinalTest) -> None:
        """best.safetensors (written at the selected epoch) gains the test metrics of its weights."""
        model, meta = load_checkpoint(self.best_path)
        if meta.metrics.get("epoch") != event.epoch:
            raise CheckpointError(f"{self.best_path} is not the selected model of epoch {event.epoch}")
        tested = {k: v for k, v in event.record.items() if k.startswith("test_")}
        meta.metrics = {**meta.metrics, **tested}
        save_checkpoint(self.best_path, model, meta, overwrite=True)


def _torch_save(state: dict[str, Any], path: Path) -> None:
    """torch.save into memory, then one Python write: a full disk is then an OSError with its errno (torch's
    own writer reports it as 'unexpected pos ...', even through a Python file object)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getbuffer())


def _bytes_to_save(trainer: Trainer) -> int:
    """About the most the run holds on disk: best and last checkpoints plus a resume point (model, optimizer
    state and, with a validation split, the best weights): five times the model's tensors."""
    model_bytes = sum(t.numel() * t.element_size() for t in trainer.model.state_dict().values())
    return 5 * model_bytes + (1 << 16)


# What a resume file must hold, and of which type: checked before any value is used, so a file of another
# structure (another tool's, an older layout, a hand-made one) is one line naming the first wrong entry.
_RESUME_ENTRIES: dict[str, type | tuple[type, ...]] = {
    "spec": str, "config": str, "dataset": str, "model": dict, "optimizer": dict, "scheduler": dict,
    "scaler": dict, "position": (list, tuple), "best": (list, tuple), "history": str, "torch_rng": torch.Tensor,
}


def check_resume_structure(state: Any, path: Path) -> None:
    """A CheckpointError naming the first missing or wrongly typed entry of a loaded resume file."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a realspike resume file (it holds a {type(state).__name__}, "
                              "not a dictionary of training state)")
    for key, kind in _RESUME_ENTRIES.items():
        if key not in state:
            raise CheckpointError(f"{path} is not a realspike resume file of this version (no {key!r} entry)")
        if not isinstance(state[key], kind):
            raise CheckpointError(f"{path}: the resume entry {key!r} is a {type(state[key]).__name__}, "
                                  "not what realspike writes; resume from a file this version wrote")
    position, best = state["position"], state["best"]
    if len(position) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in position):
        raise CheckpointError(f"{path}: the resume position must be three whole numbers >= 0, got {position!r:.80}")
    if len(best) != 2:
        raise CheckpointError(f"{path}: the resume entry 'best' must be [top-1, epoch], got {best!r:.80}")
    try:
        json.loads(state["spec"]), json.loads(state["config"]), json.loads(state["history"])
    except ValueError:
        raise CheckpointError(f"{path}: the resume file's settings are not valid JSON") from None

