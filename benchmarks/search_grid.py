"""The measured grid behind benchmarks/search_efficiency.py: trained once, cached, reused.

Every configuration of the space is trained by sweeper itself (`python -m sweeper -m ...`,
the real run code, estimate/RAPL/NVML meter as the machine allows) into one SQLite file,
and profiled once more with `mode=forecast` (warm-up + forecast window steps, measured as
one `profile` phase): that second measurement is what a trial stopped by the energy rule
really spends before it stops. Configurations on the grid's front are measured again
(`repeat=1,2`) to show how much the front moves from measurement noise alone.

Sweeps already in the file are reused: sweeper's resume skips configurations completed in
the same sweep, so a rerun costs nothing but a check.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweeper.store import Run, Store, Sweep, open_store  # noqa: E402

EPOCHS = 4  # the default; --epochs 2 measures (or reuses) a second, noisier grid


def sweep_names(epochs: int) -> tuple[str, str, str]:
    """The grid, profile and repeat sweeps of one epoch count."""
    return tuple(f"search-efficiency {kind} {epochs} epochs"  # type: ignore[return-value]
                 for kind in ("grid", "profile", "repeats"))

DEFAULT_DB = "results/search_efficiency.db"

# The space: 4 models x 3 batch sizes x 2 precisions x 4 learning rates = 96 configurations.
SPACE: dict[str, list[Any]] = {
    "model": ["mlp", "cnn", "resnet", "vit"],
    "batch": [32, 64, 128],
    "precision": ["fp32", "bf16"],
    "lr": [0.0003, 0.001, 0.003, 0.01],
}
# Fixed for every run: digits, one torch thread (steadier on a shared host), and 4 epochs:
# 2-epoch runs last 0.1-2 s, too close to the estimate meter's resolution (CPU time in
# 10 ms ticks, about 0.4 J here) for the cheap models' energies and profiles to mean much.
FIXED = ["dataset=digits", "num_threads=1", "sweeper.progress=false"]

Config = tuple[tuple[str, Any], ...]


def config_key(params: Mapping[str, Any]) -> Config:
    return tuple((k, params[k]) for k in SPACE)


def all_configs() -> list[Config]:
    return [tuple(zip(SPACE, values, strict=True)) for values in itertools.product(*SPACE.values())]


@dataclass(frozen=True)
class Measured:
    """One configuration as the grid measured it (repeat 0), with its profile's cost."""

    config: Config
    run_id: int
    val_accuracy: float
    energy_train_j: float  # the search objective
    energy_total_j: float  # what the full run spent (train, eval, test, inference)
    duration_s: float
    forecast_energy_train_j: float | None  # the run's own forecast from its profile
    profile_energy_j: float  # measured cost of stopping after the profile (mode=forecast)
    profile_duration_s: float
    macs_per_sample: float
    params: int
    train_samples_per_epoch: int
    meter_source: str
    hardware_id: str
    energy_train_uncertainty_j: float = 0.0  # stored with the run, as the search loop tells it
    # The inference benchmark's phase: what a search trial the front so far dominates does
    # not spend (hydra.sweeper.inference=front; its warm-up, outside the phase, stays
    # charged, so the replay charges such a trial a little more than it spends).
    energy_inference_j: float = 0.0
    # What the frontier sampler knows of a configuration before running it, as a CLI search
    # computes it: the network's layer totals (meta device) and, where the file holds this
    # machine's layer catalog (mode=layers), its predicted training seconds per sample.
    layers: tuple[float, ...] | None = None
    layer_s: float | None = None


def _sweep_runs(store: Store, sweep: str) -> list[Run]:
    query = select(Run).join(Sweep, Run.sweep_id == Sweep.id).where(Sweep.name == sweep)
    with store.session() as session:
        return list(session.scalars(query.order_by(Run.id)))


def key_of(run: Run) -> Config:
    return config_key({"model": run.model, "batch": run.batch, "precision": run.precision,
                       "lr": run.lr})


def _launch(db: str, sweep: str, overrides: Sequence[str], epochs: int, log_to: Path) -> None:
    command = [
        sys.executable, "-m", "sweeper", "-m", *overrides, f"epochs={epochs}", *FIXED,
        f"storage.url=sqlite:///{db}", f"sweeper.name={sweep}",
        "hydra.sweep.dir=results/multirun/search-efficiency/${now:%Y-%m-%d_%H-%M-%S}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log_to.open("a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=log, check=False)
    if done.returncode not in (0, 1):  # 1: some run failed, recorded in the store
        raise RuntimeError(f"sweeper exited with {done.returncode}; see {log_to}")


def _product_overrides(configs: Sequence[Config]) -> list[list[str]]:
    """Multirun override lists covering exactly these configurations (one per model and
    precision group, as a product of the batch sizes and learning rates present)."""
    groups: dict[tuple[Any, ...], set[Config]] = {}
    for c in configs:
        d = dict(c)
        groups.setdefault((d["model"], d["precision"]), set()).add(c)
    out = []
    for (model, precision), members in sorted(groups.items()):
        for c in sorted(members, key=repr):
            d = dict(c)
            out.append([f"model={model}", f"precision={precision}", f"batch={d['batch']}",
                        f"lr={d['lr']}"])
    # Merge into one product when the group is complete (the usual first build).
    full = len(configs) == len(all_configs())
    if full:
        return [[f"{k}={','.join(str(v) for v in vs)}" for k, vs in SPACE.items()]]
    return out


