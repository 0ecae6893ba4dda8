"""Why the CPU estimate meter inflates on a busy machine: a controlled experiment.

The estimate meter counts this process's CPU time (sweeper.energy.estimate). The suspect:
torch's OpenMP intra-op threads busy-wait (spin) at the end of every parallel region for
their siblings; when another process holds one of the cores, a sibling is descheduled and
the others spin for a whole scheduler slice, and that spinning is CPU time. The same work
then "costs" more CPU seconds, so more estimated joules.

Each trial is a fresh subprocess (OMP_WAIT_POLICY is read once, when OpenMP starts) that
trains the same model on the same data for a fixed number of steps and reports its CPU
seconds and wall time. Conditions: intra-op threads 1 or all cores, OMP_WAIT_POLICY unset
(libgomp spins) or PASSIVE, and a busy loop (one process spinning on one core) off or on.
Conditions are interleaved round by round so machine noise hits them alike.

    python benchmarks/estimate_contention.py --steps 150 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, time
import torch, psutil
from sweeper.models import build_model
threads, steps, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model("resnet", (1, 8, 8), 10)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(batch, 1, 8, 8), torch.randint(0, 10, (batch,))
for _ in range(5):  # warm-up, not counted
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
proc = psutil.Process()
c0, t0 = proc.cpu_times(), time.perf_counter()
for _ in range(steps):
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
c1, t1 = proc.cpu_times(), time.perf_counter()
cpu = (c1.user + c1.system) - (c0.user + c0.system)
print(json.dumps({"cpu_s": cpu, "wall_s": t1 - t0}))
"""


def _spin() -> None:
    while True:
        pass


def trial(threads: int, passive: bool, steps: int, batch: int) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(threads), str(steps), str(batch)],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    conditions = [
        (threads, passive, busy)
        for busy in (False, True) for threads in (1, cores) for passive in (False, True)
        if not (threads == 1 and passive)  # one thread never waits for a sibling
    ]
    results: dict[tuple[int, bool, bool], list[dict[str, float]]] = {c: [] for c in conditions}
    load_before = os.getloadavg()
    started = time.perf_counter()
    for _ in range(args.rounds):
        for threads, passive, busy in conditions:
            spinner = None
            if busy:
                spinner = multiprocessing.Process(target=_spin, daemon=True)
                spinner.start()
                time.sleep(0.2)
            try:
                results[(threads, passive, busy)].append(
                    trial(threads, passive, args.steps, args.batch)
                )
            finally:
                if spinner is not None:
                    spinner.terminate()
                    spinner.join()
    print(f"estimate meter inputs under contention: {args.steps} resnet steps at batch "
          f"{args.batch} (8x8 inputs), {cores} logical cores, {args.rounds} rounds, medians")
    print(f"{'threads':>7} {'OMP_WAIT_POLICY':>16} {'busy loop':>9} {'CPU s':>7} {'wall s':>7} "
          f"{'CPU/wall':>8}  {'CPU vs quiet':>12}")
    for threads, passive, busy in conditions:
        rows = results[(threads, passive, busy)]
        cpu = statistics.median(r["cpu_s"] for r in rows)
        wall = statistics.median(r["wall_s"] for r in rows)
        quiet = statistics.median(r["cpu_s"] for r in results[(threads, passive, False)])
        print(f"{threads:>7} {'PASSIVE' if passive else '(unset)':>16} "
              f"{'on' if busy else 'off':>9} {cpu:7.2f} {wall:7.2f} {cpu / wall:8.2f}  "
              f"{cpu / quiet:11.2f}x")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
