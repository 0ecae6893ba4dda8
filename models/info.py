"""Size and compute of a model: the denominators of energy-per-work metrics."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

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
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    sample = torch.zeros(1, *input_shape, device=device, dtype=dtype)
    modes = {module: module.training for module in model.modules()}
    written = [0]

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        written[0] += sum(t.numel() for t in _tensors(output))

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if next(m.children(), None) is None]
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), _countable_attention(), counter, PtflopsCounter(model) as study:
            model(sample)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    return ModelInfo(params=params, macs_per_sample=counter.get_total_flops() / 2,
                     activations_per_sample=float(written[0]),
                     macs_ptflops_per_sample=study.macs)


def _tensors(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, list | tuple):
        return [t for item in output for t in _tensors(item)]
    return []
