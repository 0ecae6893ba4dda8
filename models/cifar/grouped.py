"""ResNeXt29 (2x64d) and RegNetX-200MF: residual bottlenecks with grouped 3x3 convs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..common import check_input, conv_bn
from .common import Residual, classifier, require_cifar_size


def grouped_bottleneck(
    in_ch: int, mid: int, out_ch: int, stride: int, groups: int
) -> nn.Sequential:
    """1x1 -> grouped 3x3 (strided) -> 1x1, BN after each, ReLU after the first two."""
    return nn.Sequential(
        conv_bn(in_ch, mid, 1),
        conv_bn(mid, mid, 3, stride, groups=groups),
        conv_bn(mid, out_ch, 1, act=None),
    )


class GroupedBlock(Residual):
    """A grouped bottleneck plus a (projected where the shape changes) shortcut, ReLU."""

    def __init__(self, in_ch: int, mid: int, out_ch: int, stride: int, groups: int) -> None:
        super().__init__(grouped_bottleneck(in_ch, mid, out_ch, stride, groups),
                         in_ch, out_ch, stride)


class ResNeXt29_2x64d(nn.Module):  # noqa: N801 (the published name)
    """Cardinality 2, bottleneck width 64 doubling per stage, 3 blocks per stage.

    The stem is a 1x1 conv, as in the CIFAR reference.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size(
            "resnext29_2x64d", input_shape, num_classes,
            "two stride-2 stages must leave the 8x8 map its 8x8 average pool expects",
        )
        cardinality, width = 2, 64
        layers: list[nn.Module] = [conv_bn(c, 64, 1)]
        in_ch = 64
        for stage in range(3):
            group_width = cardinality * width
            for i in range(3):
                stride = 2 if stage > 0 and i == 0 else 1
                out_ch = 2 * group_width
                layers.append(GroupedBlock(in_ch, group_width, out_ch, stride, cardinality))
                in_ch = out_ch
            width *= 2
        self.features = nn.Sequential(*layers)
        self.head = classifier(in_ch, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# RegNetX-200MF (Radosavovic et al. 2020): (depth, width, first stride) per stage,
# group width 8, bottleneck ratio 1, no SE; the CIFAR reference keeps stages 1-2 at stride 1.
_REGNETX_200MF: tuple[tuple[int, int, int], ...] = (
    (1, 24, 1), (1, 56, 1), (4, 152, 2), (7, 368, 2)
)
_GROUP_WIDTH = 8


class RegNetX_200MF(nn.Module):  # noqa: N801 (the published name)
    """Adaptive pooling at the end, so any image size works (32x32 is the study's)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = check_input(input_shape, num_classes)
        layers: list[nn.Module] = [conv_bn(c, 64)]
        in_ch = 64
        for depth, width, first_stride in _REGNETX_200MF:
            for i in range(depth):
                stride = first_stride if i == 0 else 1
                layers.append(GroupedBlock(in_ch, width, width, stride, width // _GROUP_WIDTH))
                in_ch = width
        self.features = nn.Sequential(*layers)
        self.head = classifier(in_ch, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
