"""VGG19 with BatchNorm and a single linear classifier (the CIFAR variant)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .common import require_cifar_size

# Conv widths per block; every block ends in a 2x2 max-pool (five halvings: 32 -> 1).
_VGG19: tuple[tuple[int, ...], ...] = (
    (64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)
)


class VGG19(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        in_ch, _, _ = require_cifar_size(
            "vgg19", input_shape, num_classes,
            "five 2x2 max-pools must leave a 1x1 map of 512 features for its linear layer",
        )
        layers: list[nn.Module] = []
        for widths in _VGG19:
            for width in widths:
                layers += [
                    nn.Conv2d(in_ch, width, 3, padding=1),  # biased, as in the reference
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_ch = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
