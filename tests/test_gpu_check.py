"""benchmarks/gpu_check.py without a GPU: a clear message and status 2, nothing run; and its
independent raw NVML reader against the constant-power stub."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_env
from tests.fake_nvml import steady_gpu


def _gpu_check():  # the benchmark is a script, not a package module
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_so_and_runs_nothing(tmp_path: Path) -> None:
    try:
        import pynvml

        pynvml.nvmlInit()
        pytest.skip("an NVIDIA driver is present here")
    except Exception:
        pass
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py")],
                          cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "gpu_check: no NVIDIA GPU to check here" in done.stderr
    assert "ran nothing" in done.stderr and done.stdout == ""


def test_raw_reader_interpolates_the_counter_between_refreshes() -> None:
    module = _gpu_check()
    nvml = steady_gpu(300.0, period_s=0.02)
    reader = module.RawNvmlReader(nvml, nvml.nvmlDeviceGetHandleByIndex(0), period_s=0.001)
    reader.start()
    time.sleep(0.1)
    t0 = time.perf_counter()
    time.sleep(0.25)
    t1 = time.perf_counter()
    time.sleep(0.1)
    reader.stop()
    assert reader.refresh_period_s() == pytest.approx(0.02, rel=0.5)
    assert reader.energy_at_j(t1) - reader.energy_at_j(t0) == pytest.approx(75.0, rel=0.1)
