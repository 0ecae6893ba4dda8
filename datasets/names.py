"""The data set names, importable without torch or scikit-learn (for validating configs)."""

DATASET_NAMES: tuple[str, ...] = ("digits", "synthetic", "mnist", "fashion_mnist", "cifar10")
