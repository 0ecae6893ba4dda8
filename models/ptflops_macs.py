"""MACs in the convention of ptflops (its default PyTorch backend), the counter the study used
(its utils/model_parameters.py), so MACs-based figures can be put beside the study's.

sweeper's own `macs_per_sample` counts what torch.utils.flop_counter sees: matmuls,
convolutions and attention. ptflops also counts, per forward pass:

- layers by their exact type, each call: convolutions and Linear with their bias,
  BatchNorm/InstanceNorm/GroupNorm/LayerNorm (2 x elements when affine, else 1 x), ReLU-like
  activations and pooling (1 x elements), Upsample, MultiheadAttention; a counted layer's
  children are not visited;
- calls of some functions (F.relu, F.avg_pool2d, F.adaptive_avg_pool2d, F.softmax, ...,
  torch.add, torch.mul, the matmuls), wherever they are called: also inside a counted layer
  (nn.ReLU calls F.relu, so ptflops counts it twice), never as operators (`a + b` is not
  counted; see FUNCTIONS for the one difference, explicit method calls such as x.add(y)).

The layers are counted with forward hooks and the functions with a TorchFunctionMode, which
sees each call as ptflops' patched functions do. tests/test_cifar_models.py compares the
figures with ptflops itself for the study's 14 networks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.overrides import TorchFunctionMode

Hook = Callable[[nn.Module, tuple, Any], float]


def _numel(t: torch.Tensor) -> float:
    return float(t.numel())


def _conv(m: nn.Module, inputs: tuple, out: torch.Tensor, transpose: bool = False) -> float:
    x = inputs[0]
    per_position = math.prod(m.kernel_size) * m.in_channels * (m.out_channels // m.groups)
    positions = x.shape[0] * math.prod((x if transpose else out).shape[2:])
    bias = x.shape[0] * math.prod(out.shape[1:]) if m.bias is not None else 0
    return float(per_position * positions + bias)


def _linear(m: nn.Module, inputs: tuple, out: torch.Tensor) -> float:
    x = inputs[0]
    bias = out.shape[-1] if m.bias is not None else 0
    return float((x.shape[-1] * out.shape[-1] + bias) * math.prod(x.shape[:-1]))


def _norm(m: nn.Module, inputs: tuple, _out: Any) -> float:
    return _numel(inputs[0]) * (2 if getattr(m, "affine", False) else 1)


def _activation(_m: nn.Module, _inputs: tuple, out: torch.Tensor) -> float:
    return _numel(out)


def _pool(_m: nn.Module, inputs: tuple, _out: Any) -> float:
    return _numel(inputs[0])


def _upsample(_m: nn.Module, _inputs: tuple, out: torch.Tensor) -> float:
    return float(out[0].shape[0] * math.prod(out[0].shape[1:]))


def _attention(m: nn.Module, inputs: tuple, _out: Any) -> float:
    q, k, v = inputs[:3]
    batch_first = getattr(m, "batch_first", False)
    batch, at = (q.shape[0], 1) if batch_first else (q.shape[1], 0)
    qdim, kdim, vdim = q.shape[2], k.shape[2], v.shape[2]
    qlen, klen, vlen = q.shape[at], k.shape[at], v.shape[at]
    heads = m.num_heads
    flops = qlen * qdim + qlen * qdim * qdim + klen * kdim * kdim + vlen * vdim * vdim
    if m.in_proj_bias is not None:
        flops += (qlen + klen + vlen) * qdim
    flops += heads * (qlen * klen * (qdim // heads) + qlen * klen + qlen * klen * (vdim // heads))
    flops += qlen * vdim * (vdim + 1)
    return float(flops * batch)


LAYERS: dict[type[nn.Module], Hook] = {
    **dict.fromkeys((nn.Conv1d, nn.Conv2d, nn.Conv3d), _conv),
    **dict.fromkeys((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
                    lambda m, i, o: _conv(m, i, o, transpose=True)),
    **dict.fromkeys((nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6, nn.GELU), _activation),
    **dict.fromkeys((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
                     nn.AvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                     nn.AdaptiveMaxPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                     nn.AdaptiveAvgPool3d), _pool),
    **dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d,
                     nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm), _norm),
    nn.Linear: _linear,
    nn.Upsample: _upsample,
    nn.MultiheadAttention: _attention,
}


def _first_numel(*args: Any, **_: Any) -> float:
    return _numel(args[0])


def _matmul(a: torch.Tensor, b: torch.Tensor, *_: Any, **__: Any) -> float:
    return float(math.prod(a.shape) * b.shape[-1])


def _addmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *_: Any, beta: float = 1,
           **__: Any) -> float:
    return float(math.prod(a.shape) * b.shape[-1] + (math.prod(c.shape) if beta != 0 else 0))


def _elementwise(a: Any, b: Any, *_: Any, **__: Any) -> float:
    if not torch.is_tensor(a):
        return float(math.prod(b.shape)) if torch.is_tensor(b) else 1.0
    if not torch.is_tensor(b):
        return float(math.prod(a.shape))
    return float(math.prod(torch.broadcast_shapes(a.shape, b.shape)))


def _interpolate(*args: Any, **kwargs: Any) -> float:
    x = kwargs.get("input", args[0] if args else None)
    size = kwargs.get("size", args[1] if len(args) > 1 else None)
    spatial = x.dim() - 2
    if size is not None:
        sizes = size if isinstance(size, list | tuple) else [size] * spatial
        return float(math.prod(sizes) * math.prod(x.shape[:2]))
    scale = kwargs.get("scale_factor", args[2] if len(args) > 2 else None)
    if isinstance(scale, tuple) and len(scale) == spatial:
        return _numel(x) * math.prod(int(s) for s in scale)
    return _numel(x) * scale**spatial


FUNCTIONS: dict[Callable[..., Any], Callable[..., float]] = {
    **dict.fromkeys((F.relu, F.prelu, F.elu, F.relu6, F.gelu, F.silu, F.softmax,
                     F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.max_pool1d, F.max_pool2d,
                     F.max_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
                     F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
                     F.adaptive_max_pool3d), _first_numel),
    **dict.fromkeys((F.upsample, F.interpolate), _interpolate),
    # ptflops also counts the method forms (x.add(y), x.mul(y), x.matmul(y), ...) but not the
    # operators (x + y, x * y, x @ y). A TorchFunctionMode sees both as the same method, so
    # neither is counted here: operators are what models use (the study's 14 networks
    # call no such method), and an explicit method call is the one case counted lower.
    **dict.fromkeys((torch.matmul, torch.mm, torch.bmm), _matmul),
    **dict.fromkeys((torch.addmm, torch.baddbmm), _addmm),
    **dict.fromkeys((torch.mul, torch.add), _elementwise),
}


class _Functions(TorchFunctionMode):
    """Counts the calls of FUNCTIONS; inside a call the mode is off, so a function that
    another calls is not counted twice."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0.0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        count = FUNCTIONS.get(func)
        if count is not None:
            self.macs += count(*args, **kwargs)
        return func(*args, **kwargs)


class PtflopsCounter:
    """Use as a context around one forward pass of a batch of one; `macs` afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._layers = 0.0
        self._functions = _Functions()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> PtflopsCounter:
        self._hook(self.model)
        self._functions.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._functions.__exit__(*exc)
        for handle in self._handles:
            handle.remove()

    def _hook(self, module: nn.Module) -> None:
        count = LAYERS.get(type(module))
        if count is None:
            for child in module.children():
                self._hook(child)
            return

        def hook(m: nn.Module, inputs: tuple, out: Any) -> None:
            self._layers += count(m, inputs, out)

        self._handles.append(module.register_forward_hook(hook))

    @property
    def macs(self) -> float:
        return self._layers + self._functions.macs
