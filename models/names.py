"""The model names, importable without torch: validating a config (and `--help`) must not
pay for importing every architecture. build.py checks that it lists the same names."""

MODEL_NAMES: tuple[str, ...] = (
    # Small architectures that adapt to any input size (8x8 digits to 32x32 CIFAR).
    "resnet", "vit", "mobilenet", "vgg", "cnn", "mlp",
    # The study's 14 CIFAR-10 networks (most need 32x32 inputs).
    "lenet", "mobilenet_v1", "mobilenetv2", "efficientnetb0", "simpledla", "resnet18",
    "preactresnet18", "vgg19", "googlenet", "densenet121", "resnext29_2x64d", "senet18",
    "regnetx_200mf", "dpn26",
    # Any torchvision classification architecture, by name (model.arch).
    "torchvision",
)
