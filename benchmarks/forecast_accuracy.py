"""Forecast error (MAPE) of the training energy against the profiling window size.

Trains a small grid of real runs (digits on the CPU by default) with the project's own
trainer and energy meters, recording the cumulative energy and time at every step
boundary (sweeper.predict.trace.StepTrace). Every window is then evaluated on the same
runs with the ProfileWindow's rule, so windows are compared without run-to-run noise.
The actual value is the run's measured training energy (training steps only, as E_tr).

    python benchmarks/forecast_accuracy.py
    python benchmarks/forecast_accuracy.py --models cnn resnet vit --batches 16 32 --epochs 8

Target: MAPE <= 5% with a 5% window.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from sweeper import energy  # noqa: E402
from sweeper.datasets import load_dataset  # noqa: E402
from sweeper.models import build_model  # noqa: E402
from sweeper.predict.trace import StepTrace, forecast_error, forecast_from_trace  # noqa: E402
from sweeper.training.loaders import make_loader  # noqa: E402
from sweeper.training.trainer import Trainer, make_optimizer  # noqa: E402

TARGET_WINDOW, TARGET_MAPE = 0.05, 0.05


@dataclass(frozen=True)
class TracedRun:
    label: str
    steps: int
    energy_j: list[float]
    time_s: list[float]
    source: str


def traced_run(
    model_name: str, batch: int, args: argparse.Namespace, data: object
) -> TracedRun:
    torch.manual_seed(args.seed)
    model = build_model(model_name, data.input_shape, data.num_classes)  # type: ignore[attr-defined]
    optimizer = make_optimizer("adam", model.parameters(), args.lr, 0.9, 0.0)
    device = torch.device(args.device)
    trainer = Trainer(model, optimizer, device, "fp32")
    loader = make_loader(data.train, batch, shuffle=True, seed=args.seed)  # type: ignore[attr-defined]
    gpus = [device.index or 0] if device.type == "cuda" else ()
    meters = energy.open_meters(args.meter, gpu_indices=gpus)
    sampler = energy.EnergySampler(meters.meters, sample_hz=args.sample_hz)
    trace = StepTrace(sampler.checkpoint)  # settled between slow refreshes by stop()
    sampler.start()
    try:
        trace.start()
        for _ in range(args.epochs):
            trainer.train_epoch(loader, trace.on_step)
    finally:
        summary = sampler.stop()
        meters.close()
    return TracedRun(f"{model_name} b{batch}", trace.steps, trace.energy_j, trace.time_s,
                     summary.source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet", "vit", "mobilenet"])
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--windows", nargs="+", type=float, default=[0.01, 0.05, 0.10, 0.20])
    parser.add_argument("--warmup-steps", type=int, default=2,
                        help="steps skipped before the window (config forecast.warmup_steps)")
    parser.add_argument("--meter", default="auto", choices=energy.CHOICES)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 keeps CPU time free of spin-waiting on busy hosts")
    parser.add_argument("--sample-hz", type=float, default=10.0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, seed=args.seed)
    started = time.perf_counter()
    runs = [traced_run(m, b, args, data) for m, b in itertools.product(args.models, args.batches)]
    windows = sorted(args.windows)

    header = f"{'run':<14} {'steps':>6} {'E_tr (J)':>9} " + " ".join(
        f"{w:>8.0%}" for w in windows)
    print(f"forecast error of E_tr by profiling window ({args.dataset}, {args.device}, "
          f"{args.threads} thread(s), {args.warmup_steps} warm-up steps, meter "
          f"{runs[0].source})")
    print(header)
    errors: dict[float, list[float]] = {w: [] for w in windows}
    time_errors: dict[float, list[float]] = {w: [] for w in windows}
    for run in runs:
        actual_j = run.energy_j[-1] - run.energy_j[0]
        actual_s = run.time_s[-1] - run.time_s[0]
        cells = []
        for w in windows:
            f = forecast_from_trace(run.energy_j, run.time_s, w, args.warmup_steps)
            errors[w].append(forecast_error(f.energy_j, actual_j))
            time_errors[w].append(forecast_error(f.duration_s, actual_s))
            cells.append(f"{errors[w][-1]:>+8.1%}")
        print(f"{run.label:<14} {run.steps:>6} {actual_j:>9.1f} " + " ".join(cells))
    print(f"{'MAPE E_tr':<31} " + " ".join(
        f"{statistics.fmean(abs(e) for e in errors[w]):>8.1%}" for w in windows))
    print(f"{'MAPE time':<31} " + " ".join(
        f"{statistics.fmean(abs(e) for e in time_errors[w]):>8.1%}" for w in windows))
    if TARGET_WINDOW in errors:
        mape = statistics.fmean(abs(e) for e in errors[TARGET_WINDOW])
        verdict = "met" if mape <= TARGET_MAPE else "NOT met"
        print(f"target MAPE <= {TARGET_MAPE:.0%} with a {TARGET_WINDOW:.0%} window: "
              f"{mape:.1%} ({verdict}); {len(runs)} runs in {time.perf_counter() - started:.0f} s")
    if "estimate" in runs[0].source:
        print("energy from the estimate meter (CPU time x rated power): relative, not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
