"""Check sweeper's GPU energy on a real NVIDIA GPU, against an independent raw NVML reader.

Three parts, one table:

1. Phase energies. A real training run (resnet on synthetic 32x32x3 data, on cuda:0) is
   measured by sweeper's own sampler with its NVML meter, phase by phase (idle with a live
   CUDA context, train epochs, evaluations, the inference benchmark with sweeper's time
   floor). Beside it, a separate thread of this script polls NVML's energy counter every
   2 ms through pynvml directly (its own handle, found by the GPU's UUID, none of sweeper's
   code) and keeps the time of every refresh; a phase's raw energy is the counter
   interpolated linearly between the refreshes around each boundary. Both use the same
   clock (time.perf_counter), so every phase is compared on the same interval. The raw
   reader splits each refresh evenly, sweeper where the work is (its phase boundaries), so
   they differ by design on phases of a few refreshes; on long phases they should agree.
2. The README's main command, `python -m sweeper -m model=resnet,vit batch=32,128`, with
   device=cuda into a temporary store: its exit status, wall time and stored E_tr (gross
   and net), E_in, low-resolution phases and warnings.
3. The forecast benchmark (benchmarks/forecast_accuracy.py) with --device cuda: its MAPE of
   E_tr at each window.

    python benchmarks/gpu_check.py                 # about 3-5 minutes on an H100
    python benchmarks/gpu_check.py --skip-main --skip-forecast   # phase comparison only

Without an NVIDIA GPU (no driver, no pynvml, or torch without CUDA) it says so in one line
and exits with status 2, having run nothing. It never changes clocks or power limits,
unless given ``--power-limits``: then a 4th part runs a sweeper grid over
``gpu.power_limit`` (needs root; each run restores the limit it found):

    python benchmarks/gpu_check.py --skip-main --skip-forecast --power-limits 0.6,0.8,1.0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def no_gpu(reason: str) -> int:
    print(f"gpu_check: no NVIDIA GPU to check here ({reason}); this benchmark needs one and "
          "ran nothing", file=sys.stderr)
    return 2


class RawNvmlReader(threading.Thread):
    """Polls one GPU's energy counter every `period_s` and keeps each refresh's time."""

    def __init__(self, nvml: Any, handle: Any, period_s: float = 0.002) -> None:
        super().__init__(name="raw-nvml", daemon=True)
        self.nvml, self.handle, self.period_s = nvml, handle, period_s
        self.times: list[float] = []
        self.mj: list[float] = []
        self.polls = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        last = None
        while not self._halt.is_set():
            value = float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
            now = time.perf_counter()
            self.polls += 1
            if value != last:
                with self._lock:
                    self.times.append(now)
                    self.mj.append(value)
                last = value
            time.sleep(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def energy_at_j(self, t: float) -> float:
        """The counter at time t, linear between the refreshes on either side (joules)."""
        with self._lock:
            times, mj = list(self.times), list(self.mj)
        i = bisect_left(times, t)
        if i == 0:
            return mj[0] / 1000.0
        if i >= len(times):
            return mj[-1] / 1000.0
        t1, t2, e1, e2 = times[i - 1], times[i], mj[i - 1], mj[i]
        return (e1 + (t - t1) / (t2 - t1) * (e2 - e1)) / 1000.0

    def refresh_period_s(self) -> float | None:
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return statistics.median(gaps) if gaps else None


@dataclass
class PhaseCheck:
    kind: str
    index: int
    duration_s: float
    sweeper_j: float
    raw_j: float
    uncertainty_j: float | None
    low_resolution: str | None


def compare_phases(args: argparse.Namespace, nvml: Any) -> tuple[list[PhaseCheck], dict]:
    import torch

    from sweeper import energy
    from sweeper.datasets import load_dataset
    from sweeper.energy.resolution import low_resolution_reason, min_span_s, slowest_meter
    from sweeper.models import build_model
    from sweeper.training.heap import frozen_heap
    from sweeper.training.loaders import make_loader, train_loader
    from sweeper.training.trainer import Trainer, make_optimizer

    device = torch.device("cuda:0")
    uuid = str(torch.cuda.get_device_properties(0).uuid)
    uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
    data = load_dataset("synthetic", n_samples=args.samples, image_size=32, channels=3,
                        seed=0)
    torch.manual_seed(0)
    model = build_model("resnet", data.input_shape, data.num_classes)
    trainer = Trainer(model, make_optimizer("adam", model.parameters(), 1e-3, 0.9, 0.0),
                      device, "fp32")
    loaders = {
        "train": train_loader(data.train, args.batch, seed=0),
        "val": make_loader(data.val, 256, shuffle=False, seed=0),
        "inference": make_loader(data.test, 128, shuffle=False, seed=0),
    }
    meters = energy.open_meters("nvml", gpu_indices=[0])
    period, source = slowest_meter(meters.meters)
    raw = RawNvmlReader(nvml, handle)
    raw.start()
    time.sleep(0.5)  # the raw reader has seen a few refreshes before the first boundary
    sampler = energy.EnergySampler(meters.meters, sample_hz=10.0)
    sampler.start()
    sampler_t0 = time.perf_counter()
    # as a sweeper run measures (MeasuredRun): no full collection inside a phase
    with frozen_heap():
        try:
            torch.cuda.synchronize(device)
            with sampler.phase("idle", 0):
                time.sleep(2.0)
            for epoch in range(args.epochs):
                with sampler.phase("train_epoch", epoch):
                    trainer.train_epoch(loaders["train"])
                with sampler.phase("eval", epoch):
                    trainer.evaluate(loaders["val"])
            cache = trainer.cached_inputs(loaders["inference"], 50)
            trainer.warm_up(loaders["inference"], 2)  # outside the phase, as sweeper's runs
            with sampler.phase("inference", 0):
                trainer.inference_benchmark(cache, 50, min_span_s(meters.meters))
        finally:
            sampler.stop()
            meters.close()
            time.sleep(0.3)  # the refresh after the last boundary
            raw.stop()
    offset = _sampler_origin(sampler, sampler_t0)  # phases' start_s count from here
    out = []
    for ph in sampler.phases:
        t0 = offset + ph.start_s
        t1 = t0 + ph.duration_s
        out.append(PhaseCheck(
            ph.kind, ph.index, ph.duration_s, ph.by_domain.get("gpu:0", math.nan),
            raw.energy_at_j(t1) - raw.energy_at_j(t0),
            getattr(ph, "energy_uncertainty_j", None),
            low_resolution_reason(ph.duration_s, period, source),
        ))
    info = {
        "raw_refresh_ms": None if raw.refresh_period_s() is None
        else 1000 * raw.refresh_period_s(),  # type: ignore[operator]
        "raw_polls": raw.polls,
        "meters": meters.describe(),
    }
    return out, info


def _sampler_origin(sampler: Any, fallback: float) -> float:
    """The perf_counter time the sampler counts phase times from: its t0 (private, read
    here only to align clocks), else the time taken just after start() (within ~1 ms)."""
    t0 = getattr(sampler, "_t0", None)
    return float(t0) if isinstance(t0, float) else fallback


def run_main_command(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    db = tmp / "main.db"
    command = [sys.executable, "-m", "sweeper", "-m", "model=resnet,vit", "batch=32,128",
               "device=cuda", f"storage.url=sqlite:///{db}", f"hydra.sweep.dir={tmp / 'mr'}",
               "sweeper.progress=false"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    result: dict[str, Any] = {"rc": done.returncode, "wall_s": wall, "runs": [],
                              "stderr": done.stderr[-1500:]}
    if db.exists():
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            result["runs"] = [dict(r) for r in conn.execute("select * from runs order by id")]
            result["low_res"] = conn.execute(
                "select kind, count(*) from phases where low_resolution is not null "
                "group by kind").fetchall()
    return result


def run_forecast_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "benchmarks" / "forecast_accuracy.py"),
               "--device", "cuda", "--meter", "nvml", "--epochs", str(args.forecast_epochs)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    mape = re.search(r"^MAPE E_tr\s+(.*)$", done.stdout, re.MULTILINE)
    header = re.search(r"^run\s+steps\s+E_tr \(J\)\s+(.*)$", done.stdout, re.MULTILINE)
    return {"rc": done.returncode, "wall_s": time.perf_counter() - started,
            "windows": header.group(1).split() if header else [],
            "mape": mape.group(1).split() if mape else [], "stdout": done.stdout,
            "stderr": done.stderr[-1500:]}


def run_power_limit_grid(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """sweeper's own grid over gpu.power_limit (it sets and restores the limits), and
    gpu.power_limit=auto beside it, to compare auto's pick with the grid's best."""
    db = tmp / "limits.db"
    command = [sys.executable, "-m", "sweeper", "-m", "model=resnet", "dataset=synthetic",
               f"dataset.n_samples={args.samples}", f"batch={args.batch}", "epochs=2",
               "device=cuda", f"gpu.power_limit={args.power_limits},auto",
               f"storage.url=sqlite:///{db}", f"hydra.sweep.dir={tmp / 'mr'}",
               "sweeper.progress=false"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    runs = []
    if db.exists():
        with sqlite3.connect(db) as conn:
            runs = conn.execute(
                "select json_extract(hardware, '$.gpu_power.requested'), "
                "json_extract(hardware, '$.gpu_power.gpus.\"gpu:0\".applied_w'), "
                "json_extract(hardware, '$.gpu_power.gpus.\"gpu:0\".original_w'), status, "
                "energy_train_j, train_duration_s, val_accuracy from runs order by id"
            ).fetchall()
    return {"rc": done.returncode, "runs": runs, "stderr": done.stderr[-1500:]}


def print_power_limits(result: dict[str, Any]) -> None:
    print(f"power-limit grid: exit {result['rc']} (auto's row: the limit it kept)")
    print("requested                applied W  original W  status     E_tr (J)  train s  "
          "val acc")
    for requested, applied, original, status, e_tr, t_s, acc in result["runs"]:
        print(f"{requested or '-':23}  {applied or 0:9.0f}  {original or 0:10.0f}  "
              f"{status:9}  {e_tr or 0:8.1f}  {t_s or 0:7.2f}  {acc or 0:7.3f}")
    if result["rc"]:
        print(result["stderr"])


def _pct(a: float, b: float) -> str:
    return "-" if not b else f"{(a - b) / b:+.1%}"


def print_table(gpu: dict[str, str], phases: list[PhaseCheck], info: dict,
                main: dict | None, forecast: dict | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gpu_check: {gpu['name']}, driver {gpu['driver']}, power limit "
                        f"{gpu['limit_w']} W; raw NVML counter refresh "
                        f"{info.get('raw_refresh_ms') or 0:.1f} ms")
    for column in ("check", "item", "duration", "sweeper", "raw NVML / result", "diff",
                   "note"):
        table.add_column(column, justify="left" if column in ("check", "item", "note")
                         else "right")
    for p in phases:
        note = []
        if p.uncertainty_j is not None:
            note.append(f"+-{p.uncertainty_j:.2f} J stored")
        if p.low_resolution:
            note.append("low-resolution")
        table.add_row("phase energy", f"{p.kind}[{p.index}]", f"{p.duration_s:.3f} s",
                      f"{p.sweeper_j:.2f} J", f"{p.raw_j:.2f} J", _pct(p.sweeper_j, p.raw_j),
                      ", ".join(note))
    long = [p for p in phases if not p.low_resolution and p.raw_j > 0]
    if long:
        worst = max(abs(p.sweeper_j - p.raw_j) / p.raw_j for p in long)
        table.add_row("phase energy", "worst, phases not low-resolution", "", "", "",
                      f"{worst:.1%}", f"{len(long)} phases")
    if main is not None:
        low = "; ".join(f"{k} x{n}" for k, n in main.get("low_res", []))
        table.add_row("README command", "exit status, wall time", f"{main['wall_s']:.0f} s",
                      "", str(main["rc"]), "", f"low-resolution phases: {low or 'none'}")
        for r in main["runs"]:
            net = r.get("energy_train_net_j")
            table.add_row(
                "README command", f"run {r['id']} {r['model']} b{r['batch']}",
                f"{(r.get('train_duration_s') or 0):.2f} s",
                f"E_tr {r.get('energy_train_j') or 0:.1f} J",
                f"net {net:.1f} J" if net is not None else "net -",
                f"E_in {r.get('energy_inference_j') or 0:.1f} J",
                f"{r.get('meter_source')}; idle {r.get('idle_power_w') or 0:.0f} W"
                + ("; warning" if r.get("measurement_warning") else ""),
            )
    if forecast is not None:
        for window, mape in zip(forecast["windows"], forecast["mape"], strict=False):
            table.add_row("forecast benchmark", f"MAPE E_tr, {window} window",
                          f"{forecast['wall_s']:.0f} s", "", mape, "", f"rc {forecast['rc']}")
        if not forecast["mape"]:
            table.add_row("forecast benchmark", "failed", "", "", str(forecast["rc"]), "",
                          forecast["stderr"][-200:])
    Console(width=200).print(table)
    if main is not None and main["rc"] != 0:
        print("README command stderr (tail):\n" + main["stderr"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20000,
                        help="synthetic images for the phase comparison (default 20000)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--forecast-epochs", type=int, default=15)
    parser.add_argument("--skip-main", action="store_true")
    parser.add_argument("--skip-forecast", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--power-limits", default=None, metavar="FRACTIONS",
                        help="the only way this script changes a power limit: a grid over "
                             "gpu.power_limit=FRACTIONS (e.g. 0.6,0.8,1.0), needs root")
    args = parser.parse_args(argv)

    try:
        import pynvml
    except ImportError as e:
        return no_gpu(f"pynvml (nvidia-ml-py) is not installed: {e}")
    try:
        pynvml.nvmlInit()
    except Exception as e:  # library not found, driver not loaded
        return no_gpu(f"NVML could not start: {type(e).__name__}: {e}")
    import torch

    if not torch.cuda.is_available():
        return no_gpu("torch sees no CUDA device")
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    name = pynvml.nvmlDeviceGetName(handle)
    driver = pynvml.nvmlSystemGetDriverVersion()
    gpu = {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
        "limit_w": f"{pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000:g}",
    }
    phases, info = compare_phases(args, pynvml)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        main_result = None if args.skip_main else run_main_command(args, Path(tmp))
    forecast = None if args.skip_forecast else run_forecast_benchmark(args)
    print_table(gpu, phases, info, main_result, forecast)
    capped = None
    if args.power_limits:
        with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
            capped = run_power_limit_grid(args, Path(tmp))
        print_power_limits(capped)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "gpu": gpu, "info": info, "phases": [p.__dict__ for p in phases],
            "main": main_result, "forecast": forecast, "power_limits": capped,
        }, indent=1, default=str))
    pynvml.nvmlShutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
