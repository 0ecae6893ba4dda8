"""GoogLeNet (Inception v1) for CIFAR: a 3x3 stem instead of the ImageNet stem."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .common import classifier, require_cifar_size

# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) of each Inception module;
# None marks a 3x3 stride-2 max-pool between groups.
_MODULES: tuple[tuple[int, ...] | None, ...] = (
    (192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), None,
    (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128), None,
    (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128),
)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int) -> list[nn.Module]:
    """Biased conv + BN + ReLU, as every GoogLeNet conv in the reference."""
    return [nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True)]


class Inception(nn.Module):
    """Four parallel branches concatenated; the '5x5' branch is two 3x3 convs."""

    def __init__(
        self, in_ch: int, n1: int, n3_red: int, n3: int, n5_red: int, n5: int, pool: int
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(*conv_bn_relu(in_ch, n1, 1)),
            nn.Sequential(*conv_bn_relu(in_ch, n3_red, 1), *conv_bn_relu(n3_red, n3, 3)),
            nn.Sequential(
                *conv_bn_relu(in_ch, n5_red, 1), *conv_bn_relu(n5_red, n5, 3),
                *conv_bn_relu(n5, n5, 3),
            ),
            nn.Sequential(nn.MaxPool2d(3, 1, 1), *conv_bn_relu(in_ch, pool, 1)),
        ])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


class GoogLeNet(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size(
            "googlenet", input_shape, num_classes,
            "two stride-2 max-pools must leave the 8x8 map its 8x8 average pool expects",
        )
        layers: list[nn.Module] = conv_bn_relu(c, 192, 3)
        for spec in _MODULES:
            layers.append(nn.MaxPool2d(3, 2, 1) if spec is None else Inception(*spec))
        self.features = nn.Sequential(*layers)
        self.head = classifier(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
