"""OpenMP threads that sleep rather than spin while they wait, set before torch loads.

torch's intra-op threads (libgomp) busy-wait at the end of every parallel region for their
siblings. On a machine where other processes hold cores a sibling is descheduled, and the
waiting threads spin through whole scheduler slices: that spinning is CPU time, which the
estimate meter turns into joules, and it slows the work too. Measured on the 2-core VM
(benchmarks/estimate_contention.py, load average ~11 from other jobs): 100 resnet steps
used 36 s of CPU with 2 spinning threads, 2.5 s with OMP_WAIT_POLICY=PASSIVE and 1.2 s
with 1 thread. The policy is read once, when OpenMP starts, so `python -m sweeper` sets it
before anything imports torch; a value already in the environment is kept
(OMP_WAIT_POLICY=ACTIVE restores spinning). Each run records the policy in runs.hardware.
"""

from __future__ import annotations

import os

OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user chose one; return the policy in force."""
    return os.environ.setdefault(OMP_WAIT_POLICY, "PASSIVE")


def wait_policy() -> str:
    """The OpenMP wait policy this process runs with ("unset": libgomp's default, spinning)."""
    return os.environ.get(OMP_WAIT_POLICY, "unset")


prefer_passive_waiting()  # on import: `python -m sweeper` imports this before torch
