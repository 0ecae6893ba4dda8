"""Image classifiers sized from a dataset's input shape, plus their size and compute.

``build_model(name, input_shape, num_classes, **options)`` is the entry point; the
options of each architecture mirror ``conf/model/<name>.yaml``.
"""

from .build import MODEL_NAMES, build_model, model_options
from .info import ModelInfo, describe_model

__all__ = ["MODEL_NAMES", "ModelInfo", "build_model", "describe_model", "model_options"]
