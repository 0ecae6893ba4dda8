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
from sweeper.store import LayerCost, open_store
from sweeper.store.layer_costs import replace_layer_costs
from sweeper.training.device import check_precision, describe_accelerator, resolve_device
from sweeper.training.layer_catalog import LayerTiming, measure_catalog

log = logging.getLogger(__name__)


def _row(t: LayerTiming, hardware_id: str, device: str, precision: str, load: float
         ) -> LayerCost:
    return LayerCost(
        hardware_id=hardware_id, host=socket.gethostname(), device=device,
        precision=precision, layer=t.layer, kind=t.kind, groups=t.groups, batch=t.batch,
        macs_per_sample=t.macs_per_sample, elements_in_per_sample=t.elements_in_per_sample,
        elements_out_per_sample=t.elements_out_per_sample, params=t.params,
        train_s=t.train_s, train_spread=t.train_spread, inference_s=t.inference_s,
        inference_spread=t.inference_spread, repeats=t.repeats, load_avg_1m=load)


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
    written = replace_layer_costs(store, hardware_id, spec.precision, spec.batch, [
        _row(t, hardware_id, str(device), spec.precision, load) for t in timings])
    elapsed = time.monotonic() - started
    spread = sorted(t.train_spread for t in timings)
    print(f"timed {written} layers at batch {spec.batch} ({spec.precision}) on {device} in "
          f"{elapsed:.0f} s (median spread of the repeats {spread[len(spread) // 2]:.0%}, "
          f"load average {load:.1f}); stored in {store.display_url} for hardware "
          f"{hardware_id}")
    return JobResult(status="completed", run_id=None, sweep_id=0,
                     extra={"mode": "layers", "layers": written, "hardware_id": hardware_id,
                            "duration_s": elapsed})
