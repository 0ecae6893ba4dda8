"""How well does model size predict energy and time per sample, held out honestly?

Reads the completed runs of a store (one sweep, one hardware and meter group at a time)
and prints, for each target (energy and time per training and per inference sample), the
held-out errors of every candidate law fitted alone and of the estimator's choice:

- by configuration: each configuration predicted by a fit of the others (its model stays
  in the fit at its other batch sizes);
- by model: each model, all its batch sizes, predicted by a fit of the other models (the
  case of a model never run). The chosen law is chosen inside every fold.

`log-linear(macs, params, batch)` is the law the estimator used before it was scored by
model. Collect runs first, e.g. the study's networks on this machine:

    python -m sweeper -m +experiment=study_smoke             # or a CPU-sized variant
    python benchmarks/estimator_accuracy.py --db results/sweeper.db --sweep study_smoke
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from sweeper.predict.heldout import choose_law, leave_one_config_out, leave_one_model_out
from sweeper.predict.laws import candidate_laws, fit_loglinear
from sweeper.predict.observations import load_observations
from sweeper.run.sizing import run_activations
from sweeper.store import open_store

TARGETS = ("train", "inference", "train_time", "inference_time")
PREVIOUS = "log-linear(macs, params, batch)"


def _pct(score: object) -> str:
    return "-" if score is None else f"{score.mape:7.1%}"  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="SQLite file or SQLAlchemy URL")
    parser.add_argument("--sweep", default=None)
    args = parser.parse_args(argv)
    url = args.db if "://" in args.db else f"sqlite:///{args.db}"
    store = open_store(url)
    for target in TARGETS:
        rows = load_observations(store, target, sweep=args.sweep, activations=run_activations)
        groups = defaultdict(list)
        for o in rows:
            groups[o.group].append(o)
        for (hardware, meter), obs in sorted(groups.items()):
            models = len({o.model_key for o in obs})
            configs = len({o.config_key for o in obs})
            print(f"\n{target} on {hardware} ({meter}): {len(obs)} runs, {configs} "
                  f"configurations, {models} models")
            print(f"  {'law':58} {'MAPE by config':>14} {'MAPE by model':>14}")
            laws = dict(candidate_laws(obs))
            laws.setdefault(PREVIOUS, lambda o: fit_loglinear(o))
            for name, factory in laws.items():
                loco = leave_one_config_out(obs, factory)
                lomo = leave_one_model_out(obs, factory)
                mark = "  (before)" if name == PREVIOUS else ""
                print(f"  {name + mark:58} {_pct(loco):>14} {_pct(lomo):>14}")
            law, chosen = choose_law(obs)
            nested = leave_one_model_out(obs)
            loco = leave_one_config_out(obs, laws[chosen])
            print(f"  {'chosen: ' + chosen:58} {_pct(loco):>14} {_pct(nested):>14}"
                  "  (by model: chosen in each fold)")
            if hasattr(law, "coef") and PREVIOUS in laws:
                previous = fit_loglinear(obs)
                print(f"  before, fitted on all runs: {previous.describe()}")
            print(f"  chosen, fitted on all runs: {law.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
