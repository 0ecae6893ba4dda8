"""The 14 CIFAR-10 networks of the study (Mavromatis et al. 2024), as the kuangliu/pytorch-cifar
definitions it trained: 3x3 stems without max-pool, sized for 32x32 inputs.

Parameter counts and MACs at 3x32x32 equal the reference definitions (see
tests/test_cifar_models.py); most refuse other image sizes because a fixed pool or
linear layer needs 32x32.
"""

from __future__ import annotations

from torch import nn

from .densenet import DenseNet121
from .dla import SimpleDLA
from .dpn import DPN26
from .efficientnet import EfficientNetB0
from .googlenet import GoogLeNet
from .grouped import RegNetX_200MF, ResNeXt29_2x64d
from .lenet import LeNet
from .mobilenet import MobileNetV1, MobileNetV2
from .resnet import PreActResNet18, ResNet18, SENet18
from .vgg import VGG19

# Config name -> network, in the order the study lists them.
CIFAR_ARCHITECTURES: dict[str, type[nn.Module]] = {
    "lenet": LeNet,
    "mobilenet_v1": MobileNetV1,
    "mobilenetv2": MobileNetV2,
    "efficientnetb0": EfficientNetB0,
    "simpledla": SimpleDLA,
    "resnet18": ResNet18,
    "preactresnet18": PreActResNet18,
    "vgg19": VGG19,
    "googlenet": GoogLeNet,
    "densenet121": DenseNet121,
    "resnext29_2x64d": ResNeXt29_2x64d,
    "senet18": SENet18,
    "regnetx_200mf": RegNetX_200MF,
    "dpn26": DPN26,
}

__all__ = ["CIFAR_ARCHITECTURES"]
