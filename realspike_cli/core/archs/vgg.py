"""VGG16 (configuration D) with BatchNorm and average pooling, as in the Real Spike line of work.

Variants are data: a cfg list of channel counts and "P" (average pool), as torchvision does.
"""

from __future__ import annotations

from torch import nn

from realspike_cli.core.archs.small import scaled
from realspike_cli.core.layers import SpikingNetwork, conv_bn, spiking
from realspike_cli.core.registry import register_arch
from realspike_cli.core.specs import ModelSpec

CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"],
    "vgg16": [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"],
}


def build_vgg(spec: ModelSpec, cfg: list[int | str]) -> nn.Module:
    """A pooling stage is skipped once the map is 1×1, so inputs smaller than 32×32 still work."""
    width = float(spec.arch_kwargs.get("width", 1.0))
    h, w = spec.input_size
    first = scaled(int(cfg[0]), width)
    layers: list[nn.Module] = [spiking(spec, (first, h, w))]
    channels = first
    for item in cfg[1:]:
        if item == "P":
            if h >= 2 and w >= 2:
                layers.append(nn.AvgPool2d(2))
                h, w = max(1, h // 2), max(1, w // 2)
            continue
        out = scaled(int(item), width)
        layers += [conv_bn(channels, out), spiking(spec, (out, h, w))]
        channels = out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, spec.num_classes))
    return SpikingNetwork(spec, conv_bn(spec.in_channels, first), nn.Sequential(*layers), head)


@register_arch(
    "vgg16",
    description="VGG16 cfg D, BN, average pooling, one Linear(512, classes)",
    source="Simonyan & Zisserman 2015; spiking form as in Guo et al. 2022",
)
def vgg16(spec: ModelSpec) -> nn.Module:
    return build_vgg(spec, CFGS["vgg16"])


@register_arch(
    "vgg11",
    description="VGG11 cfg A, BN, average pooling; a lighter sibling for quick experiments",
    source="Simonyan & Zisserman 2015",
)
def vgg11(spec: ModelSpec) -> nn.Module:
    return build_vgg(spec, CFGS["vgg11"])
