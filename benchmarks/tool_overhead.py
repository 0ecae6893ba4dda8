"""The study's tool comparison: what does measuring energy cost a training loop, and what
does each tool say the loop used?

Trains the same loop (a small CNN on generated 3x32x32 images, CPU, a fixed number of
steps per stretch) with no tool, with sweeper's sampler (meter auto, 10 Hz), with
CodeCarbon's offline tracker, and with carbontracker and eco2AI where they are installed.
Tools are interleaved in one process, their order rotated each round (ABCD, BCDA, ...), so
drift in machine load hits them all alike; throughput ratios against "none" are paired
within a round and the median is reported with quartiles. Each tool's own energy figure
for the stretch it measured is printed in joules per training step beside sweeper's.

Throughput on a shared machine is blurred by other load; the CPU time this process spends
per step (training plus the tool's threads) is not, so it is printed too.

Every tool polls at 1 s (CodeCarbon measure_power_secs, eco2AI measure_period,
carbontracker update_interval) except sweeper at its default 10 Hz: the same settings a
user would choose to measure short phases. Where a tool cannot read a counter (no RAPL, no
GPU) it estimates, as sweeper does; the table says which.

    python benchmarks/tool_overhead.py [--rounds 4] [--steps 60] [--threads N]
    # carbontracker and eco2AI need `pip install carbontracker eco2ai` (a venv made with
    # --system-site-packages keeps them out of the main environment)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
import torch
from torch import nn

from sweeper import energy

KWH_J = 3.6e6


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def train(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          steps: int, batch: int) -> None:
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    for step in range(steps):
        i = (step * batch) % (n - batch)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[i:i + batch]), y[i:i + batch]).backward()
        opt.step()


class Tool:
    """start() before a stretch, stop() after it: returns joules, or None with a note."""

    name = "none"
    note = ""

    def start(self) -> None:
        pass

    def stop(self) -> float | None:
        return None


class SweeperTool(Tool):
    name = "sweeper (10 Hz)"

    def start(self) -> None:
        self.meters = energy.open_meters("auto", gpu_indices=())
        self.sampler = energy.EnergySampler(self.meters.meters, sample_hz=10.0)
        self.sampler.start()

    def stop(self) -> float | None:
        summary = self.sampler.stop()
        self.meters.close()
        self.note = summary.source
        return summary.energy_j


class CodeCarbonTool(Tool):
    name = "codecarbon (offline)"

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def start(self) -> None:
        from codecarbon import OfflineEmissionsTracker

        self.tracker = OfflineEmissionsTracker(
            country_iso_code="USA", measure_power_secs=1, save_to_file=False,
            log_level="error", output_dir=self.workdir,
        )
        self.tracker.start()

    def stop(self) -> float | None:
        self.tracker.stop()
        data = self.tracker.final_emissions_data
        self.note = f"cpu {data.cpu_power:.0f} W, ram {data.ram_power:.0f} W"
        return float(data.energy_consumed) * KWH_J


class CarbonTrackerTool(Tool):
    name = "carbontracker"

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def start(self) -> None:
        from carbontracker.tracker import CarbonTracker

        # Two monitored epochs: after its last one carbontracker deletes its own tracker,
        # so this stretch is its first, read before stop().
        common = dict(epochs=2, monitor_epochs=2, epochs_before_pred=0, update_interval=1,
                      log_dir=self.workdir, verbose=0, ignore_errors=True)
        self.tracker = CarbonTracker(**common)
        found = getattr(self.tracker, "tracker", None)
        readable = [c.name for c in getattr(found, "components", []) if c.available()]
        self.note = ("its own CPU table: half the TDP, constant" if readable == ["cpu"]
                     else "measured: " + ", ".join(readable))
        if not readable:
            self.tracker.stop()
            # No RAPL and no GPU: carbontracker has nothing to read. Its simulated CPU
            # (TDP x utilisation) is then the like-for-like figure, with the TDP sweeper's
            # estimate meter uses.
            meter = energy.EstimateMeter()
            tdp = meter.cpu_tdp_w
            meter.close()
            self.tracker = CarbonTracker(**common, sim_cpu="cpu", sim_cpu_tdp=tdp)
            self.note = f"simulated CPU, TDP {tdp:g} W (no RAPL/GPU to read)"
        self.tracker.epoch_start()

    def stop(self) -> float | None:
        self.tracker.epoch_end()
        kwh = float(self.tracker.tracker.total_energy_per_epoch().sum())
        self.tracker.stop()
        return kwh * KWH_J


class Eco2AITool(Tool):
    name = "eco2AI"

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def start(self) -> None:
        import eco2ai

        self.tracker = eco2ai.Tracker(
            project_name="tool_overhead", file_name=os.path.join(self.workdir, "eco2ai.csv"),
            measure_period=1, alpha_2_code="US", ignore_warnings=True,
        )
        self.tracker.start()

    def stop(self) -> float | None:
        # Tracker.stop() as eco2AI 0.3.12 does it, keeping the total it resets afterwards.
        # Its every measurement adds to the total and then writes a CSV row, which fails
        # under pandas 2 (also in its background thread): the total is kept regardless.
        tracker = self.tracker
        tracker._scheduler.remove_job("job")
        tracker._scheduler.shutdown()
        self.note = "its CPU estimate (TDP x utilisation)"
        try:
            tracker._func_for_sched()
        except TypeError as exc:
            self.note += f"; its CSV log fails ({exc})"
        kwh = float(tracker._consumption)
        return kwh * KWH_J


@dataclass
class Results:
    steps_per_s: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    joules_per_step: list[float] = field(default_factory=list)
    start_stop_s: list[float] = field(default_factory=list)  # the tool's own start + stop
    cpu_ms_per_step: list[float] = field(default_factory=list)  # this process, tool threads in
    note: str = ""


def available_tools(workdir: str) -> tuple[list[Tool], list[str]]:
    tools: list[Tool] = [Tool(), SweeperTool(), CodeCarbonTool(workdir)]
    missing = []
    for module, make in (("carbontracker", CarbonTrackerTool), ("eco2ai", Eco2AITool)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                __import__(module)
            tools.append(make(workdir))
        except Exception as exc:  # not installed, or broken on this machine
            missing.append(f"{module}: {type(exc).__name__}: {exc}")
    return tools, missing


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def quiet(call: Callable[[], object]) -> object:
    """Run a tool's call with its console chatter swallowed."""
    with (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),
          warnings.catch_warnings()):
        warnings.simplefilter("ignore")
        return call()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60, help="training steps per stretch")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    x, y = torch.rand(2048, 3, 32, 32), torch.randint(0, 10, (2048,))
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train(model, opt, x, y, 5, args.batch)  # warm-up
    with tempfile.TemporaryDirectory() as workdir:
        tools, missing = available_tools(workdir)
        results = {t.name: Results() for t in tools}
        load_before = os.getloadavg()
        started = time.perf_counter()
        for r in range(args.rounds):
            order = tools[r % len(tools):] + tools[:r % len(tools)]
            speed: dict[str, float] = {}
            for tool in order:
                t_start = time.perf_counter()
                try:
                    quiet(tool.start)
                except Exception as exc:
                    results[tool.name].note = f"failed to start: {type(exc).__name__}: {exc}"
                    continue
                t0, cpu0 = time.perf_counter(), time.process_time()
                train(model, opt, x, y, args.steps, args.batch)
                elapsed = time.perf_counter() - t0
                results[tool.name].cpu_ms_per_step.append(
                    1e3 * (time.process_time() - cpu0) / args.steps)
                t_stop = time.perf_counter()
                try:
                    joules = quiet(tool.stop)
                except Exception as exc:
                    joules = None
                    results[tool.name].note = f"failed to stop: {type(exc).__name__}: {exc}"
                results[tool.name].start_stop_s.append(
                    (t0 - t_start) + (time.perf_counter() - t_stop))
                speed[tool.name] = args.steps / elapsed
                results[tool.name].steps_per_s.append(speed[tool.name])
                if isinstance(joules, float):
                    results[tool.name].joules_per_step.append(joules / args.steps)
                    results[tool.name].note = tool.note
            for name, value in speed.items():
                if "none" in speed:
                    results[name].ratios.append(value / speed["none"])
            print_table(results, r + 1, len(tools), args, time.perf_counter() - started,
                        load_before[0])
    for line in missing:
        print(f"not compared: {line}")
    return 0


