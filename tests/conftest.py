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


def randomize_batchnorm(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine parameters, so folding BatchNorm is really exercised."""
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        module.running_mean.uniform_(-0.3, 0.3, generator=generator)
        module.running_var.uniform_(0.5, 1.5, generator=generator)
        module.weight.uniform_(0.6, 1.4, generator=generator)
        module.bias.uniform_(0.0, 0.6, generator=generator)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A real run through the CLI on mnist10k (tiny width, T=2, element-wise): stopped after 3 steps with
    --max-steps, then resumed to the end of its single epoch. Shared by every test that needs a trained model."""
    from realspike_cli.cli.app import main

    out = tmp_path_factory.mktemp("run")
    args = ["train", "mnist10k", "--width", "0.25", "--t", "2", "--epochs", "1", "--batch-size", "250"]
    args += ["--lr", "0.1", "--out", str(out)]
    for extra in (["--max-steps", "3"], ["--resume"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args + extra)
        assert exit_info.value.code == 0
    return out


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny convs and batched matmuls: with the two cores shared (by other
    processes or pytest-xdist workers) they run several times slower on two threads than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
