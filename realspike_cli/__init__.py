"""realspike: Real Spike spiking neural networks (Guo et al., ECCV 2022) — library, CLI and model zoo.

The public API lives here, as in timm and torchvision (docs/api.md):

    import realspike_cli as rs
    model = rs.create_model("resnet20", spike="element", num_classes=10, time_steps=4)
    model = rs.fit(model, rs.load_dataset("mnist10k"), rs.TrainConfig(epochs=1))
    inference, report = rs.reparameterize(model, probe)
    report = rs.estimate_energy(model, batches)
    rs.export(inference, "nir", "model.nir", example_input=probe)  # ONNX, NIR or torch.export, validated

Names are resolved lazily (PEP 562), so `import realspike_cli` does not import torch and `realspike --help`
starts at once.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # build
    "create_model": "realspike_cli.core.models",
    "list_models": "realspike_cli.core.models",
    "build_model": "realspike_cli.core.models",
    "register_arch": "realspike_cli.core.registry",
    "ModelSpec": "realspike_cli.core.specs",
    "NeuronSpec": "realspike_cli.core.specs",
    "TrainConfig": "realspike_cli.core.specs",
    "Spike": "realspike_cli.core.specs",
    # building blocks of one's own network
    "LIFNeuron": "realspike_cli.core.neuron",
    "RealSpike": "realspike_cli.core.neuron",
    "SpikeActivation": "realspike_cli.core.neuron",
    "SpikingNetwork": "realspike_cli.core.layers",
    # data
    "load_dataset": "realspike_cli.core.datasets",
    "list_datasets": "realspike_cli.core.datasets",
    "register_dataset": "realspike_cli.core.datasets",
    "DatasetInfo": "realspike_cli.core.datasets",
    "DataOptions": "realspike_cli.core.datasets",
    # train and evaluate
    "fit": "realspike_cli.core.train",
    "train_events": "realspike_cli.core.train",
    "RunOptions": "realspike_cli.core.train",
    "Checkpointer": "realspike_cli.core.checkpointer",
    "Callback": "realspike_cli.core.events",
    "TensorBoardLogger": "realspike_cli.core.tensorboard_log",
    "InitFrom": "realspike_cli.core.finetune",
    "evaluate": "realspike_cli.core.evaluate",
    "check_equivalence": "realspike_cli.core.reparam",
    "EquivalenceReport": "realspike_cli.core.reparam",
    # convert, measure, export
    "reparameterize": "realspike_cli.core.conversion",
    "to_inference": "realspike_cli.core.reparam",
    "count_operations": "realspike_cli.core.energy_estimate",
    "estimate_energy": "realspike_cli.core.energy_estimate",
    "export": "realspike_cli.core.export",
    # checkpoints and the zoo
    "save_checkpoint": "realspike_cli.core.checkpoint",
    "load_checkpoint": "realspike_cli.core.checkpoint",
    "CheckpointMeta": "realspike_cli.core.checkpoint",
    "pull": "realspike_cli.core.zoo",
    "push": "realspike_cli.core.zoo",
    # errors
    "RealSpikeError": "realspike_cli.core.errors",
    "ConfigError": "realspike_cli.core.errors",
    "CheckpointError": "realspike_cli.core.errors",
    "DataError": "realspike_cli.core.errors",
    "ReparamError": "realspike_cli.core.errors",
    "UnknownNameError": "realspike_cli.core.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realspike_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
