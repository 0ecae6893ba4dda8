"""MobileNetV2 (Sandler et al. 2018): inverted residuals with depthwise 3x3 convs."""

from __future__ import annotations

import functools

from torch import Tensor, nn

from .common import can_halve, check_input, conv_bn

# (expansion t, output channels c, repeats n, stride s) per stage, as in the paper's
# Table 2 but cut to four stages and a 3x3 stride-1 stem: small images have no
# resolution to spare for the 224x224 schedule.
_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 2, 2),
    (6, 64, 2, 2),
)
_STEM = 16
_LAST = 128


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10%, as
    the reference implementation does, so width multipliers give hardware-friendly sizes."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# Conv-BN-ReLU6 except the linear projection (act=None), as in the paper.
_RELU6 = functools.partial(nn.ReLU6, inplace=True)


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise 3x3 -> linear 1x1 project, with a skip when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn(in_ch, hidden, 1, act=_RELU6))
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden, act=_RELU6),
            conv_bn(hidden, out_ch, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.use_skip else out


class MobileNetV2(nn.Module):
    """MobileNetV2 whose channel counts scale with ``width_mult``.

    A stage strides only while at least 2x2 would remain, and global average
    pooling feeds the classifier, so 8x8 inputs work.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        c, h, w = check_input(input_shape, num_classes)
        if width_mult <= 0:
            raise ValueError(f"mobilenet needs width_mult > 0, got {width_mult}")
        in_ch = make_divisible(_STEM * width_mult)
        layers: list[nn.Module] = [conv_bn(c, in_ch, 3, act=_RELU6)]
        for expansion, channels, repeats, stage_stride in _STAGES:
            out_ch = make_divisible(channels * width_mult)
            stride = 2 if stage_stride == 2 and can_halve(h, w) else 1
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2
            for i in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, expansion))
                in_ch = out_ch
        # Like the paper, the last 1x1 conv is not thinned below its base width.
        last = make_divisible(_LAST * max(1.0, width_mult))
        layers.append(conv_bn(in_ch, last, 1, act=_RELU6))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
