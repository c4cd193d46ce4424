"""Whether two checkpoints are related, so that comparing their predictions means something (`eval --compare`).

Related: the same data set and model spec (architecture, input shape, classes, T, spike setting, neuron,
encoding, architecture options), and one descends from the other: one's `parent_sha256` (written by `reparam`
and by fine-tuning) is the other file's sha256, both have the same parent, or the files are identical.
Two separately trained runs of one recipe are unrelated: their agreement measures nothing about a conversion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from realspike_cli.core.errors import ConfigError

if TYPE_CHECKING:
    from realspike_cli.core.checkpoint import CheckpointMeta

_SPEC_NAMES = {"arch": "architecture", "num_classes": "classes", "in_channels": "input channels",
               "input_size": "input size", "time_steps": "T", "spike": "spike setting", "neuron": "neuron",
               "encoding": "encoding", "arch_kwargs": "architecture options"}


class UnrelatedError(ConfigError):
    """Two checkpoints compared without `--unrelated-ok` are not related (the reason is the message)."""


def relation(meta_a: CheckpointMeta, sha_a: str, meta_b: CheckpointMeta, sha_b: str) -> str | None:
    """None if the two checkpoints are related, else the first reason they are not (one short phrase)."""
    spec_a, spec_b = meta_a.spec.to_dict(), meta_b.spec.to_dict()
    if spec_a["arch"] != spec_b["arch"]:
        return f"different architectures ({spec_a['arch']} and {spec_b['arch']})"
    if meta_a.dataset != meta_b.dataset:
        return f"different data sets ({meta_a.dataset} and {meta_b.dataset})"
    for key, name in _SPEC_NAMES.items():
        if spec_a[key] != spec_b[key]:
            return f"different {name} ({_shown(spec_a[key])} and {_shown(spec_b[key])})"
    parent_a, parent_b = meta_a.parent_sha256, meta_b.parent_sha256
    if sha_a == sha_b or parent_a == sha_b or parent_b == sha_a or (parent_a is not None and parent_a == parent_b):
        return None
    return "neither is derived from the other (no parent_sha256 links them) and they share no parent"


def check_related(meta_a: CheckpointMeta, sha_a: str, meta_b: CheckpointMeta, sha_b: str) -> None:
    """UnrelatedError naming the first difference, unless the checkpoints are related."""
    reason = relation(meta_a, sha_a, meta_b, sha_b)
    if reason is not None:
        raise UnrelatedError(f"the checkpoints are unrelated: {reason}; agreement between them means nothing "
                             f"about a conversion (pass --unrelated-ok to compare them anyway)")


def _shown(value: object) -> str:
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)
