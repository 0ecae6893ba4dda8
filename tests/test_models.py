"""Behaviour of models/: every architecture on every supported input size, and its cost."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from sweeper.datasets import load_dataset
from sweeper.models import MODEL_NAMES, ModelInfo, build_model, describe_model
from sweeper.models.cifar import CIFAR_ARCHITECTURES

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]  # digits, MNIST, CIFAR-10
# The small architectures that size themselves to any input; the study's CIFAR networks
# and model=torchvision are covered by test_cifar_models.py.
SMALL_NAMES = tuple(n for n in MODEL_NAMES if n not in CIFAR_ARCHITECTURES and n != "torchvision")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", SMALL_NAMES)
def test_every_model_runs_on_every_input_size(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    logits = model(torch.rand(3, *shape))
    assert logits.shape == (3, 10)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_describe_counts_params_and_macs_and_keeps_mode(name: str) -> None:
    model = build_model(name, (1, 8, 8), 10)
    model.train()
    info = describe_model(model, (1, 8, 8))
    assert isinstance(info, ModelInfo)
    assert info.params == sum(p.numel() for p in model.parameters())
    assert info.macs_per_sample > 0
    assert info.macs_per_param == pytest.approx(info.macs_per_sample / info.params)
    assert all(m.training for m in model.modules())


def test_describe_restores_mixed_modes() -> None:
    model = build_model("resnet", (1, 8, 8), 10)
    model.train()
    model.stem.eval()
    describe_model(model, (1, 8, 8))
    assert model.training and not any(m.training for m in model.stem.modules())


def test_describe_does_not_touch_batchnorm_statistics() -> None:
    model = build_model("resnet", (1, 8, 8), 10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    describe_model(model, (1, 8, 8))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_mlp_macs_match_its_linear_layers() -> None:
    model = build_model("mlp", (1, 28, 28), 10, hidden=32, depth=3)
    info = describe_model(model, (1, 28, 28))
    assert info.macs_per_sample == 784 * 32 + 2 * 32 * 32 + 32 * 10
    assert build_model("mlp", (1, 8, 8), 10, depth=0)(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_vit_macs_include_attention() -> None:
    # 16 patches of 2x2 + class token; one layer: qkv, out-proj, two attention bmms, MLP.
    dim, tokens, ff = 32, 17, 64
    model = build_model("vit", (1, 8, 8), 10, dim=dim, depth=1, heads=4, mlp_ratio=2.0)
    expected = (
        16 * 4 * dim  # patch embedding
        + tokens * dim * 3 * dim
        + tokens * dim * dim
        + 2 * tokens * tokens * dim
        + 2 * tokens * dim * ff
        + dim * 10  # head
    )
    assert describe_model(model, (1, 8, 8)).macs_per_sample == expected


@pytest.mark.parametrize(
    ("name", "small", "big"),
    [
        ("resnet", {"width": 8}, {"width": 16}),
        ("vit", {"dim": 32}, {"dim": 64}),
        ("mobilenet", {"width_mult": 0.5}, {"width_mult": 1.0}),
        ("vgg", {"widths": [8, 16]}, {"widths": [16, 32]}),
        ("cnn", {"channels": [8, 16]}, {"channels": [16, 32]}),
        ("mlp", {"hidden": 32}, {"hidden": 64}),
    ],
)
def test_wider_means_more_macs(name: str, small: dict, big: dict) -> None:
    shape = (3, 32, 32)
    lo = describe_model(build_model(name, shape, 10, **small), shape)
    hi = describe_model(build_model(name, shape, 10, **big), shape)
    assert hi.macs_per_sample > lo.macs_per_sample
    assert hi.params > lo.params


@pytest.mark.parametrize(("shape", "patch"), [((1, 8, 8), 2), ((1, 28, 28), 4), ((3, 32, 32), 4)])
def test_vit_auto_patch_size_divides_the_image(shape: tuple[int, int, int], patch: int) -> None:
    assert build_model("vit", shape, 10).patch_size == patch


def test_vit_rejects_a_patch_that_does_not_divide() -> None:
    with pytest.raises(ValueError, match="patch_size"):
        build_model("vit", (1, 28, 28), 10, patch_size=5)


def test_unknown_model_lists_the_allowed_names() -> None:
    with pytest.raises(ValueError) as err:
        build_model("transformer-xl", (1, 8, 8), 10)
    assert "transformer-xl" in str(err.value)
    assert all(name in str(err.value) for name in MODEL_NAMES)


def test_unknown_option_is_named() -> None:
    with pytest.raises(TypeError, match="widht"):
        build_model("resnet", (1, 8, 8), 10, widht=32)


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_yaml_options_are_exactly_what_build_model_accepts(name: str) -> None:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    options = OmegaConf.to_container(cfg)
    assert options.pop("name") == name
    model = build_model(name, (1, 28, 28), 10, **options)  # ListConfig-free plain values
    assert isinstance(model, nn.Module)
    # The yaml spells out every option with the code's default, so they cannot drift.
    default = describe_model(build_model(name, (1, 28, 28), 10), (1, 28, 28))
    assert describe_model(model, (1, 28, 28)) == default


def test_hydra_listconfig_options_work() -> None:
    cfg = OmegaConf.load(CONF / "resnet.yaml")
    model = build_model("resnet", (1, 8, 8), 10, width=cfg.width, blocks=cfg.blocks)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_cnn_loss_decreases_on_digits() -> None:
    torch.manual_seed(0)
    splits = load_dataset("digits")
    x, y = next(iter(DataLoader(splits.train, batch_size=256, shuffle=False)))
    model = build_model("cnn", splits.input_shape, splits.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
