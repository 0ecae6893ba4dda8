"""DPN-26: Dual Path Networks (Chen et al. 2017), residual and dense paths in one block."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..common import conv_bn
from .common import classifier, projection, require_cifar_size
from .grouped import grouped_bottleneck

# (bottleneck width, residual width, blocks, dense growth) per stage; 32 groups.
_DPN26: tuple[tuple[int, int, int, int], ...] = (
    (96, 256, 2, 16), (192, 512, 2, 32), (384, 1024, 2, 24), (768, 2048, 2, 128),
)
_GROUPS = 32


class DualPathBlock(nn.Module):
    """A grouped bottleneck whose first ``residual`` output channels are added to the
    shortcut (residual path) and whose last ``growth`` are appended (dense path)."""

    def __init__(
        self, in_ch: int, mid: int, residual: int, growth: int, stride: int, first: bool
    ) -> None:
        super().__init__()
        self.residual = residual
        self.body = grouped_bottleneck(in_ch, mid, residual + growth, stride, _GROUPS)
        self.shortcut = projection(in_ch, residual + growth, stride) if first else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out, x = self.body(x), self.shortcut(x)
        d = self.residual
        merged = torch.cat([x[:, :d] + out[:, :d], x[:, d:], out[:, d:]], 1)
        return self.relu(merged)


class DPN26(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size(
            "dpn26", input_shape, num_classes,
            "three stride-2 stages must leave the 4x4 map its 4x4 average pool expects",
        )
        layers: list[nn.Module] = [conv_bn(c, 64)]
        in_ch = 64
        for stage, (mid, residual, blocks, growth) in enumerate(_DPN26):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(DualPathBlock(in_ch, mid, residual, growth, stride, first=i == 0))
                in_ch = residual + (i + 2) * growth
        self.features = nn.Sequential(*layers)
        self.head = classifier(in_ch, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
