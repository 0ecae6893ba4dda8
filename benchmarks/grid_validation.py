"""How long a grid takes to be checked before its first job, by its size.

    python benchmarks/grid_validation.py                  # 1,000 / 5,000 / 10,000 jobs
    python benchmarks/grid_validation.py --sizes 4999

The grid is model=mlp,cnn x batch=32,64 x lr=1e-3,2e-3 x seed=range(...) (the shape of a
study repeated over seeds). "now" is sweeper's one pass (sweeper.app.grid_check: each
distinct configuration composed once, each new lr or seed value checked on its own), in a
fresh process each so torch's import is counted. "per job" is what the earlier code did:
Hydra's composition and build_spec for every job, timed on --sample jobs and multiplied
out, once for sweeper's check and once more for Hydra's basic sweeper's own (two passes).
The load average is printed with the figures: on a shared machine wall time follows it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from sweeper.app.callbacks import grid_job_overrides
from sweeper.app.grid_check import check_grid
from sweeper.config.spec import build_spec
from hydra.core.global_hydra import GlobalHydra

size, sample, conf = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    cfg = compose("config", return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = ["model=mlp,cnn", "batch=32,64", "lr=1e-3,2e-3",
                                    f"seed=range(0,{size // 8})"]
    jobs = grid_job_overrides(cfg)
    t1 = time.perf_counter()
    check = check_grid(cfg, jobs)
    t2 = time.perf_counter()
    loader = GlobalHydra.instance().config_loader()
    for overrides in jobs[:sample]:
        build_spec(loader.load_sweep_config(cfg, list(overrides)))
    t3 = time.perf_counter()
print(json.dumps({"jobs": check.jobs, "distinct": len(check.representatives),
                  "import_s": t1 - t0, "check_s": t2 - t1,
                  "per_job_s": (t3 - t2) / sample}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--sample", type=int, default=20)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"{'jobs':>7} {'distinct':>9} {'now: one pass':>15} {'(+ imports)':>12} "
          f"{'per job x2 (extrapolated)':>27}")
    for size in args.sizes:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(size), str(args.sample), str(ROOT / "conf")],
            env=env, capture_output=True, text=True, timeout=1800, check=True,
        )
        wall_s = time.perf_counter() - t0
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        before_s = 2 * r["per_job_s"] * r["jobs"]
        print(f"{r['jobs']:>7,} {r['distinct']:>9} {r['check_s']:>14.2f}s "
              f"{r['import_s']:>11.2f}s {before_s:>26.0f}s   (process {wall_s:.1f} s)")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {os.cpu_count()} "
          f"CPUs; 'per job' = {args.sample} jobs composed and checked, times jobs, times 2")


if __name__ == "__main__":
    main()
