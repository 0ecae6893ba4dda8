"""Name -> architecture lookup with option checking, so config typos fail loudly."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from .cifar import CIFAR_ARCHITECTURES
from .cnn import SimpleCNN
from .mlp import MLP
from .mobilenet import MobileNetV2
from .names import MODEL_NAMES
from .resnet import ResNet
from .torchvision_models import torchvision_model
from .vgg import VGG
from .vit import ViT

# Each builder is called as builder(input_shape, num_classes, **keyword-only options).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    # Small architectures that adapt to any input size (8x8 digits to 32x32 CIFAR).
    "resnet": ResNet,
    "vit": ViT,
    "mobilenet": MobileNetV2,
    "vgg": VGG,
    "cnn": SimpleCNN,
    "mlp": MLP,
    # The study's 14 CIFAR-10 networks (most need 32x32 inputs).
    **CIFAR_ARCHITECTURES,
    # Any torchvision classification architecture, by name (model.arch).
    "torchvision": torchvision_model,
}
if tuple(ARCHITECTURES) != MODEL_NAMES:  # names.py is the torch-free copy config reads
    raise ImportError("sweeper.models.names.MODEL_NAMES is out of step with ARCHITECTURES")


def model_options(name: str) -> dict[str, Any]:
    """The size options ``name`` accepts, with their defaults."""
    signature = inspect.signature(_architecture(name))
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def build_model(
    name: str, input_shape: Sequence[int], num_classes: int, **options: Any
) -> nn.Module:
    """Build architecture ``name`` sized for ``input_shape`` (C, H, W) and ``num_classes``.

    ``options`` are the architecture's size knobs (see ``conf/model/<name>.yaml``);
    an unknown one raises ``TypeError`` naming it rather than being ignored.
    """
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"model {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed)}"
        )
    return _architecture(name)(tuple(input_shape), int(num_classes), **options)


def _architecture(name: str) -> Callable[..., nn.Module]:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; expected one of: {', '.join(MODEL_NAMES)}"
        ) from None
