"""`mode=estimate`: the energy of a configuration that was never run, predicted from the
completed runs in the store with sweeper.predict.estimator, and the hardware the fit came from.

This is the torch side: the configuration's MACs and parameter count come from building
its model (no training); the estimator itself never imports torch. Nothing is written to
the store.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweeper.config.spec import RunSpec
from sweeper.config.storage import launch_dir, open_existing
from sweeper.errors import ConfigError
from sweeper.predict.estimator import EnergyFit, Observation, Prediction, Query, fit_energy
from sweeper.predict.observations import load_observations as load_store_observations
from sweeper.run.result import JobResult
from sweeper.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EstimateOptions:
    hardware: str | None
    meter: str | None
    sweep: str | None
    level: float


def estimate_options(cfg: DictConfig) -> EstimateOptions:
    level = OmegaConf.select(cfg, "estimate.level", default=0.9)
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ConfigError(f"invalid value for 'estimate.level': {level!r}; allowed: a "
                          "fraction between 0 and 1 (exclusive)")
    values = {k: OmegaConf.select(cfg, f"estimate.{k}", default=None)
              for k in ("hardware", "meter", "sweep")}
    return EstimateOptions(**{k: None if v is None else str(v) for k, v in values.items()},
                           level=float(level))


@dataclass(frozen=True)
class SizedConfig:
    """What the estimate needs to know about the configuration, from building its model."""

    params: int
    macs_per_sample: float
    train_samples: int  # one epoch
    hardware_id: str


def size_config(spec: RunSpec, base_dir: str) -> SizedConfig:
    """Build the configuration's model (no training) for its MACs and parameters."""
    from sweeper.datasets import load_dataset
    from sweeper.energy.hardware import describe_host
    from sweeper.models import build_model, describe_model
    from sweeper.training.device import describe_accelerator, resolve_device

    options = dict(spec.dataset_options)
    root = Path(str(options.pop("root", "data"))).expanduser()
    if not root.is_absolute():
        root = Path(base_dir) / root
    try:
        data = load_dataset(spec.dataset, root=root, seed=spec.seed, **options)
        model = build_model(spec.model, data.input_shape, data.num_classes, **spec.model_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid option for {spec.model!r}/{spec.dataset!r}: {exc}") from exc
    info = describe_model(model, data.input_shape)
    device = resolve_device(spec.device)
    return SizedConfig(
        params=info.params, macs_per_sample=info.macs_per_sample,
        train_samples=len(data.train),  # type: ignore[arg-type]
        hardware_id=describe_host(describe_accelerator(device)).hardware_id,
    )


def choose_group(
    observations: list[Observation], hardware_id: str, meter: str | None, store: Store
) -> list[Observation]:
    """The runs of one hardware and one meter; refuses, naming what exists, otherwise."""
    available = Counter((o.hardware_id, o.meter_source, o.hardware_label) for o in observations)
    listed = "; ".join(f"{h} ({m}, {n} runs: {label})" for (h, m, label), n in available.items())
    on_hw = [o for o in observations if o.hardware_id == hardware_id]
    if not on_hw:
        raise ConfigError(
            f"no completed runs on hardware {hardware_id} in {store.display_url} to fit "
            f"an estimate from; runs exist for: {listed or 'none'}. Run a sweep here first, "
            "or pass estimate.hardware=ID to use another machine's fit"
        )
    meters = Counter(o.meter_source for o in on_hw)
    chosen = meter or meters.most_common(1)[0][0]
    group = [o for o in on_hw if o.meter_source == chosen]
    if not group:
        raise ConfigError(f"invalid value for 'estimate.meter': {meter!r}; runs on hardware "
                          f"{hardware_id} have: {', '.join(meters)}")
    return group


def run_estimate(cfg: DictConfig, spec: RunSpec) -> JobResult:
    from sweeper import energy

    options = estimate_options(cfg)
    store = open_existing(
        spec.storage_url, "mode=estimate fits the completed runs stored there; run some first"
    )
    sized = size_config(spec, str(launch_dir()))
    hardware_id = options.hardware or sized.hardware_id
    fits: dict[str, EnergyFit] = {}
    for target in ("train", "inference"):
        observations = load_store_observations(store, target, sweep=options.sweep)
        if target == "inference" and not observations:
            continue
        group = choose_group(observations, hardware_id, options.meter, store)
        fits[target] = fit_energy(group, target, options.level)
    query = Query(sized.macs_per_sample, sized.params, spec.batch, spec.precision)
    predictions = {t: f.predict(query) for t, f in fits.items()}
    train_samples = sized.train_samples * spec.epochs
    inference_samples = spec.inference_batches * spec.inference_batch
    total_j = predictions["train"].energy_per_sample_j * train_samples
    if "inference" in predictions:
        total_j += predictions["inference"].energy_per_sample_j * inference_samples
    carbon = energy.carbon_intensity(spec.country, spec.region)
    co2 = energy.co2_g(total_j, carbon.g_per_kwh, spec.pue)
    print_estimate(spec, sized, predictions, train_samples, inference_samples, co2)
    train = predictions["train"]
    return JobResult(
        status="estimate", run_id=None, sweep_id=0,
        energy_train_j=train.energy_per_sample_j * train_samples,
        energy_inference_j=None if "inference" not in predictions
        else predictions["inference"].energy_per_sample_j * inference_samples,
        energy_total_j=total_j, co2_g=co2, meter_source=train.meter_source,
        extra={"mode": "estimate", "hardware_id": train.hardware_id,
               "loo_mape": train.loo_mape, "params": sized.params,
               "macs_per_sample": sized.macs_per_sample},
    )


def _interval(p: Prediction, samples: int, unit: float = 1.0) -> str:
    _, low, high = p.scaled(samples)
    if low is None or high is None:
        return "-"
    return f"{low * unit:.4g} - {high * unit:.4g}"


def print_estimate(
    spec: RunSpec,
    sized: SizedConfig,
    predictions: dict[str, Prediction],
    train_samples: int,
    inference_samples: int,
    co2_g: float,
    console: Console | None = None,
) -> None:
    train = predictions["train"]
    estimated = train.estimated
    title = (f"estimate for {spec.model_label}/{spec.dataset} b{spec.batch} {spec.precision}, "
             f"{spec.epochs} epoch(s) (not run)" + (" (estimated energy)" if estimated else ""))
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("estimate", justify="right")
    table.add_column(f"{train.level:.0%} interval", justify="right")
    table.add_row("E_tr per training sample", f"{train.energy_per_sample_j * 1e3:.4g} mJ",
                  _interval(train, 1, 1e3) + " mJ")
    table.add_row(f"E_tr, {train_samples} samples", f"{train.scaled(train_samples)[0]:.4g} J",
                  _interval(train, train_samples) + " J")
    inference = predictions.get("inference")
    if inference is not None:
        table.add_row("E_in per inference sample", f"{inference.energy_per_sample_j * 1e3:.4g} mJ",
                      _interval(inference, 1, 1e3) + " mJ")
        table.add_row(f"E_in, {inference_samples} samples",
                      f"{inference.scaled(inference_samples)[0]:.4g} J",
                      _interval(inference, inference_samples) + " J")
    table.add_row("CO2 (train + inference)", f"{co2_g:.4g} g", "")
    lines = [f"model: {sized.params:,} parameters, {sized.macs_per_sample:,.0f} MACs per sample"]
    for target, p in predictions.items():
        score = ("no held-out score" if p.loo_mape is None
                 else f"held-out MAPE {p.loo_mape:.1%}, R^2 (log) {p.loo_r2_log:.2f}")
        lines.append(f"{target} fit: hardware {p.hardware_id} ({p.hardware_label}), meter "
                     f"{p.meter_source}, {p.n_rows} runs / {p.n_configs} configurations, {score}")
        lines += [f"warning ({target}): {w}" for w in p.warnings]
    if estimated:
        lines.append("the fitted energies come from the estimate meter: relative, not measured")
    console = console or Console(width=140)
    console.print(table)
    for line in lines:
        console.print(escape(line), highlight=False)
