"""Building blocks shared by the architectures: conv+BN, time (un)folding, and the network skeleton.

Everything between the encoder and the decoder sees time folded into the batch, [T·B, ...], so convs,
BatchNorm and pooling run once over all steps and only neurons look at time.
"""

from __future__ import annotations

import torch
from torch import nn

from realspike_cli.core.neuron import SpikeActivation, tracing
from realspike_cli.core.specs import Encoding, ModelSpec


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    """A bias-free conv followed by BatchNorm (the bias would be absorbed by BN anyway)."""
    pad = kernel // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False), nn.BatchNorm2d(c_out))


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def spiking(spec: ModelSpec, feature_shape: tuple[int, ...]) -> SpikeActivation:
    """The model's neuron (LIF, IF or MPBN; binary or ternary spikes) and spike amplitude for a feature map
    of `feature_shape` (one sample): every architecture builds its neurons here (see docs/neurons.md)."""
    return SpikeActivation(spec.neuron, spec.time_steps, spec.spike, tuple(feature_shape))


class SpikingNetwork(nn.Module):
    """stem → body → head, with direct or frame encoding and the time-averaged output (Sec. 3.1).

    Direct encoding feeds the same image at every step, so the stem (first conv + BN, before any neuron)
    runs once on [B, ...] and its output is repeated T times; frame encoding runs it on every frame.
    """

    def __init__(self, spec: ModelSpec, stem: nn.Module, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.time_steps = spec.time_steps
        self.direct = spec.encoding is Encoding.DIRECT
        self.stem, self.body, self.head = stem, body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.direct:
            x = self.stem(x)
            if not tracing() and _is_channels_last(x):
                x = repeat_channels_last(x, self.time_steps)
            else:
                x = x.repeat(self.time_steps, 1, 1, 1)  # [T·B, C, H, W], time-major
        else:  # [B, T, C, H, W] event frames -> [T·B, C, H, W]
            x = self.stem(x.transpose(0, 1).flatten(0, 1))
        x = self.head(self.body(x))
        return x.unflatten(0, (self.time_steps, -1)).mean(0)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class _RepeatChannelsLast(torch.autograd.Function):
    """`x.repeat(times, 1, 1, 1)` that stays channels_last (`repeat` returns NCHW, so every layer after it
    converted: two [T·B, C, H, W] copies per step and one more in the neuron's backward pass)."""

    @staticmethod
    def forward(ctx, x, times: int):  # type: ignore[override]
        out = torch.empty((times * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
        out = out.contiguous(memory_format=torch.channels_last)
        batch = x.shape[0]
        for step in range(times):  # same-layout copies, a memcpy each (copying from an expand is 2× slower)
            out[step * batch : (step + 1) * batch].copy_(x)
        ctx.times = times
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad.unflatten(0, (ctx.times, -1)).sum(0), None


def repeat_channels_last(x: torch.Tensor, times: int) -> torch.Tensor:
    return _RepeatChannelsLast.apply(x, times)
