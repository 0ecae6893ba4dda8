"""Time a catalog of single layers on this device: what mode=layers stores (issue 24).

The estimator's layer-time law (sweeper.predict.layer_time) is NeuralPower's idea: the
cost of a network is the sum of its layers' costs, and a layer's cost follows a per-kind
law of its work (MACs, elements moved, parameters) fitted on micro-benchmarks of layer
shapes. The catalog is one fixed grid of common shapes (convolutions dense, grouped and
depthwise over CIFAR-sized feature maps, linear layers on vectors and tokens,
self-attention, BatchNorm, LayerNorm, activations, pooling, a few stems and classifier
heads), the same for every network: it holds some networks' layers exactly (a 3x3
convolution of 64 channels on 32x32 is resnet18's) and others' not at all, and no network
is run to build it. Each layer is timed alone, as a network runs it: a forward and
backward pass (training) and a forward pass without gradients in eval mode (inference),
with the device synchronised inside each timed call, as Zeus's measurement windows are.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from sweeper.models import describe_layers
from sweeper.store import LayerCost
from sweeper.training.device import autocast_dtype

# A layer whose call would multiply-accumulate more than this is left out: on a CPU it
# would take seconds (the networks' layers at CIFAR sizes and batch 8 stay below it); a GPU
# does 1e12 in a few milliseconds.
MAX_MACS_PER_CALL = {"cpu": 2.5e9, "cuda": 1e12}
CHANNELS = (8, 16, 32, 64, 128, 256, 512)
FEATURE_MAPS = (32, 16, 8, 4)


class SelfAttention(nn.Module):
    """nn.MultiheadAttention over one sequence, as a transformer block calls it."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


