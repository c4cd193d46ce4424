"""What realspike knows by name: architectures, data sets, recipes and energy profiles, as plain rows.

Read from the public registries (core.models, core.datasets, core.recipes, core.energy_profiles). Parameter
counts of architectures are computed on the meta device: the modules are built without allocating or
initialising any weight, so listing sew_resnet34 at ImageNet size costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KINDS = ("archs", "datasets", "recipes", "energy-profiles")


def parameter_count(arch: str, *, dataset: str = "cifar10", spike: str = "binary", time_steps: int = 4) -> int:
    """Parameters of `arch` built for `dataset`'s input shape and classes, on the meta device."""
    import torch

    from realspike_cli.core.counting import count_parameters
    from realspike_cli.core.datasets import dataset_info
    from realspike_cli.core.models import arch_entry, build_model
    from realspike_cli.core.specs import ModelSpec, NeuronSpec

    info = dataset_info(dataset)
    spec = ModelSpec(arch, info.num_classes, info.in_channels, info.input_size, time_steps, spike=spike,
                     neuron=NeuronSpec(kind=arch_entry(arch).default_neuron), encoding=info.encoding)
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        model = build_model(spec)
    return count_parameters(model).parameters


def arch_rows(*, dataset: str = "cifar10", spike: str = "binary") -> list[dict[str, Any]]:
    from realspike_cli.core.models import arch_entry, list_models

    rows = []
    for name in list_models():
        entry = arch_entry(name)
        try:
            count: int | None = parameter_count(name, dataset=dataset, spike=spike)
            problem = ""
        except Exception as exc:  # noqa: BLE001  (a plugin builder that fails here must not end the listing)
            count, problem = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        row = {"name": name, "description": entry.description.splitlines()[0] if entry.description else "",
               "parameters": count, "default_neuron": entry.default_neuron, "source": entry.source,
               "provider": entry.provider_dict()}
        if problem:
            row["problem"] = problem
        rows.append(row)
    return rows


def dataset_rows() -> list[dict[str, Any]]:
    from realspike_cli.core.datasets import dataset_info, list_datasets

    rows = []
    for name in list_datasets():
        i = dataset_info(name)
        shape = f"{i.in_channels}×{i.input_size[0]}×{i.input_size[1]}"
        described = f"{i.num_classes} classes, {shape}" if not i.from_data else "classes and shape from your files"
        rows.append({"name": name, "description": f"{described}, {i.encoding.value} encoding",
                     "num_classes": i.num_classes, "input_shape": [i.in_channels, *i.input_size],
                     "encoding": i.encoding.value, "default_time_steps": i.default_time_steps,
                     "how_to_get": i.how_to_get, "citation": i.citation})
    return rows


def recipe_rows() -> list[dict[str, Any]]:
    from realspike_cli.core.recipes import list_recipes

    rows = []
    for r in list_recipes():
        s = r.settings()
        selection = "validation" if s.get("val_split") else "test"  # test: the authors' code's convention
        launcher = f"torchrun --nproc-per-node {r.gpus} -m realspike_cli" if r.gpus > 1 else "realspike"
        rows.append({"name": r.name, "description": ", ".join(r.tables) + (f"; {r.notes}" if r.notes else ""),
                     "dataset": r.dataset, "arch": r.arch, "time_steps": r.time_steps, "spike": r.spike,
                     "epochs": s["epochs"], "batch_size": s["batch_size"], "gpus": r.gpus,
                     "schedule": f"{s['epochs']} × {s['batch_size']} × {r.gpus}",
                     "paper": [{"table": x.table, "top1": x.top1, "std": x.std} for x in r.reported()],
                     "paper_top1": r.target(), "reported": " / ".join(x.accuracy for x in r.reported()),
                     "selection": selection,
                     "command": f"{launcher} train --recipe {r.name}" + (" --sync-bn" if r.gpus > 1 else "")})
    return rows


def energy_profile_rows() -> list[dict[str, Any]]:
    from realspike_cli.core.energy_profiles import presets

    return [{"name": p.name, "description": p.source, "e_mac_pj": p.e_mac_pj, "e_ac_pj": p.e_ac_pj}
            for p in presets().values()]


LISTERS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "archs": arch_rows,
    "datasets": dataset_rows,
    "recipes": recipe_rows,
    "energy-profiles": energy_profile_rows,
}


def list_entries(kind: str, **options: Any) -> list[dict[str, Any]]:
    """Rows for one of KINDS; `options` (dataset, spike) apply to architectures' parameter counts."""
    from realspike_cli.core.errors import UnknownNameError

    if kind not in LISTERS:
        raise UnknownNameError("list", kind, LISTERS)
    return LISTERS[kind](**options) if kind == "archs" else LISTERS[kind]()
