"""Inputs to run a model on: the shape a spec takes, seeded random inputs, and a checkpoint's first test
batches (the probes of reparam/export and the measuring batches of energy). Never touches the global RNG."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch

from realspike_cli.core.checkpoint import CheckpointMeta
from realspike_cli.core.errors import DataError
from realspike_cli.core.specs import Encoding, ModelSpec


def input_shape(spec: ModelSpec, batch: int) -> tuple[int, ...]:
    """[B, C, H, W] for direct encoding, [B, T, C, H, W] for event frames."""
    frames = (spec.time_steps,) if spec.encoding is Encoding.FRAMES else ()
    return (batch, *frames, spec.in_channels, *spec.input_size)


def random_inputs(spec: ModelSpec, images: int, *, generator: torch.Generator | None = None,
                  event_rate: float | None = None) -> torch.Tensor:
    """Standard-normal inputs of the spec's shape; with `event_rate`, event frames are sparse 0/1 events
    instead (a realistic spike load for counting operations). Seed 0 unless a generator is given."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    shape = input_shape(spec, images)
    if event_rate is not None and spec.encoding is Encoding.FRAMES:
        return (torch.rand(shape, generator=g) < event_rate).float()
    return torch.randn(shape, generator=g)


def probe_inputs(meta: CheckpointMeta, images: int, *, data_dir: Path | None, random: bool) -> tuple[torch.Tensor, str]:
    """Real test images when the data set can be loaded, else random inputs of the checkpoint's shape."""
    from realspike_cli.core.datasets import load_dataset, options_for_model
    from realspike_cli.core.datasets.loaders import BatchStream

    if not random:
        try:
            options = options_for_model(meta.dataset, meta.spec, data_dir=data_dir)
            test = load_dataset(meta.dataset, options).test
            x, _ = next(iter(BatchStream(test, min(images, len(test)), shuffle=False)))
            return x, f"{len(x)} {meta.dataset} test images"
        except DataError as exc:
            note = f"random inputs ({exc})"
        except KeyError:
            note = f"random inputs (data set {meta.dataset!r} is not registered here)"
    else:
        note = "random inputs (asked for)"
    return random_inputs(meta.spec, images), note


def first_test_batches(meta: CheckpointMeta, *, batches: int, batch_size: int, dataset: str | None = None,
                 data_dir: Path | None = None, random: bool = False) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """The first `batches` test batches of the data set (default: the checkpoint's; it must fit the
    checkpoint), or random inputs of the checkpoint's shape; and where they came from."""
    from realspike_cli.core.datasets import dataset_info, load_dataset, options_for_model
    from realspike_cli.core.datasets.loaders import BatchStream
    from realspike_cli.core.evaluate import check_compatible

    s = meta.spec
    if random:
        g = torch.Generator().manual_seed(0)
        xs = [random_inputs(s, batch_size, generator=g, event_rate=0.1) for _ in range(batches)]
        return xs, {"source": "random", "images": batches * batch_size}
    name = dataset or meta.dataset
    options = options_for_model(name, s, data_dir=data_dir)
    check_compatible(meta, dataset_info(name, options))
    data = load_dataset(name, options)
    stream = BatchStream(data.test, batch_size, shuffle=False)
    xs = [x for x, _ in itertools.islice(stream, batches)]
    return xs, {"source": f"{name} test set", "images": sum(len(x) for x in xs)}
