"""Optimizers and learning-rate schedules by name, and what a resumed run may change about its schedule.

Recipes stay plain data: names map to constructors here. The schedule is stepped every iteration and laid
out over the whole run (`epochs × steps per epoch`), so its length is part of the recipe.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from realspike_cli.core.errors import ConfigError
from realspike_cli.core.neuron import RealSpike
from realspike_cli.core.specs import TrainConfig

OPTIMIZERS = {
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.lr),
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr),
}

SCHEDULES = {
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "step": lambda progress: 0.1 ** sum(progress >= m for m in (0.5, 0.75)),
    "constant": lambda progress: 1.0,
}

# Schedules whose learning rate after warm-up does not depend on the run's length: a run on one of them can be
# extended to more epochs and is then identical to a run planned that long from the start.
LENGTH_FREE_SCHEDULES = ("constant",)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights only; BN, biases and Real Spike coefficients are not decayed."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.optimizer!r} (choose from: {', '.join(OPTIMIZERS)})")
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            weighted = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            (decay if weighted and not isinstance(module, RealSpike) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return OPTIMIZERS[cfg.optimizer](groups, cfg)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Stepped every iteration; linear warm-up over `warmup_epochs`, then the named shape."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.schedule!r} (choose from: {', '.join(SCHEDULES)})")
    shape = SCHEDULES[cfg.schedule]
    warmup = int(total_steps * cfg.warmup_epochs / cfg.epochs)  # = steps per epoch × warmup_epochs

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return shape((step - warmup) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_resumable(saved: TrainConfig, wanted: TrainConfig, epochs_done: int, where: str,
                    weights: str = "RUN_DIR/last.safetensors") -> None:
    """May a run saved with recipe `saved`, `epochs_done` epochs in, continue under `wanted`?

    Only the number of epochs may change, and only on a schedule whose learning rates do not depend on it:
    a cosine or step schedule laid out for N epochs cannot be stretched to M without changing the learning
    rates of the epochs already trained. ConfigError, saying why and what to do instead (start from `weights`),
    otherwise."""
    if saved == wanted:
        return
    if dataclasses.replace(saved, epochs=wanted.epochs) != wanted:
        raise ConfigError(f"{where} was made with a different training recipe; resume with the same options")
    if wanted.epochs < epochs_done:
        raise ConfigError(f"{where}: the run has already trained {epochs_done} epochs; --epochs {wanted.epochs} "
                          "is fewer")
    if saved.schedule not in LENGTH_FREE_SCHEDULES:
        raise ConfigError(
            f"{where}: the run's {saved.schedule} schedule was laid out for {saved.epochs} epoch(s) and cannot be "
            f"stretched to {wanted.epochs} without changing the learning rates already used; start a new run from "
            f"its weights with a fresh schedule instead (--init-from {weights} --out NEW_DIR), "
            "or train with --schedule constant, which --resume can extend"
        )
