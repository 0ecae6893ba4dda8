"""How well do a network's size and layers predict energy and time per sample, held out
honestly, against the noise of measuring the same configuration again?

Two ways to run it:

    # ONE command: collect the protocol's runs on this machine, then print the result
    python benchmarks/estimator_accuracy.py --collect results/estimator_protocol
    python benchmarks/estimator_accuracy.py --collect /tmp/est-quick --quick   # 4 min check

    # only the analysis, on runs already in a store (one sweep)
    python benchmarks/estimator_accuracy.py --db results/estimator_protocol/estimator.db \
        --sweep estimator_protocol

The protocol (--collect), made to learn from (issue 24): the 14 study networks and the
small ones (cnn, mlp, resnet, mobilenet, vgg, vit) on 32x32x3 synthetic images, trained
through the real CLI (`python -m sweeper -m`) into a fresh SQLite store:
- every training epoch and every inference phase lasts at least --phase-s (3 s): a probe
  (2 epochs per network at the largest batch through the CLI, the second one timed, each
  sized from the MACs to last about 0.7 s) gives each network's training rate, and its
  `dataset.n_samples` is set so one epoch of the training split lasts 1.5 x --phase-s at
  that batch (smaller batches run longer on a CPU; a run's only epoch also carries the
  warm-up the probe's second epoch left out), and at least one full step; each pass after
  the first is re-sized from the rates the pass before measured (sizes only grow: the
  host's speed drifts between the probe and the runs); inference uses
  `inference.min_seconds`. The phases measured are printed, and any under --phase-s named;
- this machine's layer catalog is timed first (`mode=layers` at the protocol's smallest
  batch size, about a minute at batch 8), for the layer-time law
  (sweeper.predict.layer_time);
- each configuration is measured --repeats times (`repeat=0,1,2`) in passes over every
  network (repeat 0 of all, then repeat 1, ...), so the repeat noise is known: the mean
  relative distance of a run from the mean of its configuration's other repeats, printed
  beside 2x of it. Back to back, repeats would miss the host's drift over minutes, which
  the networks compared are exposed to;
- the machine's load (os.getloadavg) is printed before and after.
Measured wall time on an idle 2-core AMD EPYC VM (2026-12-07): 18.6 min, of which 59 s
of probe (4 CLI starts, two epochs per network), 61 s of layer catalog at batch 8 and 60
runs of 11-19 s each (one CLI start each: repeats run in passes). At batch 8 a step of
the largest networks stays near the 3 s floor, where at 16 one step of densenet121 alone
takes about 12 s. A second batch size (--batches 8,32) about doubles the collection. The
--quick check (5 small networks, batch sizes 16 and 64, 2 repeats, 0.5 s phases) took 7.2
min with the catalog at both batch sizes (5.2 min of it); at 16 alone 3.7 min (89 s of
catalog; 2026-12-07 03:03 UTC, load 1.1-1.3).

For each target (energy and time per training and per inference sample), on each hardware
and meter group, it prints the held-out errors of every candidate law fitted alone and of
the estimator's choice:
- by configuration: each configuration predicted by a fit of the others (its model stays
  in the fit at its other batch sizes);
- by model: each model, all its batch sizes, predicted by a fit of the other models (the
  case of a model never run). The chosen law is chosen inside every fold, and its 90%
  intervals' coverage of the held-out runs is measured (each run's band from the other
  models' residuals);
and the targets: by-model MAPE <= 20% for training (or <= 2x the repeat noise, whichever is
larger), inference within 30%, coverage 80-97%; each stated as met or not met.

`log-linear(macs, params, batch)` is the law the estimator used before it was scored by
model.
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sweeper.predict.heldout import (
    LooScore,
    all_candidates,
    choose_law,
    leave_one_config_out,
    leave_one_model_out,
)
from sweeper.predict.laws import fit_loglinear
from sweeper.predict.observations import load_observations
from sweeper.predict.types import Observation
from sweeper.run.sizing import layer_timer, run_activations, run_layers
from sweeper.store import open_store

TARGETS = ("train", "inference", "train_time", "inference_time")
PREVIOUS = "log-linear(macs, params, batch)"
LEVEL = 0.9

STUDY = ("lenet", "mobilenet_v1", "mobilenetv2", "efficientnetb0", "simpledla", "resnet18",
         "preactresnet18", "vgg19", "googlenet", "densenet121", "resnext29_2x64d", "senet18",
         "regnetx_200mf", "dpn26")
SMALL = ("cnn", "mlp", "resnet", "mobilenet", "vgg", "vit")
QUICK = ("lenet", "cnn", "mlp", "resnet", "mobilenet")
SWEEP = "estimator_protocol"
TEST_FRACTION = VAL_FRACTION = 0.05
TRAIN_FRACTION = (1 - TEST_FRACTION) * (1 - VAL_FRACTION)
# A training epoch is sized for this x --phase-s: the probe's rate varies with the load
# (at load 3-4 the --quick check's epochs came out 0.6-0.9 x the probe's prediction) and
# with the host's drift (2026-12-07, load about 1: 38 of 60 epochs came out at 0.44-0.99 x
# --phase-s at a margin of 1.3, the probe having run slow). Each pass after the first is
# also re-sized from the epochs the pass before measured (sizes only grow).
MARGIN = 1.5
# The synthetic data set needs at least one sample per class (10), and its test and
# validation splits a few more: two per class.
MIN_SAMPLES = 20
# Every run: synthetic CIFAR-sized images, the study's optimizer, one epoch, no idle
# baseline, no pause; an inference phase of at least --phase-s after one warm-up batch.
COMMON = ["dataset=synthetic", "dataset.image_size=32", "dataset.channels=3",
          f"dataset.test_fraction={TEST_FRACTION}", f"dataset.val_fraction={VAL_FRACTION}",
          "optimizer=sgd", "lr=0.001", "epochs=1", "device=cpu", "energy.idle.seconds=0",
          "inference.pause_s=0", "inference.warmup_batches=1", "inference.batches=2",
          "sweeper.progress=false", "loader.workers=0"]


# --- collecting -----------------------------------------------------------------------------


def _cli(args: list[str], out: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sweeper", "-m", *args], cwd=out,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the sweep failed ({' '.join(args[-6:])}):\n{proc.stderr[-3000:]}")
    shown = " ".join(a for a in args if a.startswith(("model=", "batch=", "dataset.n_samples")))
    print(f"  {time.monotonic() - started:6.1f} s  {shown}", flush=True)


def _guess_steps(model: str, batch: int, epoch_s: float) -> int:
    """Steps per probe epoch (1, 4, 16 or 64) for about `epoch_s`, guessed from the MACs at
    about 10 GFLOP/s of training: only picks the probe's tier, the CLI measures the rate."""
    import torch

    from sweeper.models import build_model, describe_model

    with torch.device("meta"):
        net = build_model(model, (3, 32, 32), 10)
    rate = 1e10 / (6.0 * describe_model(net, (3, 32, 32)).macs_per_sample)
    wanted = epoch_s * rate / batch
    return max((k for k in (1, 4, 16, 64) if k <= wanted), default=1)


