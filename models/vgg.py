"""VGG-style network: stacks of 3x3 conv + BatchNorm + ReLU separated by max-pooling."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .common import can_halve, check_input, fc_head, int_tuple


class VGG(nn.Module):
    """One block of ``convs_per_block`` 3x3 convs per entry of ``widths``.

    Each block ends in a 2x2 max-pool only while the map is at least 2x2, so the
    same config runs on 8x8 digits and 32x32 CIFAR; the classifier flattens what is
    left and applies Linear(``hidden``) -> ReLU -> Linear, as VGG's FC head does.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        widths: Sequence[int] = (16, 32, 64),
        convs_per_block: int = 2,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        c, h, w = check_input(input_shape, num_classes)
        if convs_per_block < 1 or hidden < 1:
            raise ValueError(
                f"vgg needs convs_per_block >= 1 and hidden >= 1, got {convs_per_block=}, {hidden=}"
            )
        layers: list[nn.Module] = []
        for out in int_tuple("widths", widths):
            for _ in range(convs_per_block):
                layers += [
                    nn.Conv2d(c, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                c = out
            if can_halve(h, w, min_size=1):
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.classifier = fc_head(c * h * w, hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
