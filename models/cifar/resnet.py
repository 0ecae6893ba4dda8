"""ResNet18, PreActResNet18 and SENet18: four stages of two 3x3 residual blocks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from ..common import conv_bn
from .common import Residual, classifier, projection, require_cifar_size

_WIDTHS = (64, 128, 256, 512)
_BLOCKS = (2, 2, 2, 2)
_POOL_WHY = "three stride-2 stages must leave the 4x4 map its 4x4 average pool expects"

BlockFactory = Callable[[int, int, int], nn.Module]


class BasicBlock(Residual):
    """conv-BN-ReLU, conv-BN, plus the input (projected when the shape changes), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        body = nn.Sequential(
            conv_bn(in_ch, out_ch, 3, stride), conv_bn(out_ch, out_ch, 3, act=None)
        )
        super().__init__(body, in_ch, out_ch, stride)


class PreActBlock(nn.Module):
    """BN-ReLU before each conv (He et al. 2016b); the projection shortcut, a bare 1x1
    conv, reads the pre-activated input. ``squeeze`` adds SENet's channel gate (a
    sixteenth of the width) to the residual branch."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, *, squeeze: bool = False) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
        )
        self.shortcut = (
            projection(in_ch, out_ch, stride, bn=False) if stride != 1 or in_ch != out_ch
            else None
        )
        self.gate = (
            nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(out_ch, out_ch // 16, 1), nn.ReLU(inplace=True),
                nn.Conv2d(out_ch // 16, out_ch, 1), nn.Sigmoid(),
            )
            if squeeze else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.pre(x)
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.body(out)
        if self.gate is not None:
            out = out * self.gate(out)
        return out + shortcut


def stages(block: BlockFactory, in_ch: int) -> nn.Sequential:
    """ResNet18's body: widths 64-512, two blocks each, stride 2 from the second stage."""
    layers: list[nn.Module] = []
    for stage, (width, count) in enumerate(zip(_WIDTHS, _BLOCKS, strict=True)):
        for i in range(count):
            layers.append(block(in_ch, width, 2 if stage > 0 and i == 0 else 1))
            in_ch = width
    return nn.Sequential(*layers)


class ResNet18(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size("resnet18", input_shape, num_classes, _POOL_WHY)
        self.features = nn.Sequential(conv_bn(c, 64), stages(BasicBlock, 64))
        self.head = classifier(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class PreActResNet18(nn.Module):
    """A bare conv stem and no final BN-ReLU, exactly as the CIFAR reference."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size("preactresnet18", input_shape, num_classes, _POOL_WHY)
        self.features = nn.Sequential(
            nn.Conv2d(c, 64, 3, 1, 1, bias=False), stages(PreActBlock, 64)
        )
        self.head = classifier(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class SENet18(nn.Module):
    """PreActResNet18's blocks with squeeze-and-excitation, behind a conv-BN-ReLU stem."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size("senet18", input_shape, num_classes, _POOL_WHY)

        def block(in_ch: int, out_ch: int, stride: int) -> nn.Module:
            return PreActBlock(in_ch, out_ch, stride, squeeze=True)

        self.features = nn.Sequential(conv_bn(c, 64), stages(block, 64))
        self.head = classifier(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
