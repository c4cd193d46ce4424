"""The one spike recorder: forward hooks on every spiking neuron of a model, counting what it emits.

Used by evaluation (firing rates), energy (per-position event maps), the equivalence check (outputs outside a
neuron's alphabet: {0, 1}, or {−1, 0, 1} for ternary spikes) and the NIR export check (per-sample spike
counts). Spikes are counted as |s|: a −1 spike is an event too. Tensors are time-folded [T·B, ...].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from realspike_cli.core.graph import is_spiking_neuron
from realspike_cli.core.neuron import RealSpike

# An event map: key -> (neuron name, modules applied to its spikes first, e.g. a max pool: still spikes)
EventSources = Mapping[str, tuple[str, Sequence[nn.Module]]]


class SpikeRecorder:
    """Spikes and neuron-steps per neuron layer, summed over every forward call while it is open.

    Optional: `event_maps` — per-position event counts (summed over batch and time) of each source, a neuron's
    spikes or a binary function of them; `per_sample` — spikes per sample (each call's batch appended);
    `check_alphabet` — `outside_alphabet`: names of the neurons whose output is not in their own alphabet
    (`neuron.spike_values`) and of RealSpike modules (a coefficient left unfolded, emitting a·s) whose output
    is not in their setting's; `non_binary`: the same layers' outputs not in {0, 1} (a ternary neuron's −1s
    too), each in the order first seen. Use as a context manager (hooks removed on exit) or call `close()`.
    """

    def __init__(self, model: nn.Module, *, event_maps: EventSources | None = None, per_sample: bool = False,
                 check_alphabet: bool = False) -> None:
        self.neurons = {name: m for name, m in model.named_modules() if is_spiking_neuron(m)}
        self.spikes = dict.fromkeys(self.neurons, 0.0)
        self.steps = dict.fromkeys(self.neurons, 0)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.maps: dict[str, torch.Tensor] = {}
        self.samples: dict[str, torch.Tensor] = {}
        self.non_binary: list[str] = []
        self.outside_alphabet: list[str] = []
        self._derived: dict[str, list[tuple[str, Sequence[nn.Module]]]] = {name: [] for name in self.neurons}
        for key, (neuron, prefix) in (event_maps or {}).items():
            self._derived[neuron].append((key, prefix))
        self._per_sample, self._check = per_sample, check_alphabet
        watched = [(name, m, self._neuron_hook(name)) for name, m in self.neurons.items()]
        if check_alphabet:
            watched += [(name, m, self._alphabet_hook(name, m.setting.spike_values)) for name, m in
                        model.named_modules() if isinstance(m, RealSpike)]  # left unfolded: it emits a·s
        self._handles = [m.register_forward_hook(hook) for _, m, hook in watched]

    def __enter__(self) -> SpikeRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def rates(self) -> dict[str, float]:
        """Spikes per neuron per step of every layer that ran."""
        return {name: self.spikes[name] / self.steps[name] for name in self.neurons if self.steps[name]}

    def _neuron_hook(self, name: str) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def record(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            o = out.detach()
            magnitude = o.abs()  # ternary spikes: a −1 is an event too
            self.spikes[name] += float(magnitude.sum(dtype=torch.float64))
            self.steps[name] += o.numel()
            self.shapes[name] = tuple(o.shape[1:])
            if self._check:
                self._note_values(name, o, module.spike_values)
            if self._per_sample:  # [T·B, ...] -> spikes per sample, summed over time and neurons
                counts = magnitude.unflatten(0, (module.time_steps, -1)).flatten(2).sum((0, 2), dtype=torch.float64)
                self.samples[name] = torch.cat([self.samples[name], counts]) if name in self.samples else counts
            for key, prefix in self._derived[name]:
                y = o
                for p in prefix:  # max pooling of spikes: spikes of the same alphabet again
                    y = p(y)
                events = y.ne(0).sum(0, dtype=torch.float64)
                self.maps[key] = events + self.maps[key] if key in self.maps else events

        return record

    def _alphabet_hook(self, name: str, values: Sequence[float]) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def record(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            self._note_values(name, out.detach(), values)

        return record

    def _note_values(self, name: str, out: torch.Tensor, alphabet: Sequence[float]) -> None:
        binary = (out == 0) | (out == 1)
        if name not in self.non_binary and not binary.all():
            self.non_binary.append(name)
        if name not in self.outside_alphabet:
            inside = binary if tuple(alphabet) == (0.0, 1.0) else torch.isin(out, out.new_tensor(alphabet))
            if not inside.all():
                self.outside_alphabet.append(name)
