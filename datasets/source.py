"""What a source hands to the splitter: a labelled pool and maybe a fixed test split."""

from __future__ import annotations

from dataclasses import dataclass

from .tensors import ImageTensorDataset


@dataclass(frozen=True)
class SourceData:
    """Raw samples of one dataset before val (and, if absent, test) are carved out."""

    train: ImageTensorDataset  # everything that is not the official test split
    test: ImageTensorDataset | None  # None when the source has no test split
    num_classes: int
    description: str
