"""Shared fixtures: tiny model specs so every architecture × setting test stays fast on 2 cores."""

from __future__ import annotations

import pytest
import torch

from realspike_cli.core.specs import ModelSpec


def tiny_spec(arch: str, spike: str = "element", time_steps: int = 2, **kwargs) -> ModelSpec:
    """A narrow version of `arch` on small inputs (small_convnet at 28×28, the rest at 32×32)."""
    size = (28, 28) if arch == "small_convnet" else (32, 32)
    width = 0.25 if arch == "small_convnet" else 0.0625
    defaults = dict(
        arch=arch,
        num_classes=10,
        in_channels=1 if arch == "small_convnet" else 3,
        input_size=size,
        time_steps=time_steps,
        spike=spike,
        arch_kwargs={"width": width},
    )
    defaults.update(kwargs)
    return ModelSpec(**defaults)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
