"""``import pynvml`` in a sweeper subprocess a test starts with this folder first on
PYTHONPATH: the FileBackedNvml whose GPUs are in $SWEEPER_FAKE_NVML (see tests/fake_nvml)."""

from __future__ import annotations

import os
from typing import Any

from tests.fake_nvml import FileBackedNvml

_nvml = FileBackedNvml(os.environ["SWEEPER_FAKE_NVML"])


def __getattr__(name: str) -> Any:
    return getattr(_nvml, name)
