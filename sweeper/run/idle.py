"""The idle baseline a run's net energies subtract: measured once per host and meter.

Net of idle is sweeper's addition (the study's E_tr and E_in are gross: its code subtracts no
idle power): the energy drawn while training minus what the hardware would have drawn over
the same time doing nothing. The idle power of each
measured domain is read here with the run's own meters while nothing runs, after the
model is on its device, so a GPU holds a live CUDA context as it does during training (an
H200 idles at 82 W bare and 119-127 W with a context). It is stored with the hardware
identity (table idle_baselines) and reused by every later run on that hardware and meter
within `energy.idle.max_age_h`, so a sweep pays for it once.

The estimate meter has no idle by convention (it counts this process's CPU time only), so
its domains' idle power is 0 and their net equals their gross.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from sweeper import energy
from sweeper.run.prepare import Prepared
from sweeper.store import IdleBaseline
from sweeper.store.idle import add_baseline, fresh_baseline

log = logging.getLogger(__name__)

IDLE_PHASE = "idle"


@dataclass(frozen=True)
class IdlePower:
    """Idle power per measured domain (estimate domains are 0 by convention)."""

    by_domain: dict[str, float] = field(default_factory=dict)
    baseline_id: int | None = None
    note: str = ""


def idle_power(p: Prepared) -> IdlePower | None:
    """The run's idle baseline: reused if fresh, else measured now; None when disabled."""
    spec = p.spec
    measured = [m for m in p.meters.meters if m.source != "estimate"]
    if not measured:
        return IdlePower(note="estimate meter only: no idle by convention (net = gross)")
    if spec.energy.idle.seconds <= 0:
        return None
    hardware_id, source = str(p.hardware["hardware_id"]), p.meters.source
    found = fresh_baseline(p.store, hardware_id, source, spec.energy.idle.max_age_h)
    if found is None:
        found = _measure(p, measured, spec.energy.idle.seconds)
        found.id = add_baseline(p.store, found)
        log.info("idle baseline %d: %.1f W over %.1f s (%s)", found.id, found.power_w,
                 found.duration_s, source)
    return IdlePower(dict(found.by_domain), found.id, found.note or "")


def _measure(p: Prepared, meters: list[energy.Meter], seconds: float) -> IdleBaseline:
    if p.device.type == "cuda":
        torch.cuda.synchronize(p.device)  # nothing queued: the context idles
    sampler = energy.EnergySampler(meters, sample_hz=p.spec.energy.sample_hz)
    sampler.start()
    try:
        with sampler.phase(IDLE_PHASE) as ph:
            time.sleep(seconds)
    finally:
        sampler.stop()
    result = ph.result
    assert result is not None
    by_domain = {d: max(0.0, e) / result.duration_s for d, e in result.by_domain.items()}
    context = " with a live CUDA context" if p.device.type == "cuda" else ""
    return IdleBaseline(
        hardware_id=str(p.hardware["hardware_id"]), host=str(p.hardware["host"]),
        meter_source=p.meters.source, duration_s=result.duration_s,
        power_w=sum(by_domain.values()), by_domain=by_domain, hardware=p.hardware,
        note=f"measured by sweeper with nothing running{context}",
    )
