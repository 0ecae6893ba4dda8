"""mode=layers: time the layer catalog on this machine and store it (issue 24).

`python -m sweeper mode=layers` (about a minute on a 2-core CPU at batch 8) gives the
estimator a layer-time law of this machine: `mode=estimate`, the frontier sampler and the
report then predict a network never run from the sum of its layers' predicted times. The
catalog is timed at the run's `batch`, `device` and `precision`; `-m mode=layers
batch=8,32` times it at two batch sizes, which the law uses to tell per-call costs from
per-sample ones. A machine measured again replaces its catalog at that batch size.
"""

from __future__ import annotations

import os
import socket
import time

from sweeper.config.spec import RunSpec
from sweeper.run.machine import machine_id
from sweeper.run.result import JobResult
from sweeper.store import open_store
from sweeper.store.layer_costs import replace_layer_costs
from sweeper.training.device import check_precision, resolve_device
from sweeper.training.layer_catalog import measure_catalog


def run_layer_catalog(spec: RunSpec, limit: int | None = None) -> JobResult:
    """Time the catalog at the spec's batch, device and precision; store it."""
    device = resolve_device(spec.device)
    check_precision(spec.precision, device)
    if spec.num_threads:
        import torch

        torch.set_num_threads(spec.num_threads)
    # The identity a run on this device stores, so the estimator finds this catalog for it.
    hardware_id = machine_id(spec)
    store = open_store(spec.storage.url)
    started = time.monotonic()
    timings = measure_catalog(spec.batch, device, spec.precision, limit=limit)
    load = os.getloadavg()[0]
    host = socket.gethostname()
    for row in timings:
        row.hardware_id, row.host, row.device = hardware_id, host, str(device)
        row.precision, row.load_avg_1m = spec.precision, load
    written = replace_layer_costs(store, hardware_id, spec.precision, spec.batch, timings)
    elapsed = time.monotonic() - started
    spread = sorted(t.train_spread for t in timings) or [0.0]
    print(f"timed {written} layers at batch {spec.batch} ({spec.precision}) on {device} in "
          f"{elapsed:.0f} s (median spread of the repeats {spread[len(spread) // 2]:.0%}, "
          f"load average {load:.1f}); stored in {store.display_url} for hardware "
          f"{hardware_id}")
    return JobResult(status="completed", run_id=None, sweep_id=0,
                     extra={"mode": "layers", "layers": written, "hardware_id": hardware_id,
                            "duration_s": elapsed})