def ensure_grid(db: str, epochs: int, log_to: Path) -> None:
    """Train and profile every configuration missing from the file."""
    store = open_store(f"sqlite:///{db}", base_dir=str(ROOT))
    grid_sweep, profile_sweep, _ = sweep_names(epochs)
    for sweep, extra, status in [(grid_sweep, [], "completed"),
                                 (profile_sweep, ["mode=forecast"], "forecast")]:
        have = {key_of(r) for r in _sweep_runs(store, sweep) if r.status == status}
        missing = [c for c in all_configs() if c not in have]
        if not missing:
            continue
        print(f"{sweep}: measuring {len(missing)} configuration(s) (log: {log_to})", flush=True)
        for overrides in _product_overrides(missing):
            _launch(db, sweep, [*overrides, *extra], epochs, log_to)


def ensure_repeats(
    db: str, epochs: int, configs: Sequence[Config], repeats: int, log_to: Path
) -> None:
    """Measure these configurations again as repeat=1..repeats (new runs, same config)."""
    _train_again(db, sweep_names(epochs)[2], epochs, configs, "repeat", repeats,
                 lambda r: int(r.config.get("repeat", 0)), "measuring", "time(s)", log_to)


def _train_again(
    db: str, sweep: str, epochs: int, configs: Sequence[Config], key: str, count: int,
    index_of: Callable[[Any], int], verb: str, unit: str, log_to: Path,
) -> None:
    """Run each configuration again as `key`=1..count in `sweep`, skipping those done."""
    if count <= 0 or not configs:
        return
    store = open_store(f"sqlite:///{db}", base_dir=str(ROOT))
    done = {(key_of(r), index_of(r)) for r in _sweep_runs(store, sweep)
            if r.status == "completed"}
    wanted = [c for c in configs if any((c, k) not in done for k in range(1, count + 1))]
    if not wanted:
        return
    print(f"{sweep}: {verb} {len(wanted)} front configuration(s) {count} more {unit} "
          f"(log: {log_to})", flush=True)
    for c in wanted:
        d = dict(c)
        _launch(db, sweep, [f"model={d['model']}", f"precision={d['precision']}",
                            f"batch={d['batch']}", f"lr={d['lr']}",
                            f"{key}=" + ",".join(str(k) for k in range(1, count + 1))],
                epochs, log_to)


def seed_sweep_name(epochs: int) -> str:
    """The sweep that trains front configurations again with other training seeds."""
    return f"search-efficiency seeds {epochs} epochs"


def ensure_seed_repeats(
    db: str, epochs: int, configs: Sequence[Config], seeds: int, log_to: Path
) -> None:
    """Train these configurations again with training seeds 1..seeds (the grid used seed 0).
    The same-seed repeats of ensure_repeats measure the energy's noise only: on a CPU the
    same seed gives the same weights, so their accuracy never moves; another seed shows how
    far one measured accuracy is from what the configuration gives in general."""
    _train_again(db, seed_sweep_name(epochs), epochs, configs, "seed", seeds,
                 lambda r: int(r.seed), "training", "seed(s)", log_to)


def load_seed_repeats(db: str, epochs: int) -> dict[Config, list[float]]:
    """val_accuracy of every other-seed run, by configuration."""
    store = open_store(f"sqlite:///{db}", base_dir=str(ROOT))
    out: dict[Config, list[float]] = {}
    for r in _sweep_runs(store, seed_sweep_name(epochs)):
        if r.status == "completed" and r.val_accuracy is not None:
            out.setdefault(key_of(r), []).append(float(r.val_accuracy))
    return out


# The layer catalog is timed at one batch size of the space, one thread as the runs use.
CATALOG_BATCH = 32


def ensure_catalog(db: str, log_to: Path) -> None:
    """Time this machine's layer catalog into the file (`mode=layers`) unless it has one, so
    the frontier sampler can use the layer-time law as a CLI search on this store would."""
    from sweeper.store import LayerCost

    store = open_store(f"sqlite:///{db}", base_dir=str(ROOT))
    with store.session() as session:
        have = session.scalar(select(LayerCost.id).where(LayerCost.batch == CATALOG_BATCH)
                              .limit(1))
    if have is not None:
        return
    print(f"timing the layer catalog at batch {CATALOG_BATCH} (mode=layers; log: {log_to})",
          flush=True)
    _launch(db, "search-efficiency layer catalog", ["mode=layers", f"batch={CATALOG_BATCH}"],
            EPOCHS, log_to)


def cli_db(db: str, mode: str, seed: int) -> str:
    """The file one real-CLI search records into: a fresh store of its own, as a first
    search has. On the grid's store (or one shared by the searches) it would take the
    completed runs there as prior measurements of energy, which the replay does not have."""
    path = Path(db)
    return str(path.with_name(f"{path.stem}_cli_{mode}_{seed}{path.suffix}"))


