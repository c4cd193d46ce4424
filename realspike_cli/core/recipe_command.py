"""The canonical `realspike train` command line that reproduces a run (written into every checkpoint)."""

from __future__ import annotations

from realspike_cli.core.specs import ModelSpec, TrainConfig


def recipe_command(dataset: str, spec: ModelSpec, cfg: TrainConfig) -> str:
    """The canonical `realspike train` line that reproduces a run (no local paths)."""
    parts = [
        f"realspike train {dataset} --arch {spec.arch} --t {spec.time_steps} --spike {spec.spike.value}",
        f"--neuron {spec.neuron.kind} --decay {spec.neuron.decay} --v-th {spec.neuron.v_th}",
        f"--epochs {cfg.epochs} --batch-size {cfg.batch_size} --optimizer {cfg.optimizer} --lr {cfg.lr}",
        f"--momentum {cfg.momentum} --weight-decay {cfg.weight_decay} --schedule {cfg.schedule}",
        f"--warmup-epochs {cfg.warmup_epochs} --augment {cfg.augment} --seed {cfg.seed}",
    ]
    if spec.arch_kwargs.get("width", 1.0) != 1.0:
        parts.append(f"--width {spec.arch_kwargs['width']}")
    if cfg.label_smoothing:
        parts.append(f"--label-smoothing {cfg.label_smoothing}")
    if cfg.val_split:
        parts.append(f"--val-split {cfg.val_split}")
    if _shape_from_files(dataset):  # imagefolder, npz: the shape the model was built for is a choice of the run
        h, w = spec.input_size
        parts.append(f"--image-size {h}x{w} --channels {spec.in_channels}")
    n = spec.neuron  # the options the paper leaves open, only where they differ from its choices
    if n.reset != "hard":
        parts.append(f"--reset {n.reset}")
    if n.detach_reset:
        parts.append("--detach-reset")
    if n.surrogate_width != 1.0:
        parts.append(f"--surrogate-width {n.surrogate_width}")
    return " ".join(parts)


def _shape_from_files(dataset: str) -> bool:
    from realspike_cli.core.datasets import dataset_info
    from realspike_cli.core.errors import UnknownNameError

    try:
        return dataset_info(dataset).from_data
    except UnknownNameError:  # "custom": a (train, test) pair given to fit
        return False
