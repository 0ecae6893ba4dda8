"""SimpleDLA: the CIFAR reference's simplified Deep Layer Aggregation (Yu et al. 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..common import conv_bn
from .common import classifier, require_cifar_size
from .resnet import BasicBlock


class Tree(nn.Module):
    """Two subtrees (or two BasicBlocks at level 1) whose outputs a 1x1 root merges."""

    def __init__(self, in_ch: int, out_ch: int, level: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.root = conv_bn(2 * out_ch, out_ch, 1)  # registered first, as in the reference
        self.left: nn.Module
        self.right: nn.Module
        if level == 1:
            self.left = BasicBlock(in_ch, out_ch, stride)
            self.right = BasicBlock(out_ch, out_ch, 1)
        else:
            self.left = Tree(in_ch, out_ch, level - 1, stride)
            self.right = Tree(out_ch, out_ch, level - 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        left = self.left(x)
        return self.root(torch.cat([left, self.right(left)], 1))


class SimpleDLA(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size(
            "simpledla", input_shape, num_classes,
            "three stride-2 trees must leave the 4x4 map its 4x4 average pool expects",
        )
        self.features = nn.Sequential(
            conv_bn(c, 16), conv_bn(16, 16), conv_bn(16, 32),
            Tree(32, 64, level=1, stride=1),
            Tree(64, 128, level=2, stride=2),
            Tree(128, 256, level=2, stride=2),
            Tree(256, 512, level=1, stride=2),
        )
        self.head = classifier(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
