"""Shape rules and conv building blocks shared by the study's CIFAR networks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..common import InputShape, check_input

CIFAR_SIZE = 32


def require_cifar_size(
    model: str, input_shape: Sequence[int], num_classes: int, why: str
) -> InputShape:
    """Return (C, H, W) if the images are 32x32, else refuse in one line saying why.

    Most of the reference definitions end in a fixed-size pool or linear layer, so
    they only fit 32x32 inputs; the channel count is free (the stem takes C).
    """
    c, h, w = check_input(input_shape, num_classes)
    if (h, w) != (CIFAR_SIZE, CIFAR_SIZE):
        raise ValueError(
            f"model {model!r} cannot take {c}x{h}x{w} inputs: it needs {CIFAR_SIZE}x{CIFAR_SIZE} "
            f"images (any channel count) because {why}; use dataset=cifar10 or "
            f"dataset=synthetic dataset.image_size={CIFAR_SIZE}"
        )
    return c, h, w


def projection(in_ch: int, out_ch: int, stride: int, *, bn: bool = True) -> nn.Module:
    """The 1x1 (strided) shortcut used where a residual's shape changes."""
    conv = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch)) if bn else conv


class Residual(nn.Module):
    """``relu(body(x) + shortcut(x))``: the shortcut is the input, projected by a 1x1
    (strided) conv where the body changes the shape."""

    def __init__(self, body: nn.Module, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.shortcut = (
            projection(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def classifier(in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Global average pool -> flatten -> (dropout) -> linear.

    At 32x32 the references' fixed pools (4x4, 8x8) cover the whole final map, so a
    global pool computes exactly the same thing.
    """
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)
