"""Size and compute of a model: the denominators of energy-per-work metrics."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .ptflops_macs import PtflopsCounter


@dataclass(frozen=True)
class ModelInfo:
    """Parameter count and multiply-accumulates of one forward pass of one sample.

    `macs_per_sample` covers matmuls, convolutions and attention (what FlopCounterMode
    counts); element-wise ops such as BatchNorm, activations and pooling are not included.
    `macs_ptflops_per_sample` is the study's convention (ptflops, models/ptflops_macs.py),
    which adds them.
    """

    params: int
    macs_per_sample: float
    # Elements written by the leaf modules in one forward pass of one sample: a proxy for
    # the memory traffic that MACs do not see (BatchNorm, activations, concatenations).
    activations_per_sample: float = 0.0
    macs_ptflops_per_sample: float | None = None

    @property
    def flops_per_sample(self) -> float:
        return 2.0 * self.macs_per_sample

    @property
    def macs_per_param(self) -> float:
        """Arithmetic reuse of each weight: high for convs, about 1 for an MLP."""
        return self.macs_per_sample / self.params if self.params else 0.0


@contextmanager
def _countable_attention() -> Iterator[None]:
    """Route attention through ops FlopCounterMode understands.

    In eval mode ``nn.TransformerEncoderLayer`` takes a fused fast path, and CPU
    scaled-dot-product attention dispatches to a kernel, neither of which the
    counter has a formula for (both count as 0). The math backend and the slow path
    compute the same thing with plain matmuls.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def describe_model(model: nn.Module, input_shape: Sequence[int]) -> ModelInfo:
    """Count parameters and per-sample MACs (FLOPs / 2) with a 1-sample forward pass.

    The pass runs in eval mode under ``no_grad`` so BatchNorm statistics are left
    untouched; each submodule's train/eval flag is restored afterwards.
    """
    params = sum(p.numel() for p in model.parameters())
    written = [0]

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        written[0] += sum(t.numel() for t in _tensors(output))

    study = PtflopsCounter(model)  # the study's convention, counted in the same pass
    counter = _counted_forward(model, input_shape, {
        n: count for n, m in model.named_modules() if next(m.children(), None) is None},
        also=study)
    return ModelInfo(params=params, macs_per_sample=counter.get_total_flops() / 2,
                     activations_per_sample=float(written[0]),
                     macs_ptflops_per_sample=study.macs)


def _counted_forward(
    model: nn.Module, input_shape: Sequence[int], hooks: dict[str, Any],
    also: AbstractContextManager[Any] | None = None,
) -> FlopCounterMode:
    """One 1-sample forward pass in eval mode under ``no_grad``, counting FLOPs, with a
    forward hook on each named module in ``hooks`` (and inside ``also``, another counter);
    every module's train/eval flag and the hooks are restored afterwards."""
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    sample = torch.zeros(1, *input_shape, device=device, dtype=dtype)
    modes = {module: module.training for module in model.modules()}
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(hook) for name, hook in hooks.items()]
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), _countable_attention(), counter, also or nullcontext():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return counter


def _tensors(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, list | tuple):
        return [t for item in output for t in _tensors(item)]
    return []


# Leaf module kinds a layer-wise cost law tells apart (issue 24), by class name.
LAYER_KINDS = ("conv", "linear", "attention", "norm", "act", "pool", "other")
# Modules described as one layer, their children included: nn.MultiheadAttention computes
# its input projection from its own weights and calls its output projection's weights
# directly (the child's hooks never fire), so only the whole module is a layer.
_UNITS: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)
_ACTIVATIONS = ("relu", "gelu", "silu", "swish", "hardswish", "sigmoid", "tanh", "softmax",
                "mish", "elu", "hardtanh", "hardsigmoid")


@dataclass(frozen=True)
class LayerInfo:
    """One leaf module's work in a 1-sample forward pass: its MACs, the elements it reads
    and writes (what moves through memory), and its parameters."""

    name: str
    kind: str  # one of LAYER_KINDS
    macs: float
    elements_in: float
    elements_out: float
    params: int
    groups: int = 1  # a convolution's groups: depthwise and grouped kernels run far below
                     # a dense convolution's MACs per second, on CPUs and GPUs alike


def layer_kind(module: nn.Module) -> str:
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    name = type(module).__name__.lower()
    if "conv" in name:
        return "conv"
    if "linear" in name:
        return "linear"
    if "norm" in name:
        return "norm"
    if "pool" in name:
        return "pool"
    if any(a in name for a in _ACTIVATIONS):
        return "act"
    return "other"


def describe_layers(model: nn.Module, input_shape: Sequence[int]) -> list[LayerInfo]:
    """Every leaf module's work in a 1-sample forward pass (on the meta device it costs no
    compute: build the model under ``torch.device("meta")``). An nn.MultiheadAttention is
    one "attention" layer: its projections and the attention matmuls are its MACs, and the
    attention weights it materialises (heads x queries x keys) count among the elements it
    writes. MACs that FlopCounterMode gives no layer (functional ops in a container's
    forward) form one more "other" layer, so the layers' MACs add up to describe_model's."""
    seen: dict[str, tuple[float, float]] = {}
    leaves = _layer_modules(model)

    def hook(name: str) -> Any:
        def record(module: nn.Module, inputs: object, output: object) -> None:
            got_in = sum(t.numel() for t in _tensors(inputs))
            got_out = sum(t.numel() for t in _tensors(output)) + _attention_weights(
                module, inputs)
            before = seen.get(name, (0.0, 0.0))
            seen[name] = (before[0] + got_in, before[1] + got_out)
        return record

    counter = _counted_forward(model, input_shape, {n: hook(n) for n in leaves})
    counts = counter.get_flop_counts()
    root = type(model).__name__
    layers = []
    for name, module in leaves.items():
        if name not in seen:
            continue
        flops = sum(counts.get(f"{root}.{name}", {}).values())
        layers.append(LayerInfo(name, layer_kind(module), flops / 2, seen[name][0],
                                seen[name][1], sum(p.numel() for p in module.parameters()),
                                int(getattr(module, "groups", 1))))
    rest = counter.get_total_flops() / 2 - sum(layer.macs for layer in layers)
    if rest > 0.5:
        layers.append(LayerInfo("(not in a leaf)", "other", rest, 0.0, 0.0, 0))
    return layers


def _layer_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The modules described as layers: leaves, and the units (with their children)."""
    out: dict[str, nn.Module] = {}
    inside: set[nn.Module] = set()  # a unit's children (named_modules yields parents first)
    for name, module in model.named_modules():
        if module in inside:
            continue
        if isinstance(module, _UNITS):
            inside.update(module.modules())
            out[name] = module
        elif next(module.children(), None) is None:
            out[name] = module
    return out


def _attention_weights(module: nn.Module, inputs: object) -> float:
    """Elements of the attention weights an nn.MultiheadAttention call materialises per
    sample (heads x queries x keys); 0 for any other module."""
    if not isinstance(module, nn.MultiheadAttention):
        return 0.0
    tensors = _tensors(inputs)
    if len(tensors) < 2:
        return 0.0
    axis = 1 if module.batch_first and tensors[0].dim() == 3 else 0  # (T, d) unbatched
    return float(module.num_heads * tensors[0].shape[axis] * tensors[1].shape[axis])