def probe(out: Path, models: Sequence[str], batch: int, epoch_s: float = 0.7
          ) -> dict[str, float]:
    """Seconds per training sample of each network at `batch`, from the second of two
    epochs (the first carries allocation and warm-up) through the real CLI. Each network's
    epochs are sized from its MACs to last about `epoch_s` (one step for the largest: one
    step of densenet121 at batch 16 takes about 10 s on 2 idle cores), so small networks
    are timed over many steps, not one step and its fixed costs; one CLI start per size."""
    tiers: dict[int, list[str]] = defaultdict(list)
    for model in models:
        tiers[_guess_steps(model, batch, epoch_s)].append(model)
    db = out / "probe.db"
    for steps, names in sorted(tiers.items()):
        n = max(math.ceil(steps * batch / TRAIN_FRACTION), MIN_SAMPLES)
        _cli([*COMMON, "epochs=2", f"dataset.n_samples={n}", f"batch={batch}",
              "inference.min_seconds=0", "inference.batches=1", "inference.warmup_batches=0",
              f"model={','.join(names)}",
              f"storage.url=sqlite:///{db}", "sweeper.name=probe",
              f"hydra.sweep.dir={out / 'probe' / str(steps)}"], out)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select r.model, p.duration_s / p.samples from phases p join runs r on "
            "r.id = p.run_id where p.kind = 'train_epoch' and r.status = 'completed' "
            "order by p.run_id, p.start_s").fetchall()
    return {model: rate for model, rate in rows}  # the last (second) epoch wins


