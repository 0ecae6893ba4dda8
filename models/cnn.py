"""A plain LeNet-style CNN: the cheapest convolutional baseline."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .common import can_halve, check_input, fc_head, int_tuple


class SimpleCNN(nn.Module):
    """One 3x3 conv + ReLU (+ 2x2 max-pool while the map is big enough) per entry of
    ``channels``, then flatten -> Linear(``hidden``) -> ReLU -> Linear classifier.

    No normalisation layers, so it behaves the same in train and eval mode.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
    ) -> None:
        super().__init__()
        c, h, w = check_input(input_shape, num_classes)
        if hidden < 1:
            raise ValueError(f"cnn needs hidden >= 1, got {hidden}")
        layers: list[nn.Module] = []
        for out in int_tuple("channels", channels):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=True)]
            if can_halve(h, w, min_size=1):
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = fc_head(c * h * w, hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