def cli_sweep_name(epochs: int, mode: str, seed: int) -> str:
    return f"search-efficiency cli inference {mode} seed {seed} {epochs} epochs"


def ensure_cli_searches(
    db: str, epochs: int, seeds: int, modes: Sequence[str], log_to: Path,
) -> None:
    """Search the grid's space through the real CLI (`-m hydra/sweeper=pareto`, the default
    sampler) with seeds 0..seeds-1 and each hydra.sweeper.inference mode, each into its own
    cli_db, which first gets a copy of the grid file's layer catalog (as a machine that ran
    mode=layers has). A search already in its file is kept (running it again would resume
    its study with more trials)."""
    from sweeper.store import LayerCost

    source = open_store(f"sqlite:///{db}", base_dir=str(ROOT))
    with source.session() as session:
        rows = list(session.scalars(select(LayerCost)))
        columns = [c.key for c in LayerCost.__table__.columns if c.key != "id"]
        catalog = [{k: getattr(r, k) for k in columns} for r in rows]
    space = [f"{k}={','.join(str(v) for v in vs)}" for k, vs in SPACE.items()]
    for seed in range(seeds):
        for mode in modes:
            target, name = cli_db(db, mode, seed), cli_sweep_name(epochs, mode, seed)
            store = open_store(f"sqlite:///{target}", base_dir=str(ROOT))
            if name in {s.name for s in _sweeps(store)}:
                continue
            with store.session() as session:
                if session.scalar(select(LayerCost.id).limit(1)) is None:
                    session.add_all(LayerCost(**row) for row in catalog)
                    session.commit()
            print(f"{name}: searching through the CLI (log: {log_to})", flush=True)
            _launch(target, name, ["hydra/sweeper=pareto", *space, "hydra.sweeper.n_trials=96",
                                   f"hydra.sweeper.seed={seed}",
                                   f"hydra.sweeper.inference={mode}"], epochs, log_to)


def load_cli_search(db: str, epochs: int, mode: str, seed: int) -> list[Run]:
    """The runs of one real-CLI search (every trial's, pruned and failed included)."""
    return _sweep_runs(open_store(f"sqlite:///{cli_db(db, mode, seed)}", base_dir=str(ROOT)),
                       cli_sweep_name(epochs, mode, seed))


def _sweeps(store: Store) -> list[Sweep]:
    with store.session() as session:
        return list(session.scalars(select(Sweep)))


def load_grid(db: str, epochs: int) -> dict[Config, Measured]:
    from sweeper.run.sizing import layer_timer, run_layers

    store = open_store(f"sqlite:///{db}", base_dir=str(ROOT))
    timer = layer_timer(store)
    grid_sweep, profile_sweep, _ = sweep_names(epochs)
    profiles = {key_of(r): r for r in _sweep_runs(store, profile_sweep) if r.status == "forecast"}
    grid: dict[Config, Measured] = {}
    for r in _sweep_runs(store, grid_sweep):
        key = key_of(r)
        if r.status != "completed" or key not in profiles or r.val_accuracy is None:
            continue
        p = profiles[key]
        grid[key] = Measured(
            config=key, run_id=r.id, val_accuracy=float(r.val_accuracy),
            energy_train_j=float(r.energy_train_j or 0.0),
            energy_total_j=float(r.energy_total_j or 0.0), duration_s=float(r.duration_s or 0.0),
            forecast_energy_train_j=r.forecast_energy_train_j,
            profile_energy_j=float(p.energy_total_j or 0.0),
            profile_duration_s=float(p.duration_s or 0.0),
            macs_per_sample=float(r.macs_per_sample or 0.0), params=int(r.params or 0),
            train_samples_per_epoch=int((r.train_samples or 0) // max(r.epochs, 1)),
            meter_source=str(r.meter_source), hardware_id=str(r.hardware_id),
            energy_train_uncertainty_j=float(r.energy_train_uncertainty_j or 0.0),
            energy_inference_j=float(r.energy_inference_j or 0.0),
            layers=run_layers(r), layer_s=timer(r, "train"),
        )
    return grid


def load_repeats(db: str, epochs: int) -> dict[Config, list[tuple[float, float]]]:
    """(val_accuracy, energy_train_j) of every repeat measurement, by configuration."""
    store = open_store(f"sqlite:///{db}", base_dir=str(ROOT))
    out: dict[Config, list[tuple[float, float]]] = {}
    for r in _sweep_runs(store, sweep_names(epochs)[2]):
        if r.status == "completed" and r.val_accuracy is not None and r.energy_train_j:
            out.setdefault(key_of(r), []).append((float(r.val_accuracy), float(r.energy_train_j)))
    return out


if __name__ == "__main__":
    ensure_grid(DEFAULT_DB, EPOCHS, ROOT / "results" / "search_efficiency.log")
    print(f"{len(load_grid(DEFAULT_DB, EPOCHS))} configurations measured in {DEFAULT_DB}")
