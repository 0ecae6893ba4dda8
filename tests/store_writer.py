"""A separate writer process for the concurrency tests (not a test module itself).

python tests/store_writer.py URL SWEEP WORKER RUNS START_AT

Opens the store at URL, waits until the wall-clock time START_AT so every writer hits
a fresh database at once (schema creation, sweep creation and run writes all race),
then writes RUNS complete runs the way a job does: insert the row, add a phase with its
domain split, add power samples, mark the run completed. Any exception is printed and
makes the exit status non-zero.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeper.store import Phase, PhaseDomainEnergy, Run, open_store  # noqa: E402
from sweeper.store import runs as store_runs  # noqa: E402

SAMPLES_PER_RUN = 5


def write_runs(url: str, sweep: str, worker: int, runs: int) -> None:
    store = open_store(url)
    sweep_id = store_runs.ensure_sweep(store, sweep, command=f"worker {worker}")
    for i in range(runs):
        run_id = store_runs.insert_run(
            store,
            Run(
                sweep_id=sweep_id, config={"worker": worker, "i": i},
                config_hash=f"w{worker}-r{i}", overrides=f"worker={worker} i={i}",
                model="mlp", dataset="digits", batch=32, lr=1e-3, optimizer="adam",
                epochs=1, precision="fp32", device="cpu", status="running",
            ),
        )
        store_runs.add_phase(
            store,
            Phase(run_id=run_id, kind="train_epoch", index=0, start_s=0.0, duration_s=0.1,
                  energy_j=1.0),
            [PhaseDomainEnergy(domain="cpu", source="estimate", energy_j=1.0)],
        )
        store_runs.add_samples(
            store,
            [{"run_id": run_id, "t_s": 0.01 * k, "domain": "cpu", "source": "estimate",
              "power_w": 10.0, "energy_j": 0.1 * k} for k in range(SAMPLES_PER_RUN)],
        )
        store_runs.update_run(store, run_id, status="completed", energy_train_j=1.0)
    store.dispose()


def main(argv: list[str]) -> int:
    url, sweep, worker, runs, start_at = argv
    time.sleep(max(0.0, float(start_at) - time.time()))
    write_runs(url, sweep, int(worker), int(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
