"""What `realspike energy` reports, for any model built from realspike layers: the forms to measure as float64
copies, the ANN baseline and the notes that qualify the numbers (`count_operations`, `estimate_energy`)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from realspike_cli.core.energy import EnergyReport, FormCount, Progress, ann_layers, count_forms
from realspike_cli.core.energy_baselines import memory_report
from realspike_cli.core.energy_profiles import EnergyProfile, resolve_profile
from realspike_cli.core.energy_profiles.memory import DEFAULT_MEMORY, MemoryProfile, resolve_memory
from realspike_cli.core.errors import ConfigError, RealSpikeError, ReparamError
from realspike_cli.core.graph import MAX_POOLS, is_training_form, refuse_weight_wrappers
from realspike_cli.core.reparam import to_inference, weight_layout
from realspike_cli.core.specs import Encoding, ModelSpec

FORMS = ("train", "inference")
FLOAT64 = "measured in float64, so threshold rounding cannot flip a spike between forms"
DIRECT_STEM = ("direct encoding: the stem (first conv + BN) runs once per image and its output is repeated "
               "over the T steps, so its MACs are counted once, as the model computes them")
NOT_COUNTED = (
    "compute-only figures price synaptic operations alone; the memory-inclusive ones add neuron updates, "
    "biases, addressing and memory accesses; neither counts threshold comparisons, pooling, the average over "
    "time steps, the network-on-chip or control (docs/energy.md)"
)
MAX_POOLED = ("max pooling of spikes: its events are not linear in the spikes, so the crossover rate scales them "
              "with the spikes (an approximation)")


@dataclass
class MeasuredForms:
    """float64 copies of each form to measure, the structure the ANN baseline is counted on, and notes."""

    models: dict[str, nn.Module]
    ann: nn.Module
    notes: list[str] = field(default_factory=list)


def measured_forms(model: nn.Module, forms: Sequence[str] = FORMS, *, fallback: bool = False) -> MeasuredForms:
    """The forms of `model` to count, as float64 eval-mode copies (`model` is left untouched).

    "train" is the model as given when it still has something to fold (RealSpike or BatchNorm); "inference"
    is its re-parameterization (`reparam.to_inference`), or the model itself when it is already in the
    inference form. A refused conversion raises, or with `fallback` drops that form with a note.
    """
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise ConfigError(f"unknown form(s) {unknown or list(forms)} (choose from: {', '.join(FORMS)})")
    refuse_weight_wrappers(model, ConfigError, "copy the model to count its operations", hooks_only=True)
    copy64 = copy.deepcopy(model).double().eval()
    notes = [FLOAT64]
    spec = getattr(model, "spec", None)
    if isinstance(spec, ModelSpec) and spec.encoding is Encoding.DIRECT:
        notes.append(DIRECT_STEM)
    if not is_training_form(model):
        if "inference" not in forms:
            raise ConfigError(f"{type(model).__name__} is already in the inference form (no RealSpike or "
                              "BatchNorm to fold): its training form cannot be counted")
        ann, ann_notes = _ann_structure(model, copy64)
        return MeasuredForms({"inference": copy64}, ann, notes + ann_notes)
    models = {"train": copy64} if "train" in forms else {}
    if "inference" in forms:
        try:
            models["inference"] = to_inference(copy64)
        except ReparamError as exc:
            if not fallback:
                raise
            notes.append(f"no inference form: {exc}")
    if not models:
        raise ConfigError(f"nothing to count: {notes[-1]}")
    return MeasuredForms(models, copy64, notes)


def _ann_structure(model: nn.Module, copy64: nn.Module) -> tuple[nn.Module, list[str]]:
    """What the ANN baseline of an inference form is counted on. Its own synapses give the training form's
    counts, except materialized kernels that compose a pooling layer (they read the pre-pool map): for
    those, rebuild the architecture from the model's `.spec` when it is registered, else say so."""
    if weight_layout(model) != "materialized":
        return copy64, []
    spec = getattr(model, "spec", None)
    if isinstance(spec, ModelSpec):
        from realspike_cli.core.models import build_model

        try:
            with torch.random.fork_rng(devices=[]):  # construction draws initial values: keep the caller's RNG
                return build_model(spec).double().eval(), []
        except RealSpikeError:
            pass
    return copy64, ["ANN baseline counted on the materialized synapses: where they compose a pooling layer "
                    "with the next conv, its MACs are those of the composed kernel on the pre-pool map"]


def _input_list(batches: torch.Tensor | Iterable) -> list[torch.Tensor]:
    """A batch tensor, or an iterable of batch tensors or (inputs, labels) pairs, as a list of tensors."""
    if isinstance(batches, torch.Tensor):
        return [batches]
    xs = [b[0] if isinstance(b, (tuple, list)) else b for b in batches]
    bad = next((x for x in xs if not isinstance(x, torch.Tensor) or x.dim() < 2), None)
    if bad is not None or not xs:
        what = "no batches" if not xs else f"a {type(bad).__name__}" + (
            f" of shape {tuple(bad.shape)}" if isinstance(bad, torch.Tensor) else "")
        raise ConfigError(f"energy needs input batches [B, ...] (or (inputs, labels) pairs), got {what}")
    return xs


def count_operations(model: nn.Module, batches: torch.Tensor | Iterable, *,
                     forms: Sequence[str] = FORMS) -> list[FormCount]:
    """Spikes, synaptic events, ACs, MACs and weights per image of each form of `model`, measured in float64
    on the same `batches` (see `measured_forms`; a refused conversion raises ReparamError)."""
    xs = _input_list(batches)
    return count_forms(measured_forms(model, forms).models, xs)


def estimate_energy(model: nn.Module, batches: torch.Tensor | Iterable, profile: str | EnergyProfile = "45nm", *,
                    memory: str | MemoryProfile = DEFAULT_MEMORY, include_inference: bool = True,
                    source: str = "batches given", progress: Progress | None = None) -> EnergyReport:
    """Exactly what `realspike energy` reports: the counts of the training form and (if it converts, else a
    note says why not) its inference form, the same network as an ANN, their compute-only energy under
    `profile` (a preset name, a TOML/JSON file or an EnergyProfile), the memory-inclusive figures, both ANN
    baselines and the crossover rates under `memory` (a memory preset, a file or a MemoryProfile), and
    notes. `source` describes the batches; `progress(done, total)` is called after every batch."""
    energy_profile = profile if isinstance(profile, EnergyProfile) else resolve_profile(profile)
    memory_profile = memory if isinstance(memory, MemoryProfile) else resolve_memory(memory)
    xs = _input_list(batches)
    forms = FORMS if include_inference or not is_training_form(model) else ("train",)
    measured = measured_forms(model, forms, fallback=True)
    counts = count_forms(measured.models, xs, progress=progress)
    ann = ann_layers(measured.ann, xs[0][:1])
    inputs = {"source": source, "images": counts[0].images, "batches": len(xs)}
    notes = [*measured.notes, NOT_COUNTED]
    if any(isinstance(m, MAX_POOLS) for m in model.modules()):
        notes.append(MAX_POOLED)
    return EnergyReport(energy_profile, counts, sum(x.macs for x in ann), sum(x.adds for x in ann), inputs, notes,
                        memory_report(counts, ann, energy_profile, memory_profile), ann)
