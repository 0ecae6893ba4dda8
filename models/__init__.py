"""Image classifiers sized from a dataset's input shape, plus their size and compute.

``build_model(name, input_shape, num_classes, **options)`` is the entry point; the
options of each architecture mirror ``conf/model/<name>.yaml``. The names are importable
without torch; the builders load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .names import MODEL_NAMES

if TYPE_CHECKING:
    from .build import build_model, model_options
    from .info import LayerInfo, ModelInfo, describe_layers, describe_model

_LAZY = {
    "build_model": ".build", "model_options": ".build",
    "ModelInfo": ".info", "describe_model": ".info",
    "LayerInfo": ".info", "describe_layers": ".info",
}

__all__ = ["MODEL_NAMES", "LayerInfo", "ModelInfo", "build_model", "describe_layers",
           "describe_model", "model_options"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
