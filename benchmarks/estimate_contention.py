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


def policy_env(policy: str) -> dict[str, str]:
    """"unset" (libgomp spins a while, then sleeps), "PASSIVE", "ACTIVE", or NAME=VALUE
    (e.g. GOMP_SPINCOUNT=10000: spin that many iterations before sleeping)."""
    if policy == "unset":
        return {}
    if "=" in policy:
        name, value = policy.split("=", 1)
        return {name: value}
    return {"OMP_WAIT_POLICY": policy}


def trial(threads: int, policy: str, steps: int, batch: int) -> dict[str, float]:
    env = dict(os.environ)
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(name, None)
    env.update(policy_env(policy))
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
    parser.add_argument("--policies", nargs="+", default=["unset", "PASSIVE"],
                        help="OpenMP wait settings: unset, PASSIVE, ACTIVE or NAME=VALUE, "
                             "e.g. GOMP_SPINCOUNT=10000")
    parser.add_argument("--spinners", type=int, default=1,
                        help="busy-loop processes in the 'busy loop on' conditions")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    conditions = [
        (threads, policy, busy)
        for busy in (False, True) for threads in (1, cores) for policy in args.policies
        if not (threads == 1 and policy != "unset")  # one thread never waits for a sibling
    ]
    results: dict[tuple[int, str, bool], list[dict[str, float]]] = {c: [] for c in conditions}
    load_before = os.getloadavg()
    started = time.perf_counter()
    for _ in range(args.rounds):
        for threads, policy, busy in conditions:
            spinners = [multiprocessing.Process(target=_spin, daemon=True)
                        for _ in range(args.spinners if busy else 0)]
            for spinner in spinners:
                spinner.start()
            if spinners:
                time.sleep(0.2)
            try:
                results[(threads, policy, busy)].append(
                    trial(threads, policy, args.steps, args.batch)
                )
            finally:
                for spinner in spinners:
                    spinner.terminate()
                    spinner.join()
    print(f"estimate meter inputs under contention: {args.steps} resnet steps at batch "
          f"{args.batch} (8x8 inputs), {cores} logical cores, {args.rounds} rounds, medians; "
          f"busy loop: {args.spinners} spinning process(es)")
    print(f"{'threads':>7} {'OpenMP wait':>21} {'busy loop':>9} {'CPU s':>7} {'wall s':>7} "
          f"{'CPU/wall':>8}  {'CPU vs quiet':>12}")
    for threads, policy, busy in conditions:
        rows = results[(threads, policy, busy)]
        cpu = statistics.median(r["cpu_s"] for r in rows)
        wall = statistics.median(r["wall_s"] for r in rows)
        quiet = statistics.median(r["cpu_s"] for r in results[(threads, policy, False)])
        print(f"{threads:>7} {policy:>21} "
              f"{'on' if busy else 'off':>9} {cpu:7.2f} {wall:7.2f} {cpu / wall:8.2f}  "
              f"{cpu / quiet:11.2f}x")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
