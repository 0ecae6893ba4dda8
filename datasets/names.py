"""The data set names, importable without torch or scikit-learn (for validating configs)."""

DATASET_NAMES: tuple[str, ...] = ("digits", "synthetic", "mnist", "fashion_mnist", "cifar10")

# Classes of the data sets with a fixed class count (synthetic's is its `num_classes` option):
# the report's chance level, 1/classes, and the config checks' model output size.
CLASS_COUNTS: dict[str, int] = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10}
