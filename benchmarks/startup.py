"""Whole-process start-up cost of sweeper's commands, now against an earlier commit.

    python benchmarks/startup.py                 # this checkout only
    python benchmarks/startup.py --ref 0dbaca6   # side by side with that commit

Each command runs --repeats times, interleaved with the reference so that machine load hits
both alike; the table gives the median wall time and the median CPU time (user + system of
the process and its children). CPU time is the figure to compare on a busy machine: wall
time there mostly measures the other load. The reference runs from a temporary git
worktree with PYTHONPATH pointing at it (its layout needs no install).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(db_dir: Path) -> dict[str, list[str]]:
    """The commands, in order: the run creates the database the listings then read."""
    py = sys.executable
    # What the `optuna` console script runs (a virtual environment may not have the script).
    optuna_cli = [py, "-c", "import sys; from optuna.cli import main; sys.exit(main())"]
    run_db = f"sqlite:///{db_dir / 'run.db'}"
    return {
        "sweeper --help": [py, "-m", "sweeper", "--help"],
        "sweeper --version": [py, "-m", "sweeper", "--version"],
        "optuna --help (reference CLI)": [*optuna_cli, "--help"],
        "1-epoch run (digits, mlp)": [
            py, "-m", "sweeper", "model=mlp", "epochs=1", "dataset.max_samples=300",
            "inference.batches=2", "sweeper.progress=false", f"storage.url={run_db}",
        ],
        "sweeper.front --list": [py, "-m", "sweeper.front", "--list", "--storage", run_db],
        "optuna studies (reference CLI)": [*optuna_cli, "studies", "--storage", run_db],
    }


def measure(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    wall_s = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall_s, cpu_s, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", help="a commit to compare with (run from a temporary worktree)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sweeper-startup-"))
    trees: dict[str, tuple[Path, dict[str, str]]] = {
        "now": (work, {**os.environ, "HYDRA_FULL_ERROR": "0"}),
    }
    ref_tree = work / "ref"
    if args.ref:
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(ref_tree), args.ref],
                       cwd=ROOT, check=True)
        trees[args.ref] = (ref_tree, {**os.environ, "PYTHONPATH": str(ref_tree),
                                      "HYDRA_FULL_ERROR": "0"})
    try:
        results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for _ in range(args.repeats):
            for label, (cwd, env) in trees.items():
                db_dir = work / "db" / label  # commits may write different schemas
                db_dir.mkdir(parents=True, exist_ok=True)
                for name, argv in commands(db_dir).items():
                    results.setdefault((name, label), []).append(measure(argv, cwd, env))
        load = os.getloadavg()
    finally:
        if args.ref:
            subprocess.run(["git", "worktree", "remove", "--force", str(ref_tree)], cwd=ROOT)
        shutil.rmtree(work, ignore_errors=True)

    labels = list(trees)
    header = "command".ljust(32) + "".join(
        f"{label + ' wall':>14}{label + ' CPU':>14}" for label in labels
    )
    print(header)
    for name in commands(work):
        row = name.ljust(32)
        for label in labels:
            runs = results[(name, label)]
            failed = any(code != 0 for _, _, code in runs)
            wall = statistics.median(w for w, _, _ in runs)
            cpu = statistics.median(c for _, c, _ in runs)
            mark = "!" if failed else " "
            row += f"{wall:13.2f}s{mark}{cpu:12.2f}s "
        print(row)
    print(f"median of {args.repeats} interleaved runs; '!' = a run exited non-zero; "
          f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