def _size_for(seconds_per_sample: float, phase_s: float, batches: Sequence[int]) -> int:
    """`dataset.n_samples` whose training split lasts MARGIN x phase_s at this rate, and
    holds at least one full step of the largest batch."""
    return max(math.ceil(MARGIN * phase_s / seconds_per_sample / TRAIN_FRACTION),
               math.ceil(max(batches) / TRAIN_FRACTION), MIN_SAMPLES)


def measured_rates(db: Path) -> dict[str, float]:
    """Seconds per training sample of each network's latest protocol epoch (the slowest
    batch size's), to re-size the next pass."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select r.model, max(p.duration_s / p.samples) from phases p join runs r on "
            "r.id = p.run_id where p.kind = 'train_epoch' and r.status = 'completed' and "
            "p.samples > 0 and r.id = (select max(r2.id) from runs r2 where r2.model = "
            "r.model and r2.batch = r.batch and r2.status = 'completed') group by r.model"
        ).fetchall()
    return {model: rate for model, rate in rows}


def collect(out: Path, models: Sequence[str], batches: Sequence[int], repeats: int,
            phase_s: float) -> str:
    """Runs the protocol into out/estimator.db; returns its URL."""
    out = out.resolve()  # the CLI runs inside `out`: its store URLs must not be relative
    out.mkdir(parents=True, exist_ok=True)
    db = out / "estimator.db"
    if db.exists():
        raise SystemExit(f"{db} exists: give --collect a new folder, or analyse it with --db")
    # Probed at the largest batch (the fastest per sample on a CPU): smaller ones run longer.
    print(f"probe: training rate of {len(models)} networks at batch {max(batches)}", flush=True)
    started = time.monotonic()
    seconds = probe(out, models, max(batches))
    missing = [m for m in models if m not in seconds]
    if missing:
        raise SystemExit(f"the probe measured no training epoch for: {', '.join(missing)}")
    # At least one full step: the largest networks take longer than --phase-s per step.
    sizes = {m: _size_for(seconds[m], phase_s, batches) for m in models}
    per_run = {m: max(MARGIN * phase_s, seconds[m] * max(batches)) + phase_s + 3.5
               for m in models}
    planned = sum(per_run.values()) * len(batches) * repeats + 6.0 * len(models) * repeats
    print(f"probe took {time.monotonic() - started:.0f} s; collection planned at about "
          f"{planned / 60:.1f} min ({len(models)} networks x {len(batches)} batch size(s) x "
          f"{repeats} repeats) after the layer catalog", flush=True)
    # This machine's layer catalog (mode=layers), for the layer-time law, at the smallest
    # batch size (the law is linear in it; at 16 and 64 the catalog took 5 min here).
    _cli(["mode=layers", "device=cpu", f"batch={min(batches)}",
          f"storage.url=sqlite:///{db}", f"hydra.sweep.dir={out / 'multirun' / 'layers'}"], out)
    # Repeats in passes over every network, not back to back: the host's speed drifts by
    # tens of percent over minutes (the same step timed 88 and 160-190 ms four minutes
    # apart, 2026-12-07), and the repeat noise is meant as the error of measuring a
    # configuration again at another time of the protocol, as the networks compared were.
    for repeat in range(repeats):
        if repeat:
            for model, rate in measured_rates(db).items():
                if model in sizes:
                    sizes[model] = max(sizes[model], _size_for(rate, phase_s, batches))
        for model in models:
            _cli([*COMMON, f"model={model}", f"dataset.n_samples={sizes[model]}",
                  f"batch={','.join(map(str, batches))}", f"repeat={repeat}",
                  f"inference.min_seconds={phase_s}", f"storage.url=sqlite:///{db}",
                  f"sweeper.name={SWEEP}",
                  f"hydra.sweep.dir={out / 'multirun' / f'{model}-{repeat}'}"], out)
    print(f"collected in {(time.monotonic() - started) / 60:.1f} min (probe included)")
    return f"sqlite:///{db}"


# --- analysing ------------------------------------------------------------------------------


def _pct(score: object) -> str:
    return "-" if score is None else f"{score.mape:7.1%}"  # type: ignore[attr-defined]


def repeat_noise(obs: Sequence[Observation]) -> float | None:
    """Mean relative distance of a run from the mean of its configuration's other repeats:
    the error no law can beat on this machine (None without repeats)."""
    by_config: dict[tuple, list[float]] = defaultdict(list)
    for o in obs:
        by_config[o.config_key].append(o.per_sample)
    errors = [abs(v - np.mean(vs[:i] + vs[i + 1:])) / v
              for vs in by_config.values() if len(vs) > 1 for i, v in enumerate(vs)]
    return float(np.mean(errors)) if errors else None


def phase_lengths(url: str, sweep: str | None) -> None:
    """The shortest training and inference phase of each run, and those under the floor."""
    if not url.startswith("sqlite:///"):
        return
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        rows = conn.execute(
            "select r.model, r.batch, p.kind, min(p.duration_s) from phases p "
            "join runs r on r.id = p.run_id join sweeps s on s.id = r.sweep_id "
            "where p.kind in ('train_epoch', 'inference') and r.status = 'completed' "
            + ("and s.name = ? " if sweep else "") + "group by r.model, r.batch, p.kind",
            (sweep,) if sweep else ()).fetchall()
    if not rows:
        return
    by_kind = defaultdict(list)
    for model, batch, kind, duration in rows:
        by_kind[kind].append((duration, f"{model} b{batch}"))
    for kind, values in sorted(by_kind.items()):
        shortest = min(values)
        print(f"phases '{kind}': shortest {shortest[0]:.2f} s ({shortest[1]}), median "
              f"{np.median([v for v, _ in values]):.2f} s over {len(values)} configurations")
    return


def analyse(url: str, sweep: str | None, phase_s: float | None = None) -> list[str]:
    """Prints every group's scores; returns the target lines (met or not met)."""
    store = open_store(url)
    verdicts: list[str] = []
    phase_lengths(url, sweep)
    if phase_s is not None and url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            short = conn.execute(
                "select r.model, r.batch, p.kind, p.duration_s from phases p join runs r on "
                "r.id = p.run_id where p.kind in ('train_epoch', 'inference') and "
                "p.duration_s < ?", (phase_s,)).fetchall()
        if short:
            print(f"{len(short)} phase(s) shorter than {phase_s:g} s: " + ", ".join(
                f"{m} b{b} {k} {d:.2f} s" for m, b, k, d in short[:8]))
    for target in TARGETS:
        rows = load_observations(store, target, sweep=sweep, activations=run_activations,
                                 layers=run_layers, layer_time=layer_timer(store))
        groups = defaultdict(list)
        for o in rows:
            groups[o.group].append(o)
        for (hardware, meter), obs in sorted(groups.items()):
            verdicts.append(_analyse_group(target, hardware, meter, obs))
    return verdicts


