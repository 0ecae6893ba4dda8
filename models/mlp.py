"""Multi-layer perceptron on flattened pixels: the baseline with analytically known MACs."""

from __future__ import annotations

from torch import Tensor, nn

from .common import check_input


class MLP(nn.Module):
    """Flatten -> ``depth`` x (Linear, ReLU) of width ``hidden`` -> Linear classifier.

    ``depth=0`` is multinomial logistic regression. MACs per sample are exactly
    ``in*hidden + (depth-1)*hidden**2 + hidden*classes`` (``in*classes`` when depth=0).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        hidden: int = 128,
        depth: int = 2,
    ) -> None:
        super().__init__()
        c, h, w = check_input(input_shape, num_classes)
        if hidden < 1 or depth < 0:
            raise ValueError(f"mlp needs hidden >= 1 and depth >= 0, got {hidden=}, {depth=}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
