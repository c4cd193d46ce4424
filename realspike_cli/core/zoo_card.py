"""Text that `realspike zoo push` writes: the Hugging Face model card of a checkpoint and the catalogue entry."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # checkpoint imports torch; `realspike zoo list` must not
    from realspike_cli.core.checkpoint import CheckpointMeta

# Hub data set ids for the card's `datasets:` field; data sets without one are named as realspike knows them.
HUB_DATASETS = {"mnist10k": "ylecun/mnist", "cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100",
                "imagenet": "ILSVRC/imagenet-1k"}


def entry_name(meta: CheckpointMeta) -> str:
    s = meta.spec
    return _entry_norm(f"{s.arch}-{meta.dataset}-t{s.time_steps}-{s.spike.value}")


def model_card(meta: CheckpointMeta, repo: str, filename: str, sha256: str, licence: str = "mit",
               citation: str = "Guo et al., Real Spike, ECCV 2022", others: dict[str, str] | None = None) -> str:
    """A Hugging Face model card (YAML metadata + Markdown) describing the checkpoint from its own metadata."""
    from huggingface_hub import ModelCard, ModelCardData

    s, top1 = meta.spec, meta.metrics.get("test_top1")
    data = ModelCardData(
        library_name="realspike", license=licence, datasets=[HUB_DATASETS.get(meta.dataset, meta.dataset)],
        metrics=["accuracy"], pipeline_tag="image-classification", model_name=repo.split("/")[1],
        tags=["spiking-neural-network", "real-spike", "snn", s.arch, meta.dataset, f"{s.spike.value}-wise",
              f"{meta.form.value}-form"],
    )
    width = s.arch_kwargs.get("width", 1.0)
    rows = [("architecture", s.arch + (f" (width {width})" if width != 1.0 else "")), ("data set", meta.dataset),
            ("time steps T", s.time_steps), ("spike setting", s.spike.value),
            ("neuron", f"{s.neuron.kind}, decay {s.neuron.decay}, V_th {s.neuron.v_th}"),
            ("form", meta.form.value), ("test top-1", "–" if top1 is None else f"{100 * top1:.2f} %"),
            ("file", f"`{filename}`"), ("sha256", f"`{sha256}`")]
    recipe = meta.recipe.get("command", "(not recorded in the checkpoint)")
    body = "\n".join([
        f"# {repo.split('/')[1]}", "",
        f"A Real Spike spiking neural network (Guo et al., ECCV 2022) in the **{meta.form.value} form**, "
        "made with realspike (`library_name: realspike`).", "",
        "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
        *(["## Other files", "", *(f"- `{f}`: {what}" for f, what in sorted(others.items())), ""] if others else []),
        "## Use", "", "```bash", f"realspike eval {filename}", "```", "",
        "```python", "from realspike_cli.core.checkpoint import load_checkpoint",
        f'model, meta = load_checkpoint("{filename}")', "```", "",
        "## Reproduce", "", "```bash", recipe, "```", "",
        "## Citation", "", "```bibtex", citation.strip(), "```", ""])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def catalogue_snippet(meta: CheckpointMeta, repo: str, filename: str, sha256: str, size: int,
                      licence: str = "mit") -> str:
    """The [[entry]] block to add to zoo/catalogue.toml for this file (merge forms of one model by hand)."""
    s, q = meta.spec, json.dumps  # a JSON string literal is a valid TOML basic string
    lines = ["[[entry]]", f"name = {q(entry_name(meta))}", 'kind = "trained"', f"arch = {q(s.arch)}",
             f"dataset = {q(meta.dataset)}", f"time_steps = {s.time_steps}", f"spike = {q(s.spike.value)}"]
    if s.arch_kwargs.get("width", 1.0) != 1.0:
        lines.append(f"width = {float(s.arch_kwargs['width'])}")
    lines += [f"repo = {q(repo)}", f"recipe = {q(meta.recipe.get('command', ''))}", f"licence = {q(licence)}",
              'cite = ["guo2022"]', f"summary = {q(f'{s.arch} on {meta.dataset}, T={s.time_steps}, {s.spike.value}')}",
              "", f"[entry.forms.{meta.form.value}]", f"file = {q(filename)}", f"sha256 = {q(sha256)}",
              f"size = {size}"]
    top1 = meta.metrics.get("test_top1")
    if top1 is not None:
        lines.append(f"top1 = {float(top1)!r}  # at training time; confirm with: realspike eval {filename}")
    return "\n".join(lines) + "\n"


def _entry_norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")