def _analyse_group(target: str, hardware: str, meter: str, obs: list[Observation]) -> str:
    models = len({o.model_key for o in obs})
    configs = len({o.config_key for o in obs})
    noise = repeat_noise(obs)
    noise_text = "-" if noise is None else f"{noise:.1%} (2x: {2 * noise:.1%})"
    print(f"\n{target} on {hardware} ({meter}): {len(obs)} runs, {configs} configurations, "
          f"{models} models; repeat noise {noise_text}")
    print(f"  {'law':70} {'MAPE by config':>14} {'MAPE by model':>14}")
    laws = dict(all_candidates(obs))
    laws.setdefault(PREVIOUS, lambda o: fit_loglinear(o))
    for name, factory in laws.items():
        loco = leave_one_config_out(obs, factory)
        lomo = leave_one_model_out(obs, factory)
        mark = "  (before)" if name == PREVIOUS else ""
        print(f"  {name + mark:70} {_pct(loco):>14} {_pct(lomo):>14}")
    law, chosen = choose_law(obs)
    nested = leave_one_model_out(obs)
    loco = leave_one_config_out(obs, laws[chosen])
    coverage = None if nested is None else nested.coverage(LEVEL)
    print(f"  {'chosen: ' + chosen:70} {_pct(loco):>14} {_pct(nested):>14}"
          "  (by model: chosen in each fold)")
    if nested is not None:
        picked = ", ".join(f"{n} x{k}" for n, k in sorted(
            {n: nested.laws.count(n) for n in set(nested.laws)}.items()))
        print(f"  the folds chose: {picked}")
        print("  per network, mean held-out error: " + _per_network(obs, nested))
    print(f"  chosen, fitted on all runs: {law.describe()}")
    print(f"  {LEVEL:.0%} intervals (by model) held "
          + ("-" if coverage is None else f"{coverage:.1%}") + " of the held-out runs")
    return _verdict(target, nested, noise, coverage)


