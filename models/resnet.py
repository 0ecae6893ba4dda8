"""CIFAR-style ResNet (He et al. 2016, section 4.2) sized for small images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .common import can_halve, check_input, int_tuple


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem, then one stage per entry of ``blocks`` with ``width * 2**stage`` channels.

    Every stage after the first halves the resolution while at least 2x2 would
    remain, and adaptive average pooling feeds the classifier, so 8x8 inputs work.
    The default ``blocks=(1, 1, 1)`` is a ResNet-8; ``(3, 3, 3)`` is ResNet-20.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width: int = 16,
        blocks: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        c, h, w = check_input(input_shape, num_classes)
        if width < 1:
            raise ValueError(f"resnet needs width >= 1, got {width}")
        self.stem = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        in_ch = width
        for stage, count in enumerate(int_tuple("blocks", blocks)):
            out_ch = width * 2**stage
            stride = 2 if stage > 0 and can_halve(h, w) else 1
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2  # 3x3 conv, padding 1
            for i in range(count):
                layers.append(BasicBlock(in_ch, out_ch, stride if i == 0 else 1))
                in_ch = out_ch
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))
