"""`mode=estimate`: the energy and time of a configuration that was never run, predicted
from the completed runs in the store with sweeper.predict.estimator, and the hardware the
fit came from.

This is the torch side: the configuration's MACs, parameters and activations come from
building its model on the `meta` device (sweeper.run.sizing; nothing trains); the
estimator itself never imports torch. Nothing is written to the store.

In a multirun (`python -m sweeper -m +experiment=study mode=estimate`) every job predicts
its configuration and returns it; sweeper.app.callbacks collects them into one table with
per-configuration and total joules and hours. Fits, model sizes and data-set sizes are
cached in the process, so a 154-configuration grid fits each target once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweeper.config.schema import Estimate, validate
from sweeper.config.spec import RunSpec
from sweeper.config.storage import launch_dir, open_existing
from sweeper.errors import ConfigError
from sweeper.predict.estimator import EnergyFit, Prediction, fit_energy
from sweeper.predict.observations import INFERENCE_TARGETS
from sweeper.predict.observations import load_observations as load_store_observations
from sweeper.predict.types import Observation, Query
from sweeper.run.result import JobResult
from sweeper.run.sizing import layer_timer, run_activations, run_layers, size_config
from sweeper.store import Store

log = logging.getLogger(__name__)

ENERGY_TARGETS = ("train", "inference")
TIME_TARGETS = ("train_time", "inference_time")


@dataclass(frozen=True)
class EstimateOptions:
    hardware: str | None
    meter: str | None
    sweep: str | None
    level: float


def estimate_options(cfg: DictConfig) -> EstimateOptions:
    """The `estimate.*` keys, checked by the schema's validator (sweeper.config.schema)."""
    node = OmegaConf.select(cfg, "estimate") or {}
    values = Estimate(**validate(Estimate, node, "estimate."))
    return EstimateOptions(**{k: None if v is None else str(v) for k, v in (
        ("hardware", values.hardware), ("meter", values.meter), ("sweep", values.sweep))},
        level=values.level)


def choose_group(
    observations: list[Observation], hardware_id: str, meter: str | None, store: Store,
    sweep: str | None = None,
) -> list[Observation]:
    """The runs of one hardware and one meter; refuses, naming what exists (and the sweep
    filter the runs were read with), otherwise."""
    available = Counter((o.hardware_id, o.meter_source, o.hardware_label) for o in observations)
    listed = "; ".join(f"{h} ({m}, {n} runs: {label})" for (h, m, label), n in available.items())
    on_hw = [o for o in observations if o.hardware_id == hardware_id]
    if not on_hw:
        raise ConfigError(
            f"no completed runs on hardware {hardware_id} in {store.display_url} "
            f"({_filter(sweep)}) to fit an estimate from; runs there exist for: "
            f"{listed or 'none'}. Run a sweep here first "
            "(e.g. +experiment=study_smoke), or pass estimate.hardware=ID to use another "
            "machine's fit"
        )
    meters = Counter(o.meter_source for o in on_hw)
    chosen = meter or meters.most_common(1)[0][0]
    group = [o for o in on_hw if o.meter_source == chosen]
    if not group:
        raise ConfigError(f"invalid value for 'estimate.meter': {meter!r}; runs on hardware "
                          f"{hardware_id} have: {', '.join(meters)}")
    return group


def _filter(sweep: str | None) -> str:
    return f"estimate.sweep={sweep!r}: that sweep's runs only" if sweep else \
        "estimate.sweep unset: every sweep's runs"


_FITS: dict[tuple, dict[str, EnergyFit]] = {}


def fitted(store: Store, options: EstimateOptions, hardware_id: str) -> dict[str, EnergyFit]:
    """The energy and time fits of one hardware's runs (cached for the whole grid)."""
    key = (store.display_url, options.sweep, options.meter, options.level, hardware_id)
    if key in _FITS:
        return _FITS[key]
    fits: dict[str, EnergyFit] = {}
    meter = options.meter
    for target in ENERGY_TARGETS + TIME_TARGETS:
        observations = load_store_observations(store, target, sweep=options.sweep,
                                               activations=run_activations, layers=run_layers,
                                               layer_time=layer_timer(store))
        if target != "train" and not observations:
            continue
        group = choose_group(observations, hardware_id, meter, store, options.sweep)
        meter = meter or group[0].meter_source  # time fits from the same runs' meter
        fits[target] = fit_energy(group, target, options.level)
    _FITS[key] = fits
    return fits


@dataclass(frozen=True)
class Range:
    """A total with its interval (None where a part had none)."""

    value: float
    low: float | None
    high: float | None

    def __add__(self, other: Range) -> Range:
        low = None if self.low is None or other.low is None else self.low + other.low
        high = None if self.high is None or other.high is None else self.high + other.high
        return Range(self.value + other.value, low, high)


