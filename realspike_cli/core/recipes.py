"""Training defaults per data set (the authors' recipes), filled in where the user gives no value."""

from __future__ import annotations

from typing import Any

# The authors' CIFAR recipe (MPBN / Ternary Spike code): SGD 0.1, momentum 0.9, weight decay 1e-4 on
# weights only, cosine schedule, batch 128, crop + flip + AutoAugment + Cutout.
_CIFAR = {
    "arch": "resnet19",
    "time_steps": 4,
    "spike": "element",
    "epochs": 300,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "augment": "standard",
}

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # Quick on 2 CPU cores: about a minute per epoch; ≥ 97 % test accuracy in 3 epochs (element-wise).
    "mnist10k": {
        **_CIFAR,
        "arch": "small_convnet",
        "epochs": 3,
        "batch_size": 64,
        "lr": 0.05,
        "augment": "none",
    },
    "cifar10": dict(_CIFAR),
    "cifar100": dict(_CIFAR),
    # SEW-ResNet ImageNet recipe (Fang et al. 2021 as used by Guo et al.): IF neurons, T = 4, channel-wise.
    "imagenet": {
        **_CIFAR,
        "arch": "sew_resnet34",
        "spike": "channel",
        "epochs": 320,
        "batch_size": 256,
        "lr": 0.1,
        "weight_decay": 0.0,
    },
    "cifar10-dvs": {**_CIFAR, "arch": "resnet19", "time_steps": 10, "epochs": 200, "batch_size": 64},
}


def dataset_defaults(dataset: str) -> dict[str, Any]:
    """Defaults for `dataset`; unknown data sets (a user's own) fall back to the CIFAR recipe."""
    return dict(DATASET_DEFAULTS.get(dataset, _CIFAR))
