"""Shape checks, sizing rules and the classifier head shared by the architectures."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

InputShape = tuple[int, int, int]


def check_input(input_shape: Sequence[int], num_classes: int) -> InputShape:
    """Return ``input_shape`` as a (C, H, W) tuple, failing early on nonsense sizes."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width) >= 1, got {input_shape!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return shape  # type: ignore[return-value]


def int_tuple(name: str, values: Sequence[int] | int) -> tuple[int, ...]:
    """Coerce a config list (or Hydra ListConfig) of positive ints to a tuple."""
    if isinstance(values, int):
        values = (values,)
    out = tuple(int(v) for v in values)
    if not out or min(out) < 1:
        raise ValueError(f"{name} must be a non-empty list of positive ints, got {values!r}")
    return out


def can_halve(height: int, width: int, min_size: int = 2) -> bool:
    """Whether a stride-2 step still leaves at least ``min_size`` pixels per side.

    Tiny inputs (8x8 digits) run out of resolution after a few halvings, so the
    architectures only downsample while this holds and pool adaptively at the end.
    """
    return height // 2 >= min_size and width // 2 >= min_size


def fc_head(in_features: int, hidden: int, num_classes: int) -> nn.Sequential:
    """Flatten -> Linear(hidden) -> ReLU -> Linear: the classifier the conv nets share."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


def conv_bn(
    in_ch: int,
    out_ch: int,
    kernel: int = 3,
    stride: int = 1,
    *,
    groups: int = 1,
    act: Callable[[], nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm, then ``act`` unless it is None."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)