ZERO = Range(0.0, 0.0, 0.0)


def _scaled(p: Prediction | None, samples: int) -> Range:
    if p is None or samples == 0:
        return ZERO
    value, low, high = p.scaled(samples)
    return Range(value, low, high)


@dataclass(frozen=True)
class ConfigEstimate:
    """One configuration's predicted joules and seconds, and how far to trust them."""

    label: str
    epochs: int
    train_samples: int  # over all epochs
    eval_samples: int  # validation passes and the test pass
    inference_samples: int
    energy_j: Range
    duration_s: Range | None  # None where no run stored its durations
    energy_train_j: Range
    predictions: dict[str, Prediction]
    params: int
    macs_per_sample: float
    activations_per_sample: float | None
    co2_g: float | None = None  # of the point estimate, at the configured grid intensity

    @property
    def known_model(self) -> bool:
        return self.predictions["train"].known_model

    @property
    def warnings(self) -> list[str]:
        return [f"{t}: {w}" for t, p in self.predictions.items() for w in p.warnings]


def estimate_config(cfg: DictConfig, spec: RunSpec) -> ConfigEstimate:
    """Predict one configuration's energy and time from this hardware's fitted runs."""
    options = estimate_options(cfg)
    store = open_existing(
        spec.storage.url, "mode=estimate fits the completed runs stored there; run some first"
    )
    sized = size_config(spec, str(launch_dir()))
    hardware_id = options.hardware or sized.hardware_id
    fits = fitted(store, options, hardware_id)
    query = Query(sized.macs_per_sample, sized.params, spec.batch, spec.precision,
                  sized.activations_per_sample, sized.layer_features)
    timer = layer_timer(store)
    # The inference targets are fitted at the batch their samples ran at (inference.batch).
    batches = {t: spec.inference.batch if t in INFERENCE_TARGETS else spec.batch for t in fits}
    predictions = {t: f.predict(replace(query, batch=batches[t], layer_s=timer.predict(
        hardware_id, spec.precision, t, sized.layer_works, batches[t])))
        for t, f in fits.items()}
    train_samples = sized.train_samples * spec.epochs
    study = spec.inference.protocol == "study"
    # The study's per-epoch test passes are the test: no separate test pass then.
    tested_each_epoch = study and spec.inference.every_epoch
    eval_samples = sized.eval_samples_per_epoch * spec.epochs + (
        0 if tested_each_epoch else sized.test_samples)
    if study:  # the test set, `passes` times (at least)
        inference_samples = sized.test_samples * spec.inference.passes
    else:
        inference_samples = spec.inference.batches * spec.inference.batch
    if spec.inference.every_epoch:
        inference_samples *= spec.epochs
    # Evaluation passes are forward passes: costed at the inference fit's rate per sample.
    energy_train = _scaled(predictions["train"], train_samples)
    energy = energy_train + _scaled(predictions.get("inference"),
                                    eval_samples + inference_samples)
    duration = None
    if "train_time" in predictions:
        duration = _scaled(predictions["train_time"], train_samples) + _scaled(
            predictions.get("inference_time"), eval_samples + inference_samples)
    label = f"{spec.model_label}/{spec.dataset} b{spec.batch} {spec.precision}"
    return ConfigEstimate(
        label=label, epochs=spec.epochs, train_samples=train_samples,
        eval_samples=eval_samples, inference_samples=inference_samples, energy_j=energy,
        duration_s=duration, energy_train_j=energy_train, predictions=predictions,
        params=sized.params, macs_per_sample=sized.macs_per_sample,
        activations_per_sample=sized.activations_per_sample,
    )


def run_estimate(cfg: DictConfig, spec: RunSpec, *, in_grid: bool = False) -> JobResult:
    from sweeper import energy

    estimate = estimate_config(cfg, spec)
    carbon = energy.carbon_intensity(spec.energy.country, spec.energy.region)
    co2 = energy.co2_g(estimate.energy_j.value, carbon.g_per_kwh, spec.energy.pue)
    estimate = replace(estimate, co2_g=co2)
    if in_grid:
        log.info("estimated %s: %.4g J", estimate.label, estimate.energy_j.value)
        _leave_for_the_grid(estimate)
    else:
        print_estimate(spec, estimate, co2)
    train = estimate.predictions["train"]
    inference = estimate.predictions.get("inference")
    return JobResult(
        status="estimate", run_id=None, sweep_id=0,
        energy_train_j=estimate.energy_train_j.value,
        energy_inference_j=None if inference is None
        else inference.per_sample * estimate.inference_samples,
        energy_per_inference_sample_j=None if inference is None
        else inference.per_sample,
        energy_total_j=estimate.energy_j.value, co2_g=co2, meter_source=train.meter_source,
        extra={"mode": "estimate", "hardware_id": train.hardware_id,
               "loo_mape": train.loo_mape, "lomo_mape": train.lomo_mape,
               "params": estimate.params, "macs_per_sample": estimate.macs_per_sample,
               "estimate": estimate},
    )


