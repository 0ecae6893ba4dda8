"""EfficientNet-B0 as in the CIFAR reference: stem stride 1, MBConv blocks with SE."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..common import check_input, conv_bn
from .common import classifier

# (expansion, output channels, repeats, kernel, first stride) per stage.
_B0: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 3, 1), (6, 24, 2, 3, 2), (6, 40, 2, 5, 2), (6, 80, 3, 3, 2),
    (6, 112, 3, 5, 1), (6, 192, 4, 5, 2), (6, 320, 1, 3, 1),
)
_SE_RATIO = 0.25
_DROPOUT = 0.2


class SqueezeExcite(nn.Module):
    """Channel gates from the pooled map: 1x1 conv -> act -> 1x1 conv -> sigmoid."""

    def __init__(self, channels: int, squeezed: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, squeezed, 1),
            act(),
            nn.Conv2d(squeezed, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class MBConv(nn.Module):
    """(1x1 expand) -> depthwise kxk -> SE -> linear 1x1, with an identity skip when
    the shape is kept. The SE width is a quarter of the block's *input* channels."""

    def __init__(
        self, in_ch: int, out_ch: int, expansion: int, kernel: int, stride: int
    ) -> None:
        super().__init__()
        hidden = expansion * in_ch
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn(in_ch, hidden, 1, act=nn.SiLU))
        layers += [
            conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcite(hidden, int(in_ch * _SE_RATIO), nn.SiLU),
            conv_bn(hidden, out_ch, 1, act=None),
        ]
        self.body = nn.Sequential(*layers)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out + x if self.skip else out


class EfficientNetB0(nn.Module):
    """Adaptive pooling at the end, so any image size works (32x32 is the study's).

    The reference computes a drop-connect rate that is always 0 (its block counter is
    never advanced), so drop-connect is left out; dropout 0.2 before the classifier
    is kept. Its first block also builds a 1x1 expansion conv it never runs; that dead
    layer is not built here (1,088 parameters fewer; MACs are the same).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = check_input(input_shape, num_classes)
        layers: list[nn.Module] = [conv_bn(c, 32, act=nn.SiLU)]
        in_ch = 32
        for expansion, out_ch, repeats, kernel, stride in _B0:
            for i in range(repeats):
                layers.append(MBConv(in_ch, out_ch, expansion, kernel, stride if i == 0 else 1))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = classifier(in_ch, num_classes, dropout=_DROPOUT)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
