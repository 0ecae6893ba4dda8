"""mode=layers: time the layer catalog on this machine and store it (issue 24).

`python -m sweeper mode=layers` (about a minute on a 2-core CPU at batch 8) gives the
estimator a layer-time law of this machine: `mode=estimate`, the frontier sampler and the
report then predict a network never run from the sum of its layers' predicted times. The
catalog is timed at the run's `batch`, `device` and `precision`; `-m mode=layers
batch=8,32` times it at two batch sizes, which the law uses to tell per-call costs from
per-sample ones. A machine measured again replaces its catalog at that batch size.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from sweeper.config.spec import RunSpec
from sweeper.run.result import JobResult
from sweeper.store import open_store
from sweeper.store.layer_costs import replace_layer_costs
from sweeper.training.device import check_precision, describe_accelerator, resolve_device
from sweeper.training.layer_catalog import measure_catalog

log = logging.getLogger(__name__)


def run_layer_catalog(spec: RunSpec, limit: int | None = None) -> JobResult:
    """Time the catalog at the spec's batch, device and precision; store it."""
    from sweeper.energy.hardware import describe_host

    device = resolve_device(spec.device)
    check_precision(spec.precision, device)
    if spec.num_threads:
        import torch

        torch.set_num_threads(spec.num_threads)
    from sweeper import energy

    # The identity a run on this device stores (its meters' GPU driver and limits included),
    # so the estimator finds this catalog for those runs.
    with energy.open_meters(spec.meter, gpu_indices=(device.index or 0,)
                            if device.type == "cuda" else (),
                            cpu_tdp_w=spec.energy.cpu_tdp_w) as meters:
        described = meters.describe()
    hardware_id = describe_host(describe_accelerator(device), described).hardware_id
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
    spread = sorted(t.train_spread for t in timings)
    print(f"timed {written} layers at batch {spec.batch} ({spec.precision}) on {device} in "
          f"{elapsed:.0f} s (median spread of the repeats {spread[len(spread) // 2]:.0%}, "
          f"load average {load:.1f}); stored in {store.display_url} for hardware "
          f"{hardware_id}")
    return JobResult(status="completed", run_id=None, sweep_id=0,
                     extra={"mode": "layers", "layers": written, "hardware_id": hardware_id,
                            "duration_s": elapsed})
