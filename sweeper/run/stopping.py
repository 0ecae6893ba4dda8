"""Energy-aware early stopping: end a run's training once its short profile forecasts
more training energy than the run may spend.

Optuna cannot prune multi-objective trials through `should_prune`, so the search sweeper
gives each trial a limit instead (`sweeper.max_energy_train_j`, with a short
`sweeper.energy_limit_reason`); any single run or grid can set it too. The rule is
checked once, as soon as the profile window has produced its forecast of the whole
training energy (sweeper/predict/forecast.py): if the forecast exceeds the limit, training
stops and the run is recorded with status "pruned" and the reason in `stop_reason`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sweeper.config.schema import check_value, field_of, rule_of
from sweeper.predict.forecast import ProfileWindow

LIMIT_KEY = "max_energy_train_j"
REASON_KEY = "energy_limit_reason"
PRUNED = "pruned"  # the run status of a run stopped by this rule


@dataclass(frozen=True)
class EnergyLimit:
    limit_j: float
    reason: str


class EarlyStop(Exception):
    """Training was stopped on purpose by the energy rule (not a failure)."""

    def __init__(self, forecast_j: float, limit: EnergyLimit, step: int, total_steps: int):
        self.forecast_j = forecast_j
        self.limit = limit
        super().__init__(
            f"stopped at step {step}/{total_steps}: forecast training energy "
            f"{forecast_j:.1f} J exceeds the limit {limit.limit_j:.1f} J ({limit.reason})"
        )


def energy_limit(config: Mapping[str, Any]) -> EnergyLimit | None:
    """The limit set in a resolved run config (its `sweeper` node), validated."""
    node = config.get("sweeper") or {}
    key = f"sweeper.{LIMIT_KEY}"
    value = check_value(key, node.get(LIMIT_KEY), rule_of(field_of(key)))  # the schema's rule
    if value is None:
        return None
    reason = node.get(REASON_KEY) or key
    return EnergyLimit(value, str(reason))


def guard_steps(
    profile: ProfileWindow, limit: EnergyLimit | None
) -> Callable[[int], None]:
    """The training step hook: feeds the profile window, then applies the limit once."""
    if limit is None:
        return profile.on_step
    checked = False

    def on_step(step: int) -> None:
        nonlocal checked
        profile.on_step(step)
        if checked or profile.result is None:
            return
        checked = True
        if profile.result.energy_j > limit.limit_j:
            raise EarlyStop(profile.result.energy_j, limit, step, profile.total_steps)

    return on_step