def _per_network(obs: Sequence[Observation], score: LooScore) -> str:
    """Each network's mean signed error when held out (predicted over actual, less one),
    most under-predicted first: where the law is biased, not just noisy."""
    model_of = {o.run_id: o.model for o in obs}
    errors: dict[str, list[float]] = {}
    for run_id, actual, predicted in zip(score.run_ids, score.actual_j, score.predicted_j,
                                         strict=True):
        errors.setdefault(model_of[run_id], []).append(predicted / actual - 1.0)
    mean = {m: sum(e) / len(e) for m, e in errors.items()}
    return ", ".join(f"{m} {v:+.0%}" for m, v in sorted(mean.items(), key=lambda kv: kv[1]))


def _verdict(target: str, nested: object, noise: float | None, coverage: float | None) -> str:
    if nested is None:
        return f"{target}: too few models to score by model"
    mape = nested.mape  # type: ignore[attr-defined]
    if target.startswith("train"):
        floor = 2 * noise if noise is not None else 0.0
        limit = max(0.20, floor)
        basis = "20%" if limit == 0.20 else (
            f"20% or 2x the repeat noise, {limit:.1%}, whichever is larger")
    else:
        limit, basis = 0.30, "30%"
    met = "met" if mape <= limit else "NOT met"
    cover = "-" if coverage is None else (
        f"{coverage:.1%} ({'met' if 0.80 <= coverage <= 0.97 else 'NOT met'}: 80-97%)")
    return (f"{target:15} by-model MAPE {mape:6.1%} vs target <= {basis}: {met}; "
            f"{LEVEL:.0%} interval coverage {cover}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", help="analyse a store: SQLite file or SQLAlchemy URL")
    source.add_argument("--collect", type=Path, help="run the protocol into this new folder")
    parser.add_argument("--sweep", default=None, help="with --db: one sweep's runs")
    parser.add_argument("--quick", action="store_true",
                        help="a short check: 5 small networks, 2 repeats, 0.5 s phases")
    parser.add_argument("--batches", default=None, help="comma-separated (default 8)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3")
    parser.add_argument("--phase-s", type=float, default=None, help="default 3")
    parser.add_argument("--models", default=None, help="comma-separated (default: all 20)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    print(f"load before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
          f"(1, 5, 15 min) on {os.cpu_count()} CPUs")
    phase_s = None
    if args.collect is not None:
        models = (args.models.split(",") if args.models else
                  list(QUICK) if args.quick else [*STUDY, *SMALL])
        batches = [int(b) for b in (args.batches or ("16,64" if args.quick else "8")).split(",")]
        repeats = args.repeats or (2 if args.quick else 3)
        phase_s = args.phase_s or (0.5 if args.quick else 3.0)
        url, sweep = collect(args.collect, models, batches, repeats, phase_s), SWEEP
    else:
        url = args.db if "://" in args.db else f"sqlite:///{args.db}"
        sweep = args.sweep
    verdicts = analyse(url, sweep, phase_s)
    load_after = os.getloadavg()
    print(f"\nload after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print("targets (issue 24):")
    for line in verdicts:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