def print_table(results: dict[str, Results], rounds: int, n_tools: int,
                args: argparse.Namespace, wall: float, load_before: float) -> None:
    """The table so far (printed after every round, so a cut-short run still reports)."""
    print(f"\n{rounds} round(s) x {n_tools} tools x {args.steps} steps (batch {args.batch}, "
          f"{torch.get_num_threads()} threads) in {wall:.0f} s; load average before "
          f"{load_before:.2f}, now {os.getloadavg()[0]:.2f}; {psutil.cpu_count()} logical CPUs")
    header = (f"{'tool':22} {'steps/s':>8}  {'ratio vs none: median [quartiles]':34} "
              f"{'CPU ms/step':>11} {'start+stop':>10} {'J/step':>8}  energy figure from")
    print(header)
    for name, res in results.items():
        if not res.steps_per_s:
            print(f"{name:22} {'-':>8}  {'-':34} {'-':>11} {'-':>10} {'-':>8}  {res.note}")
            continue
        low, high = quartiles(res.ratios) if res.ratios else (float("nan"),) * 2
        ratio = statistics.median(res.ratios) if res.ratios else float("nan")
        joules = (f"{statistics.median(res.joules_per_step):8.3f}" if res.joules_per_step
                  else f"{'-':>8}")
        print(f"{name:22} {statistics.median(res.steps_per_s):8.2f}  "
              f"{ratio:.4f} [{low:.3f}, {high:.3f}]{'':14} "
              f"{statistics.median(res.cpu_ms_per_step):11.1f} "
              f"{statistics.median(res.start_stop_s):9.2f}s {joules}  "
              f"{res.note or ('no energy figure' if name != 'none' else '')}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
