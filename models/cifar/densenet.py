"""DenseNet-121 for CIFAR (growth 32, blocks 6-12-24-16, compression 0.5, 3x3 stem)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .common import classifier, require_cifar_size

_GROWTH = 32
_BLOCKS = (6, 12, 24, 16)
_REDUCTION = 0.5


def bn_relu_conv(in_ch: int, out_ch: int, kernel: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False)]


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (4 x growth) then BN-ReLU-3x3 (growth), concatenated to the input."""

    def __init__(self, in_ch: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *bn_relu_conv(in_ch, 4 * growth, 1), *bn_relu_conv(4 * growth, growth, 3)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.body(x), x], 1)


class DenseNet121(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size(
            "densenet121", input_shape, num_classes,
            "three transitions halve it to the 4x4 map its 4x4 average pool expects",
        )
        channels = 2 * _GROWTH
        layers: list[nn.Module] = [nn.Conv2d(c, channels, 3, padding=1, bias=False)]
        for i, count in enumerate(_BLOCKS):
            for _ in range(count):
                layers.append(DenseLayer(channels, _GROWTH))
                channels += _GROWTH
            if i < len(_BLOCKS) - 1:  # transition: compress, then halve the map
                out_ch = int(channels * _REDUCTION)
                layers += [*bn_relu_conv(channels, out_ch, 1), nn.AvgPool2d(2)]
                channels = out_ch
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = classifier(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
