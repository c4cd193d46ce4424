"""Spiking ResNets: ResNet19 and ResNet20 (CIFAR, LIF) and SEW-ResNet18/34 (ImageNet, IF, ADD connections).

ResNet19 follows TET/MPBN (stem conv3x3-128, BasicBlocks [3, 3, 2] at 128/256/512); ResNet20 is the
"modified" variant of Rathi et al. 2020 (three conv3x3-64 stem, average pool, [2, 2, 2, 2] at
64/128/256/512, average-pool downsampling shortcuts); SEW-ResNet follows Fang et al. 2021.
"""

from __future__ import annotations

import torch
from torch import nn

from realspike_cli.core.archs.small import scaled
from realspike_cli.core.layers import SpikingNetwork, conv_bn, conv_out, spiking
from realspike_cli.core.registry import register_arch
from realspike_cli.core.specs import ModelSpec


class BasicBlock(nn.Module):
    """Spiking BasicBlock: the residual sum enters the second neuron (Zheng et al. 2021 style)."""

    def __init__(
        self, spec: ModelSpec, c_in: int, c_out: int, stride: int, size: tuple[int, int], pooled_shortcut: bool
    ) -> None:
        super().__init__()
        h, w = (conv_out(s, 3, stride, 1) for s in size)
        self.out_size = (h, w)
        self.conv1 = conv_bn(c_in, c_out, 3, stride)
        self.act1 = spiking(spec, (c_out, h, w))
        self.conv2 = conv_bn(c_out, c_out, 3, 1)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            if pooled_shortcut and stride != 1:
                # ceil_mode keeps odd-sized maps aligned with the stride-2 conv path
                pool = nn.AvgPool2d(stride, stride, ceil_mode=True)
                self.shortcut = nn.Sequential(pool, conv_bn(c_in, c_out, 1, 1, 0))
            else:
                self.shortcut = conv_bn(c_in, c_out, 1, stride, 0)
        self.act2 = spiking(spec, (c_out, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.act2(self.conv2(self.act1(self.conv1(x))) + identity)


class SEWBlock(nn.Module):
    """SEW BasicBlock with the ADD connection: spikes(F(x)) + x, no neuron after the sum (Fang et al. 2021)."""

    def __init__(self, spec: ModelSpec, c_in: int, c_out: int, stride: int, size: tuple[int, int]) -> None:
        super().__init__()
        h, w = (conv_out(s, 3, stride, 1) for s in size)
        self.out_size = (h, w)
        self.conv1 = conv_bn(c_in, c_out, 3, stride)
        self.act1 = spiking(spec, (c_out, h, w))
        self.conv2 = conv_bn(c_out, c_out, 3, 1)
        self.act2 = spiking(spec, (c_out, h, w))
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(conv_bn(c_in, c_out, 1, stride, 0), spiking(spec, (c_out, h, w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.act2(self.conv2(self.act1(self.conv1(x)))) + identity


def _stages(
    spec: ModelSpec,
    block: str,
    c_in: int,
    widths: list[int],
    depths: list[int],
    strides: list[int],
    size: tuple[int, int],
) -> tuple[nn.Sequential, int]:
    blocks: list[nn.Module] = []
    for width, depth, stride in zip(widths, depths, strides, strict=True):
        for i in range(depth):
            s = stride if i == 0 else 1
            if block == "sew":
                b: nn.Module = SEWBlock(spec, c_in, width, s, size)
            else:
                b = BasicBlock(spec, c_in, width, s, size, pooled_shortcut=block == "pooled")
            blocks.append(b)
            c_in, size = width, b.out_size
    return nn.Sequential(*blocks), c_in


def _classifier(channels: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))


@register_arch(
    "resnet19",
    description="stem conv3x3-128, BasicBlocks [3,3,2] at 128/256/512, GAP, Linear(512, classes)",
    source="Zheng et al. 2021 (tdBN); Deng et al. 2022 (TET); Guo et al. 2023 (MPBN)",
)
def resnet19(spec: ModelSpec) -> nn.Module:
    width = float(spec.arch_kwargs.get("width", 1.0))
    widths = [scaled(c, width) for c in (128, 256, 512)]
    h, w = spec.input_size
    stages, c = _stages(spec, "conv", widths[0], widths, [3, 3, 2], [1, 2, 2], (h, w))
    body = nn.Sequential(spiking(spec, (widths[0], h, w)), stages)
    return SpikingNetwork(spec, conv_bn(spec.in_channels, widths[0]), body, _classifier(c, spec.num_classes))


@register_arch(
    "resnet20",
    description="stem 3× conv3x3-64 + avgpool, BasicBlocks [2,2,2,2] at 64/128/256/512, pooled shortcuts",
    source="Rathi et al. 2020 (modified ResNet20); Guo et al. 2022",
)
def resnet20(spec: ModelSpec) -> nn.Module:
    width = float(spec.arch_kwargs.get("width", 1.0))
    c0 = scaled(64, width)
    widths = [scaled(c, width) for c in (64, 128, 256, 512)]
    h, w = spec.input_size
    pre = nn.Sequential(
        spiking(spec, (c0, h, w)),
        conv_bn(c0, c0),
        spiking(spec, (c0, h, w)),
        conv_bn(c0, c0),
        spiking(spec, (c0, h, w)),
        nn.AvgPool2d(2),
    )
    stages, c = _stages(spec, "pooled", c0, widths, [2, 2, 2, 2], [1, 2, 2, 2], (h // 2, w // 2))
    body = nn.Sequential(pre, stages)
    return SpikingNetwork(spec, conv_bn(spec.in_channels, c0), body, _classifier(c, spec.num_classes))


def _sew_resnet(spec: ModelSpec, depths: list[int]) -> nn.Module:
    width = float(spec.arch_kwargs.get("width", 1.0))
    widths = [scaled(c, width) for c in (64, 128, 256, 512)]
    h, w = (conv_out(s, 7, 2, 3) for s in spec.input_size)
    stem_act = spiking(spec, (widths[0], h, w))
    h, w = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
    stages, c = _stages(spec, "sew", widths[0], widths, depths, [1, 2, 2, 2], (h, w))
    body = nn.Sequential(stem_act, nn.MaxPool2d(3, 2, 1), stages)
    stem = conv_bn(spec.in_channels, widths[0], 7, 2, 3)
    return SpikingNetwork(spec, stem, body, _classifier(c, spec.num_classes))


@register_arch(
    "sew_resnet18",
    default_neuron="if",
    description="SEW-ResNet18 (ADD), IF neurons, ImageNet stem conv7x7/2 + maxpool",
    source="Fang et al. 2021, Deep Residual Learning in Spiking Neural Networks",
)
def sew_resnet18(spec: ModelSpec) -> nn.Module:
    return _sew_resnet(spec, [2, 2, 2, 2])


@register_arch(
    "sew_resnet34",
    default_neuron="if",
    description="SEW-ResNet34 (ADD), IF neurons, ImageNet stem conv7x7/2 + maxpool",
    source="Fang et al. 2021, Deep Residual Learning in Spiking Neural Networks",
)
def sew_resnet34(spec: ModelSpec) -> nn.Module:
    return _sew_resnet(spec, [3, 4, 6, 3])