def _leave_for_the_grid(estimate: ConfigEstimate) -> None:
    from hydra.core.hydra_config import HydraConfig

    from sweeper.run.estimate_files import save_estimate

    hydra = HydraConfig.get()
    save_estimate(hydra.runtime.output_dir, int(hydra.job.num), estimate)


def _interval(r: Range, unit: float = 1.0) -> str:
    if r.low is None or r.high is None:
        return "-"
    return f"{r.low * unit:.4g} - {r.high * unit:.4g}"


def score_line(target: str, p: Prediction) -> str:
    """Where a fit came from and both of its held-out scores."""
    config = "-" if p.loo_mape is None else f"{p.loo_mape:.1%}"
    model = "- (too few models)" if p.lomo_mape is None else f"{p.lomo_mape:.1%}"
    covered = "" if p.coverage is None else (
        f"; its {p.level:.0%} intervals held {p.coverage:.0%} of the {p.interval_from}' runs")
    return (f"{target} fit: hardware {p.hardware_id} ({p.hardware_label}), meter "
            f"{p.meter_source}, {p.n_rows} runs / {p.n_configs} configurations / {p.n_models} "
            f"models, law {p.law}; held-out MAPE: by configuration {config}, by model {model}"
            + covered)


def interval_note(p: Prediction) -> str:
    """What every interval of `mode=estimate` means: one sentence for one run and a grid."""
    never_run = ("by model (leave-one-model-out) for a model never run" if p.lomo_mape is not None
                 else "and, with too few models fitted to hold one out, for a model never run "
                 "too (narrower than it should be)")
    return (f"intervals: {p.level:.0%} prediction intervals from held-out residuals, by "
            "configuration (leave-one-configuration-out) for a model already run on this "
            f"hardware, {never_run}")


def print_estimate(
    spec: RunSpec, estimate: ConfigEstimate, co2_g: float, console: Console | None = None
) -> None:
    train = estimate.predictions["train"]
    estimated = train.estimated
    title = (f"estimate for {estimate.label}, {spec.epochs} epoch(s) (not run)"
             + (" (estimated energy)" if estimated else ""))
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("estimate", justify="right")
    table.add_column(f"{train.level:.0%} interval", justify="right")
    per = _scaled(train, 1)
    table.add_row("E_tr per training sample", f"{per.value * 1e3:.4g} mJ",
                  _interval(per, 1e3) + " mJ")
    table.add_row(f"E_tr, {estimate.train_samples} samples",
                  f"{estimate.energy_train_j.value:.4g} J",
                  _interval(estimate.energy_train_j) + " J")
    inference = estimate.predictions.get("inference")
    if inference is not None:
        per = _scaled(inference, 1)
        table.add_row("E_in per inference sample", f"{per.value * 1e3:.4g} mJ",
                      _interval(per, 1e3) + " mJ")
        e_in = _scaled(inference, estimate.inference_samples)
        table.add_row(f"E_in, {estimate.inference_samples} samples", f"{e_in.value:.4g} J",
                      _interval(e_in) + " J")
    table.add_row(f"energy, whole run (with {estimate.eval_samples} evaluation samples)",
                  f"{estimate.energy_j.value:.4g} J", _interval(estimate.energy_j) + " J")
    if estimate.duration_s is not None:
        table.add_row("time, whole run", f"{estimate.duration_s.value:.4g} s",
                      _interval(estimate.duration_s) + " s")
    table.add_row("CO2 (whole run)", f"{co2_g:.4g} g", "")
    acts = estimate.activations_per_sample
    lines = [f"model: {estimate.params:,} parameters, {estimate.macs_per_sample:,.0f} MACs per "
             "sample" + (f", {acts:,.0f} activations per sample" if acts else "")
             + ("" if estimate.known_model else " (a model not in the fitted runs)")]
    for target, p in estimate.predictions.items():
        lines.append(score_line(target, p))
        lines += [f"warning ({target}): {w}" for w in p.warnings]
    lines.append(interval_note(train))
    if estimated:
        lines.append("the fitted energies come from the estimate meter: relative, not measured")
    console = console or Console(width=140)
    console.print(table)
    for line in lines:
        console.print(escape(line), highlight=False)
