"""Net-of-idle energy columns of a run, beside the gross ones.

net = gross - idle power x duration (sweeper's addition: the study reports gross); a net
figure is never below zero, and a clamp is said in the run's measurement warning (a phase
shorter than the meter resolves, or idle power that changed since the baseline).
"""

from __future__ import annotations

from typing import Any

from sweeper.run.idle import IdlePower


def run_idle_power_w(idle: IdlePower, sources: dict[str, str]) -> tuple[float | None, str]:
    """Total idle power over the run's domains (domain -> source); None with the reason when
    a measured domain has no baseline."""
    total = 0.0
    for domain, source in sorted(sources.items()):
        if source == "estimate":
            continue  # no idle by convention
        if domain not in idle.by_domain:
            return None, f"the idle baseline has no figure for {domain}"
        total += float(idle.by_domain[domain])
    return total, ""


def _net(label: str, gross_j: float | None, idle_w: float, duration_s: float | None,
         warnings: list[str]) -> float | None:
    if gross_j is None or duration_s is None:
        return None
    idle_j = idle_w * duration_s
    if gross_j >= idle_j:
        return gross_j - idle_j
    warnings.append(
        f"net {label} clamped to 0 J: gross {gross_j:.3g} J is below idle {idle_j:.3g} J "
        f"({idle_w:.3g} W x {duration_s:.3g} s)"
    )
    return 0.0


def net_columns(
    values: dict[str, Any],
    idle: IdlePower | None,
    sources: dict[str, str],
    run_duration_s: float | None,
) -> tuple[dict[str, Any], list[str]]:
    """(net columns and idle_power_w, warnings) from a run's gross columns in `values`."""
    if idle is None:
        return {}, []
    idle_w, why = run_idle_power_w(idle, sources)
    if idle_w is None:
        return {"idle_baseline_id": idle.baseline_id}, [f"no net energies: {why}"]
    warnings: list[str] = []
    out: dict[str, Any] = {"idle_power_w": idle_w, "idle_baseline_id": idle.baseline_id}
    train = _net("E_tr", values.get("energy_train_j"), idle_w, values.get("train_duration_s"),
                 warnings)
    inference = _net("E_in", values.get("energy_inference_j"), idle_w,
                     values.get("inference_duration_s"), warnings)
    total = _net("total", values.get("energy_total_j"), idle_w, run_duration_s, warnings)
    out.update(energy_train_net_j=train, energy_inference_net_j=inference,
               energy_total_net_j=total)
    if train is not None and values.get("train_samples"):
        out["energy_per_train_sample_net_j"] = train / values["train_samples"]
    if inference is not None and values.get("inference_samples"):
        out["energy_per_inference_sample_net_j"] = inference / values["inference_samples"]
    return out, warnings
