"""OpenMP threads that spin only briefly while they wait, set before torch loads.

torch's intra-op threads (libgomp) busy-wait at the end of every parallel region for their
siblings. On a machine where other processes hold cores a sibling is descheduled, and the
waiting threads spin through whole scheduler slices: that spinning is CPU time, which the
estimate meter turns into joules, and it slows the work by orders of magnitude. Sleeping
at once (OMP_WAIT_POLICY=PASSIVE) costs a wake-up at every parallel region instead, which
dominates the small ops of small models. Measured on the 2-core VM with 150 resnet steps
on 8x8 inputs (benchmarks/estimate_contention.py, benchmarks/README.md), wall time quiet /
with two busy processes: libgomp's default 0.99 s / 159 s, PASSIVE 2.42 s / 4.40 s,
GOMP_SPINCOUNT=1000 (spin ~1000 iterations, then sleep) 1.35 s / 5.08 s. So
`python -m sweeper` sets GOMP_SPINCOUNT=1000 before anything imports torch, unless the
environment sets OMP_WAIT_POLICY or GOMP_SPINCOUNT (OMP_WAIT_POLICY=ACTIVE: always spin;
PASSIVE: never). Runtimes other than libgomp ignore it. Each run records the setting in
runs.hardware.
"""

from __future__ import annotations

import os

OMP_WAIT_POLICY = "OMP_WAIT_POLICY"
GOMP_SPINCOUNT = "GOMP_SPINCOUNT"
DEFAULT_SPINCOUNT = "1000"


def limit_spinning() -> str:
    """Set GOMP_SPINCOUNT unless the user chose a wait setting; return the one in force."""
    if OMP_WAIT_POLICY not in os.environ and GOMP_SPINCOUNT not in os.environ:
        os.environ[GOMP_SPINCOUNT] = DEFAULT_SPINCOUNT
    return wait_policy()


def wait_policy() -> str:
    """The OpenMP wait settings this process runs with ("unset": libgomp's default)."""
    chosen = [f"{k}={os.environ[k]}" for k in (OMP_WAIT_POLICY, GOMP_SPINCOUNT) if k in os.environ]
    return "; ".join(chosen) or "unset"


limit_spinning()  # on import: `python -m sweeper` imports this before torch
