"""LeNet-5 as the CIFAR study used it: two 5x5 convs, three linear layers."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .common import require_cifar_size


class LeNet(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, _, _ = require_cifar_size(
            "lenet", input_shape, num_classes,
            "its unpadded 5x5 convs and 2x2 pools must leave 16x5x5 features for Linear(400)",
        )
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
