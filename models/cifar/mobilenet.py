"""MobileNet (V1) and MobileNetV2 with the CIFAR strides (stem stride 1, 32x32 in)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..common import conv_bn
from .common import classifier, projection, require_cifar_size

# MobileNet V1: (output channels, stride) of each depthwise-separable block.
_V1: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
# MobileNetV2: (expansion, output channels, repeats, first stride); the second stage
# strides 1 instead of ImageNet's 2, as in the CIFAR reference.
_V2: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def separable(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, each with BatchNorm and ReLU."""
    return nn.Sequential(
        conv_bn(in_ch, in_ch, 3, stride, groups=in_ch), conv_bn(in_ch, out_ch, 1)
    )


class MobileNetV1(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size(
            "mobilenet_v1", input_shape, num_classes,
            "four stride-2 blocks and its 2x2 average pool must leave 1x1 for Linear(1024)",
        )
        layers: list[nn.Module] = [conv_bn(c, 32)]
        in_ch = 32
        for out_ch, stride in _V1:
            layers.append(separable(in_ch, out_ch, stride))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = classifier(in_ch, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise 3x3 -> linear 1x1; stride-1 blocks add a shortcut
    (a 1x1 projection when the width changes, as the CIFAR reference does)."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = expansion * in_ch
        self.body = nn.Sequential(
            conv_bn(in_ch, hidden, 1),  # present even at expansion 1, as in the reference
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, out_ch, 1, act=None),
        )
        self.shortcut: nn.Module | None = None
        if stride == 1:
            self.shortcut = nn.Identity() if in_ch == out_ch else projection(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out if self.shortcut is None else out + self.shortcut(x)


class MobileNetV2(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size(
            "mobilenetv2", input_shape, num_classes,
            "three stride-2 stages must leave the 4x4 map its 4x4 average pool expects",
        )
        layers: list[nn.Module] = [conv_bn(c, 32)]
        in_ch = 32
        for expansion, out_ch, repeats, stride in _V2:
            for i in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, expansion, stride if i == 0 else 1))
                in_ch = out_ch
        layers.append(conv_bn(in_ch, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.head = classifier(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
