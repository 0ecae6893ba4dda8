"""The study's 14 CIFAR-10 networks (models/cifar) and `model=torchvision`: size, training, refusal.

Sizes are counted on the ``meta`` device (shapes only, no arithmetic), so checking all 14
costs about two seconds; the real training steps of the five heaviest networks are `slow`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from torch import nn

from sweeper.config.spec import build_spec
from sweeper.errors import ConfigError
from sweeper.models import MODEL_NAMES, build_model, describe_model, model_options
from sweeper.models.cifar import CIFAR_ARCHITECTURES

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
CIFAR = (3, 32, 32)

# (parameters, MACs per sample) at 3x32x32 with 10 classes, of the reference definitions:
# the study's copies of kuangliu/pytorch-cifar's models (github.com/ioannismavromatis/
# sustainable-ai, models/*.py; its models/__init__.py imports preact_resnet too, so the study
# has PreActResNet18; that file was not in the copy these were measured from, so its figures
# are of kuangliu/pytorch-cifar's definition), instantiated as the study does (e.g.
# VGG("VGG19")) and counted with
# models.info.describe_model (parameter numel; torch FlopCounterMode FLOPs / 2) on
# torch 2.14.1. Figures measured 2026-11-26 by running those definitions outside this repo.
REFERENCE: dict[str, tuple[int, int]] = {
    "lenet": (62_006, 651_720),
    "mobilenet_v1": (3_217_226, 46_354_432),
    "mobilenetv2": (2_296_922, 91_154_944),
    "efficientnetb0": (3_599_686, 30_331_392),
    "simpledla": (15_142_970, 913_495_040),
    "resnet18": (11_173_962, 555_422_720),
    "preactresnet18": (11_171_146, 555_422_720),
    "vgg19": (20_040_522, 398_136_320),
    "googlenet": (6_166_250, 1_521_756_160),
    "densenet121": (6_956_298, 888_350_720),
    "resnext29_2x64d": (9_128_778, 1_409_492_992),
    "senet18": (11_260_354, 555_509_760),
    "regnetx_200mf": (2_321_946, 223_317_600),
    "dpn26": (11_574_842, 665_050_880),
}
# The one deliberate deviation: the reference EfficientNetB0's first block (expansion 1)
# builds a 1x1 expansion conv (32x32 weights) and its BatchNorm (2x32) that its forward
# never runs; ours does not build them. Same MACs, 1,088 parameters fewer.
PARAMS_NOT_BUILT = {"efficientnetb0": 32 * 32 + 2 * 32}
# Networks whose head pools adaptively and so take any image size.
ANY_SIZE = {"efficientnetb0", "regnetx_200mf"}
# A real CPU training step of these takes over a second on a shared 2-core machine.
SLOW_STEP = {"simpledla", "googlenet", "densenet121", "resnext29_2x64d", "dpn26"}


def on_meta(name: str, shape: tuple[int, int, int] = CIFAR, **options: object) -> nn.Module:
    """The network with shape-only tensors: counting it runs no arithmetic."""
    with torch.device("meta"):
        return build_model(name, shape, 10, **options)


def test_the_study_networks_are_registered_under_their_config_names() -> None:
    assert set(REFERENCE) == set(CIFAR_ARCHITECTURES)
    assert set(CIFAR_ARCHITECTURES) | {"torchvision"} <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", REFERENCE)
def test_size_and_macs_equal_the_reference(name: str) -> None:
    params, macs = REFERENCE[name]
    info = describe_model(on_meta(name), CIFAR)
    assert info.params == params - PARAMS_NOT_BUILT.get(name, 0)
    assert info.macs_per_sample == macs


@pytest.mark.parametrize("name", REFERENCE)
def test_macs_in_the_studys_convention_equal_ptflops(name: str) -> None:
    """The study counted MACs with ptflops (utils/model_parameters.py): the stored
    ptflops-convention figure equals ptflops' own count of the same network, while the
    conv+linear figure is 0.4-6.7% below it."""
    from ptflops import get_model_complexity_info

    torch.manual_seed(0)
    macs, params = get_model_complexity_info(
        build_model(name, CIFAR, 10), CIFAR, as_strings=False, print_per_layer_stat=False,
        verbose=False)
    info = describe_model(on_meta(name), CIFAR)  # as a run and the estimate size it
    assert info.macs_ptflops_per_sample == macs and info.params == params
    assert 0.003 < 1 - info.macs_per_sample / macs < 0.07


def test_counting_on_meta_equals_counting_real_weights() -> None:
    real = describe_model(build_model("lenet", CIFAR, 10), CIFAR)
    assert real == describe_model(on_meta("lenet"), CIFAR)


def test_num_classes_comes_from_the_data() -> None:
    for name in ("vgg19", "dpn26", "googlenet"):
        head = [m for m in on_meta(name).modules() if isinstance(m, nn.Linear)][-1]
        assert head.out_features == 10
        with torch.device("meta"):
            wide = build_model(name, CIFAR, 100)
        assert [m for m in wide.modules() if isinstance(m, nn.Linear)][-1].out_features == 100


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_STEP else n for n in REFERENCE],
)
def test_one_sgd_step_on_cpu_at_batch_2(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, CIFAR, 10).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    before = [p.detach().clone() for p in model.parameters()]
    logits = model(torch.rand(2, *CIFAR))
    assert logits.shape == (2, 10)
    loss = nn.functional.cross_entropy(logits, torch.tensor([3, 7]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed == len(before)  # every parameter takes part in the forward pass


@pytest.mark.parametrize("name", sorted(set(REFERENCE) - ANY_SIZE))
def test_other_image_sizes_are_refused_in_one_line(name: str) -> None:
    with pytest.raises(ValueError) as err:
        build_model(name, (1, 28, 28), 10)
    message = str(err.value)
    assert "\n" not in message
    assert name in message and "1x28x28" in message and "32x32" in message
    assert "because" in message  # the architecture's reason: its pool or linear size


@pytest.mark.parametrize("name", sorted(ANY_SIZE))
def test_adaptive_networks_take_other_sizes(name: str) -> None:
    model = on_meta(name, (1, 28, 28)).eval()  # shapes flow through; no arithmetic
    assert model(torch.empty(2, 1, 28, 28, device="meta")).shape == (2, 10)


def test_any_channel_count_is_taken_at_32x32() -> None:
    info = describe_model(on_meta("resnet18", (1, 32, 32)), (1, 32, 32))
    params, _ = REFERENCE["resnet18"]
    assert info.params == params - 2 * 64 * 3 * 3  # the stem reads one channel, not three


@pytest.mark.parametrize("name", [*REFERENCE, "torchvision"])
def test_each_has_a_config(name: str) -> None:
    options = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    assert options.pop("name") == name
    assert options == model_options(name)


# ---- model=torchvision ----------------------------------------------------------------


def test_torchvision_builds_the_default_arch_and_trains() -> None:
    torch.manual_seed(0)
    model = build_model("torchvision", CIFAR, 7)
    assert type(model).__name__ == "ResNet"
    loss = nn.functional.cross_entropy(model(torch.rand(2, *CIFAR)), torch.tensor([0, 6]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_torchvision_small_stem_resnet18_is_the_study_resnet18() -> None:
    # A 3x3 stride-1 stem without max-pool turns torchvision's resnet18 into the CIFAR one.
    stem = describe_model(on_meta("torchvision", arch="resnet18", small_input_stem=True), CIFAR)
    assert (stem.params, stem.macs_per_sample) == REFERENCE["resnet18"]
    plain = describe_model(on_meta("torchvision", arch="resnet18"), CIFAR)
    assert plain.params == stem.params + 64 * 3 * (7 * 7 - 3 * 3)
    # The ImageNet stem (stride-2 conv, max-pool) shrinks 32x32 to 8x8 before the first stage.
    assert plain.macs_per_sample < stem.macs_per_sample / 10


def test_torchvision_retargets_the_first_conv_for_grey_images() -> None:
    model = build_model("torchvision", (1, 28, 28), 10, arch="mobilenet_v3_small").eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_torchvision_inception_style_nets_return_plain_logits_in_training() -> None:
    model = on_meta("torchvision", arch="googlenet").train()
    assert isinstance(model(torch.rand(2, *CIFAR, device="meta")), torch.Tensor)


def test_torchvision_unknown_arch_names_the_nearest_match() -> None:
    with pytest.raises(ValueError, match=r"model\.arch='resnet19'.*nearest: resnet18"):
        build_model("torchvision", CIFAR, 10, arch="resnet19")


def test_torchvision_small_stem_is_refused_outside_the_resnet_family() -> None:
    with pytest.raises(ValueError, match="small_input_stem.*ResNet family.*'mobilenet_v2'"):
        build_model("torchvision", CIFAR, 10, arch="mobilenet_v2", small_input_stem=True)


def test_torchvision_input_it_cannot_take_is_refused_before_building() -> None:
    with pytest.raises(ValueError, match=r"'vit_b_16' cannot take 3x32x32 inputs: .*224"):
        build_model("torchvision", CIFAR, 10, arch="vit_b_16")


def test_a_config_on_a_size_they_cannot_take_is_refused_before_any_run() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=resnet18", "dataset=digits"])
    with pytest.raises(ConfigError, match=r"resnet18.*1x8x8.*needs 32x32 images"):
        build_spec(cfg)


def test_torchvision_regnets_can_be_checked_on_the_meta_device() -> None:
    # Their builders read tensors back while constructing; config checks build on meta.
    model = on_meta("torchvision", arch="regnet_x_400mf")
    assert all(p.is_meta for p in model.parameters())


def test_a_torchvision_run_is_stored_under_its_architecture() -> None:
    """Different torchvision architectures must not be pooled under one model name."""
    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"),
                               version_base="1.3"):
        cfg = compose("config", overrides=["model=torchvision", "model.arch=resnet50"])
    GlobalHydra.instance().clear()
    spec = build_spec(cfg)
    assert spec.model == "torchvision"
    assert spec.model_label == "torchvision:resnet50"
