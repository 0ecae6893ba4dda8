"""Any torchvision classification architecture by name: `model=torchvision model.arch=NAME`.

Always untrained (``weights=None``: nothing is downloaded), with the classifier sized
for the data set. Inputs that are not 3-channel get a first conv that takes them.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from functools import cache

import torch
from torch import nn

from .common import check_input

# Inception-style nets return auxiliary logits while training unless told not to.
_AUX_LOGITS = ("googlenet", "inception_v3")


@cache
def classification_archs() -> tuple[str, ...]:
    """Names torchvision.models.get_model accepts for image classification."""
    import torchvision  # seconds to import: only for model=torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    arch: str = "resnet18",
    small_input_stem: bool = False,
) -> nn.Module:
    """Build torchvision's ``arch`` for ``input_shape`` (C, H, W) and ``num_classes``.

    ``small_input_stem`` swaps a ResNet-family stem (7x7 stride-2 conv + max-pool, which
    leaves 8x8 of a 32x32 image after two layers) for a 3x3 stride-1 conv without
    max-pool, the usual CIFAR adaptation. The model is first built and run on the
    ``meta`` device (no memory, no compute), so a shape it cannot take is refused here.
    """
    c, h, w = check_input(input_shape, num_classes)
    _check_arch(arch)
    with torch.device("meta"):
        probe = _build(arch, c, num_classes, small_input_stem).eval()
        try:
            probe(torch.empty(2, c, h, w))
        except Exception as exc:  # shape errors surface as RuntimeError, AssertionError, ...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"torchvision model {arch!r} cannot take {c}x{h}x{w} inputs: {reason}"
            ) from None
    return _build(arch, c, num_classes, small_input_stem)


def _check_arch(arch: object) -> None:
    names = classification_archs()
    if isinstance(arch, str) and arch in names:
        return
    near = difflib.get_close_matches(str(arch), names, n=3, cutoff=0.5)
    hint = f"nearest: {', '.join(near)}" if near else f"e.g. {', '.join(names[:5])}"
    raise ValueError(
        f"unknown torchvision architecture model.arch={arch!r}; {hint} "
        f"({len(names)} names in torchvision.models.list_models(module=torchvision.models))"
    )


def _build(arch: str, channels: int, num_classes: int, small_input_stem: bool) -> nn.Module:
    options: dict[str, object] = {"weights": None, "num_classes": num_classes}
    if arch in _AUX_LOGITS:
        options |= {"aux_logits": False, "init_weights": True}
    model = _get_model(arch, options)
    if small_input_stem:
        _use_small_stem(arch, model, channels)
    elif channels != 3:
        _retarget_first_conv(model, channels)
    return model


def _get_model(arch: str, options: dict[str, object]) -> nn.Module:
    import torchvision

    try:
        return torchvision.models.get_model(arch, **options)
    except NotImplementedError:
        # The regnet_* builders compute their stage widths with tensors and read them
        # back, which the meta device cannot do: build those on the CPU, then move them.
        if torch.get_default_device().type != "meta":
            raise
        with torch.device("cpu"):
            return torchvision.models.get_model(arch, **options).to("meta")


def _use_small_stem(arch: str, model: nn.Module, channels: int) -> None:
    import torchvision

    if not isinstance(model, torchvision.models.ResNet):
        raise ValueError(
            f"model.small_input_stem=true is supported for torchvision's ResNet family "
            f"(resnet*, resnext*, wide_resnet*) only, not {arch!r}; set it to false"
        )
    model.conv1 = _conv_like(model.conv1, channels, kernel=3, stride=1, padding=1)
    model.maxpool = nn.Identity()


def _retarget_first_conv(model: nn.Module, channels: int) -> None:
    """Replace the first Conv2d (the stem in every torchvision classifier) by one that
    reads ``channels`` input channels."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, _conv_like(module, channels))
            return
    raise ValueError(f"found no Conv2d to take {channels}-channel inputs")


def _conv_like(
    conv: nn.Conv2d,
    channels: int,
    *,
    kernel: int | None = None,
    stride: int | None = None,
    padding: int | None = None,
) -> nn.Conv2d:
    """A copy of ``conv``'s layout for ``channels`` inputs, initialised as torchvision
    initialises its convs (Kaiming normal, fan-out)."""
    new = nn.Conv2d(
        channels,
        conv.out_channels,
        kernel if kernel is not None else conv.kernel_size,  # type: ignore[arg-type]
        stride if stride is not None else conv.stride,  # type: ignore[arg-type]
        padding if padding is not None else conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new
