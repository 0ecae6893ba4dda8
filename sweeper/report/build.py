"""Building the report: the runs of a store read once, analysed, drawn, exported and written
as one HTML page (with a terminal summary). Reads the store; torch only (imported late) to
size the fitted networks on the meta device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from sqlalchemy import select

import sweeper.report.analysis as analysis
import sweeper.report.configs as configs
import sweeper.report.data as data
import sweeper.report.effects as effects
import sweeper.report.figures as figures
from sweeper.energy.labels import describe_source
from sweeper.predict.estimator import EnergyFit, fit_by_hardware
from sweeper.predict.observations import observations_from_runs
from sweeper.report.basis import apply_basis, drop_busy
from sweeper.report.export import export_tables
from sweeper.report.findings import FindingCheck, check_findings
from sweeper.report.heatmaps import correlation_heatmaps
from sweeper.report.html import FigureRef, write_page
from sweeper.report.plotting import energy_basis
from sweeper.report.power_limits import capped_by_sweeper, power_limit_section, with_limits
from sweeper.store import Run, Store


@dataclass
class Report:
    out_dir: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    exports: list[Path] = field(default_factory=list)
    guidelines: list[str] = field(default_factory=list)
    not_established: list[str] = field(default_factory=list)
    matrices: list[configs.CorrelationMatrix] = field(default_factory=list)
    batch_tables: list[configs.BatchTable] = field(default_factory=list)
    fits: list[EnergyFit] = field(default_factory=list)
    findings: list[FindingCheck] = field(default_factory=list)
    front: pd.DataFrame | None = None
    trace_run_id: int | None = None


def _stored_runs(store: Store, ids: Sequence[int]) -> dict[int, Run]:
    """The stored runs (with their configs) of `ids`, by id."""
    with store.session() as session:
        return {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(list(ids))))}


def fit_runs(
    runs: pd.DataFrame, level: float = 0.9, store: Store | None = None
) -> list[EnergyFit]:
    """Per-hardware estimator fits of training and inference energy per sample (runs under
    a GPU power limit sweeper set are left out, as the store-based fits leave them out).
    With the store, each run's network is rebuilt on the meta device from its config, so
    the fits offer the activation, layer-wise and layer-time laws as `mode=estimate` does."""
    fits: list[EnergyFit] = []
    rows = list(runs[~capped_by_sweeper(runs)].itertuples(index=False))
    activations = layers = layer_time = None
    if store is not None:
        from sweeper.run.sizing import layer_timer, run_activations, run_layers

        stored = _stored_runs(store, [int(r.id) for r in rows])
        timer = layer_timer(store)
        activations = lambda r: run_activations(stored[int(r.id)])  # noqa: E731
        layers = lambda r: run_layers(stored[int(r.id)])  # noqa: E731
        layer_time = lambda r, target: timer(stored[int(r.id)], target)  # noqa: E731
    for target in ("train", "inference"):
        observations = observations_from_runs(rows, target, activations, layers, layer_time)
        fits.extend(fit_by_hardware(observations, target, level).values())
    return fits


def _run_not_in(store: Store, run_id: int, sweeps: Sequence[str]) -> str:
    """Why --run names no run of the report: it does not exist, or it belongs to a sweep the
    report leaves out (adding it would mix it into every analysis)."""
    extra = data.load_runs(store, run_ids=[run_id])
    if extra.empty:
        return f"no run with id {run_id} in {store.display_url}"
    owner = str(extra["sweep"].iloc[0])
    chosen = ", ".join(repr(name) for name in sweeps)
    return (
        f"run {run_id} belongs to sweep {owner!r}, not to --sweep {chosen}; pass "
        f"--sweep {owner!r} as well to include its sweep, or a run of {chosen}"
    )


def pick_trace_run(store: Store, runs: pd.DataFrame, run_id: int | None) -> int | None:
    """The requested run, else the latest completed run with samples, else any with samples."""
    if run_id is not None:
        return run_id
    with_samples = set(data.runs_with_samples(store, runs["id"].tolist()))
    for candidates in (runs[runs["status"] == "completed"], runs):
        ids = [int(i) for i in candidates["id"] if int(i) in with_samples]
        if ids:
            return max(ids)
    return None


def build_report(
    store: Store,
    out_dir: str | Path,
    *,
    sweeps: Sequence[str] = (),
    run_id: int | None = None,
    parquet: bool = True,
    console: Console | None = None,
    energy: str = "gross",
    exclude_busy: bool = False,
) -> Report:
    """`energy` is "gross" (the study's quantity) or "net" (of idle, sweeper's addition);
    `exclude_busy` leaves out runs measured while other processes loaded the machine."""
    runs = data.load_runs(store, sweeps=sweeps)
    if run_id is not None and run_id not in set(runs["id"].astype(int)):
        raise LookupError(_run_not_in(store, run_id, sweeps))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stored = runs  # the exports keep the store's columns: one name per quantity
    runs, basis_note = apply_basis(runs, energy)
    notes = [basis_note] + [
        f"Meter '{source}': {describe_source(source)}."
        for source in sorted(runs["meter_source"].dropna().unique())
    ]
    if exclude_busy:
        runs, busy_note = drop_busy(runs)
        notes += [busy_note] if busy_note else []
    runs = with_limits(store, runs)  # runs at different GPU power limits are kept apart
    ids = runs["id"].astype(int).tolist()
    phases = data.load_phases(store, ids)
    domains = data.load_phase_domains(store, ids)

    fits = fit_runs(runs, store=store)
    correlations = analysis.correlations(runs)
    changes = effects.effects(runs)
    guidelines = analysis.guidelines(runs, fits, correlations, changes)
    unproven = effects.not_established(changes)
    matrices = configs.correlation_matrices(runs)
    tables = configs.batch_tables(runs)
    windows = analysis.forecast_accuracy(runs)
    power = power_limit_section(store, runs, out)  # GPU power limits (guideline 5)
    guidelines += power.guidelines
    front = analysis.energy_accuracy_front(runs)
    checks = check_findings(runs, correlations, changes, power.effects)
    basis = energy_basis(runs)

    trace_id = pick_trace_run(store, runs, run_id)
    trace = data.load_power_trace(store, trace_id) if trace_id is not None else pd.DataFrame()
    trace_run = runs[runs["id"] == trace_id].iloc[0] if trace_id is not None else None
    trace_phases = phases[phases["run_id"] == trace_id]

    split_pages = figures.energy_split(runs, out)
    drawn: list[tuple[Path, str, str]] = [
        (figures.accuracy_vs_energy(runs, out / "accuracy_vs_energy.png"),
         f"{analysis.accuracy_name(front) if not front.empty else 'Accuracy'} vs training "
         "energy (bars: its uncertainty); the black line is the front (see the table above); "
         "x: runs at chance accuracy.", ""),
        (correlation_heatmaps(matrices, out / "correlation_heatmaps.png", basis),
         "Pearson (on raw values) and Spearman (ranks) correlations between energy per sample "
         "(training, inference), MACs, parameters, MACs per parameter, training time, test "
         "accuracy, throughput and energy efficiency (training samples and forward MACs per "
         "joule), per machine.",
         "Runs that differ only in lr, seed or repeat are averaged into one configuration "
         "first (runs at chance accuracy left out); |r| >= 0.7 (the study's 'strong') is "
         "boxed. The table below gives log-log Pearson with intervals."),
        (figures.energy_vs_batch(runs, out / "energy_vs_batch.png"),
         "Training energy and inference energy per sample vs batch size, per model "
         "(one line style per precision).", ""),
        (figures.energy_vs_macs(runs, out / "energy_vs_macs.png"),
         "Training energy per sample vs MACs and vs MACs per parameter, one point per "
         "configuration, with the correlations of the table below.",
         "Pearson is computed on log-log values (the relation is a power law), Spearman on "
         "ranks, over distinct configurations, with 95% bootstrap intervals."),
        (figures.forecast_error_vs_window(runs, out / "forecast_error_vs_window.png"),
         "Error of the in-run forecast of E_tr vs the profiling window.",
         "benchmarks/forecast_accuracy.py compares several windows on the same runs."),
        (figures.power_trace(trace, trace_phases, trace_run, out / "power_trace.png"),
         f"Power trace of run {trace_id} with its phases shaded."
         if trace_id is not None else "Power trace.",
         "python -m sweeper.report --run ID picks another run."),
        *((page, "Energy split of each completed run: training, evaluation/test, inference "
           f"benchmark (page {i} of {len(split_pages)})." if len(split_pages) > 1 else
           "Energy split of each completed run: training, evaluation/test, inference "
           "benchmark.", "") for i, page in enumerate(split_pages, start=1)),
        *(((power.figure, power.caption, ""),) if power.figure is not None else ()),
        (figures.estimator_fit(fits, out / "estimator_fit.png", basis),
         "Energy per sample predicted with each configuration held out, against the "
         "value from the meter (measured, or estimated where the meter is the estimate).",
         "The fit is per hardware and meter; see the table below."),
    ]
    paths = [p for p, _, _ in drawn]
    refs = [FigureRef(p.name, t, n) for p, t, n in drawn]

    kept = stored[stored["id"].isin(runs["id"])]
    exports = export_tables(
        {"runs": kept, "phases": phases, "phase_domains": domains,
         **({"power_limits": power.effects} if not power.effects.empty else {})},
        out, parquet=parquet
    )
    html = write_page(
        out / "index.html", store_url=store.display_url, runs=runs, figures=refs,
        guidelines=guidelines, not_established=unproven, correlations=correlations,
        matrices=matrices, batch_tables=tables, fits=fits, windows=windows,
        exports=[p.name for p in exports], notes=notes, front=front, findings=checks,
    )
    if console is not None:
        from sweeper.report.terminal import print_summary

        for note in notes:
            console.print(note, highlight=False, markup=False)
        print_summary(console, runs, guidelines, fits, str(html), unproven,
                      [c.line() for c in checks])
    return Report(out_dir=out, html=html, figures=paths, exports=exports,
                  guidelines=guidelines, not_established=unproven, matrices=matrices,
                  batch_tables=tables, fits=fits, findings=checks, front=front,
                  trace_run_id=trace_id)