def catalog() -> Iterator[tuple[str, tuple[int, ...], nn.Module]]:
    """(description, input shape per sample, module) of every catalog layer."""
    for hw in FEATURE_MAPS:
        for cin, cout in itertools.product(CHANNELS, CHANNELS):
            if cout not in (cin, 2 * cin, cin // 2) and not (cin <= 16 and cout >= 32):
                continue
            for k in (1, 3):
                yield (f"Conv2d({cin}, {cout}, k{k}) {hw}x{hw}", (cin, hw, hw),
                       nn.Conv2d(cin, cout, k, padding=k // 2, bias=False))
            yield (f"Conv2d({cin}, {cout}, k3, s2) {hw}x{hw}", (cin, hw, hw),
                   nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False))
        for c in (*CHANNELS[1:], 1024):
            for k in (3, 5):
                yield (f"Conv2d({c}, {c}, k{k}, depthwise) {hw}x{hw}", (c, hw, hw),
                       nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False))
            for g in (2, 8, 32):
                if c % g == 0 and c // g >= 2:
                    yield (f"Conv2d({c}, {c}, k3, g{g}) {hw}x{hw}", (c, hw, hw),
                           nn.Conv2d(c, c, 3, padding=1, groups=g, bias=False))
            for name, module in (("BatchNorm2d", nn.BatchNorm2d(c)), ("ReLU", nn.ReLU()),
                                 ("SiLU", nn.SiLU()), ("MaxPool2d", nn.MaxPool2d(2)),
                                 ("AvgPool2d", nn.AvgPool2d(2))):
                yield f"{name}({c}) {hw}x{hw}", (c, hw, hw), module
    for cin, cout, k in ((3, 64, 3), (3, 32, 3), (3, 6, 5)):
        yield (f"Conv2d({cin}, {cout}, k{k}) 32x32", (cin, 32, 32),
               nn.Conv2d(cin, cout, k, padding=k // 2 if k == 3 else 0, bias=False))
    for fin, fout in ((84, 10), (256, 10), (512, 10), (1024, 10), (2048, 10), (1280, 10),
                      (120, 84), (400, 120), (512, 256), (512, 512), (3072, 512)):
        yield f"Linear({fin}, {fout})", (fin,), nn.Linear(fin, fout)
    for tokens, dim in ((16, 256), (64, 64), (64, 128)):
        for factor in (1, 2, 4):
            yield (f"Linear({dim}, {dim * factor}) x{tokens} tokens", (tokens, dim),
                   nn.Linear(dim, dim * factor))
        yield f"LayerNorm({dim}) x{tokens} tokens", (tokens, dim), nn.LayerNorm(dim)
        yield f"GELU x{tokens}x{dim}", (tokens, dim), nn.GELU()
    # Self-attention: projections grow with tokens x dim^2, the attention itself with
    # tokens^2 x dim and its weights with heads x tokens^2. The token counts are none of
    # the vit's (17 on digits, 65 on 32x32 images: patches and a class token).
    for tokens, dim, heads in itertools.product((16, 48, 128, 256), (64, 128, 256), (4, 8)):
        yield (f"MultiheadAttention({dim}, {heads} heads) x{tokens} tokens", (tokens, dim),
               SelfAttention(dim, heads))


def _clock(call: Callable[[], object], sync: Callable[[], None], min_s: float
           ) -> tuple[float, float, int]:
    """(median, interquartile range / median, repeats) of one call's time, after two
    warm-up calls; at least 5 repeats and `min_s` of timed work, at most 200."""
    call()
    call()
    sync()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - started < min_s and len(times) < 200):
        t0 = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - t0)
    quartiles = statistics.quantiles(times, n=4)
    median = statistics.median(times)
    return median, (quartiles[2] - quartiles[0]) / median, len(times)


def time_layer(module: nn.Module, shape: tuple[int, ...], batch: int, device: torch.device,
               precision: str = "fp32", min_s: float = 0.02) -> tuple[tuple, tuple]:
    """((train_s, spread, repeats), (inference_s, spread, repeats)) of one layer."""
    module = module.to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    dtype = autocast_dtype(precision)

    def autocast() -> contextlib.AbstractContextManager[object]:
        return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    source = torch.randn(batch, *shape, device=device, requires_grad=True)
    inplace = bool(getattr(module, "inplace", False))
    with autocast():
        grad = torch.ones_like(module(source.clone()))

    def train_call() -> None:
        with autocast():
            out = module(source.clone() if inplace else source)
        out.backward(grad.to(out.dtype))
        source.grad = None
        module.zero_grad(set_to_none=True)

    plain = source.detach()

    def inference_call() -> None:
        with torch.no_grad(), autocast():
            module(plain.clone() if inplace else plain)

    module.train()
    train = _clock(train_call, sync, min_s)
    module.eval()
    inference = _clock(inference_call, sync, min_s)
    return train, inference


def measure_catalog(batch: int, device: torch.device, precision: str = "fp32",
                    min_s: float = 0.02, limit: int | None = None) -> list[LayerCost]:
    """Time every catalog layer (the first `limit` of them, for tests) at `batch`: rows of
    the store's layer_costs, each layer's work per sample as models.describe_layers counts
    it and its median time per call with the repeats' spread (interquartile range over the
    median); the caller fills in the machine."""
    cases = [(name, shape, module) for name, shape, module in catalog()]
    if limit is not None:
        cases = cases[:limit]
    out = []
    for name, shape, module in cases:
        (info,) = describe_layers(nn.Sequential(module), shape)
        if info.macs * batch > MAX_MACS_PER_CALL.get(device.type, MAX_MACS_PER_CALL["cpu"]):
            continue
        train, inference = time_layer(module, shape, batch, device, precision, min_s)
        out.append(LayerCost(
            layer=name, kind=info.kind, groups=info.groups, batch=batch,
            macs_per_sample=info.macs, elements_in_per_sample=info.elements_in,
            elements_out_per_sample=info.elements_out, params=info.params,
            train_s=train[0], train_spread=train[1], inference_s=inference[0],
            inference_spread=inference[1], repeats=min(train[2], inference[2])))
    return out
