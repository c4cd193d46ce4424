"""`small_convnet`: a two-conv SNN sized for 28×28 digits, the default for the embedded mnist10k data set."""

from __future__ import annotations

from torch import nn

from realspike_cli.core.layers import SpikingNetwork, conv_bn, spiking
from realspike_cli.core.registry import register_arch
from realspike_cli.core.specs import ModelSpec


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


@register_arch(
    "small_convnet",
    description="conv3x3-32, avgpool, conv3x3-64, avgpool, FC-256, FC-classes; for mnist10k",
    source="realspike (this project)",
)
def small_convnet(spec: ModelSpec) -> nn.Module:
    width = float(spec.arch_kwargs.get("width", 1.0))
    c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(256, width)
    h, w = spec.input_size
    body = nn.Sequential(
        spiking(spec, (c1, h, w)),
        nn.AvgPool2d(2),
        conv_bn(c1, c2),
        spiking(spec, (c2, h // 2, w // 2)),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * (h // 4) * (w // 4), hidden, bias=False),
        nn.BatchNorm1d(hidden),
        spiking(spec, (hidden,)),
    )
    return SpikingNetwork(spec, conv_bn(spec.in_channels, c1), body, nn.Linear(hidden, spec.num_classes))
