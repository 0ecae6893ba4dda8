"""`mode=train` (the default): train, evaluate each epoch, test, benchmark inference, and
record every phase with its energy, inside the one measured-run skeleton."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweeper import energy
from sweeper.predict.forecast import ProfileWindow
from sweeper.run.gpu_power import auto_power_limit, with_auto
from sweeper.run.inference_gate import dominating_point, skip_reason
from sweeper.run.measured import MeasuredRun
from sweeper.run.prepare import Prepared, inference_min_seconds, profile_floors
from sweeper.run.recording import Recorder, energy_split, forecast_columns
from sweeper.run.result import JobResult
from sweeper.run.stopping import energy_limit, guard_steps
from sweeper.training.progress import TrainingProgress
from sweeper.training.trainer import InferenceStats

# Phases between training epochs: a profile window that crosses an epoch leaves them out.
_NOT_TRAINING = ("eval", "inference", "pause")


@dataclass(frozen=True)
class _TrainingEnergy:
    """Energy so far less the evaluations, inference passes and pauses so far, as they read
    when asked (both settle between a slow counter's refreshes a little after they are
    taken)."""

    at: energy.EnergyCheckpoint
    evals: tuple[energy.PhaseEnergy, ...]

    @property
    def energy_j(self) -> float:
        return self.at.energy_j - sum(ph.energy_j for ph in self.evals)


def execute_training(p: Prepared) -> JobResult:
    limit = energy_limit(p.spec.config)  # checked before the run row exists
    run = MeasuredRun(p)
    sampler, recorder = run.sampler, run.recorder
    train_steps = len(p.loaders["train"]) * p.spec.epochs
    # Training steps only: a window that crosses an epoch boundary skips the evaluation.
    # Its edges are checkpoints, settled between a slow counter's refreshes by the end.
    profile = ProfileWindow(
        train_steps, p.spec.forecast.window, p.spec.forecast.warmup_steps,
        lambda: _TrainingEnergy(sampler.checkpoint(), tuple(
            ph for ph in recorder.phases if ph.kind in _NOT_TRAINING)),
        lambda: time.perf_counter() - sum(recorder.duration_of(k) for k in _NOT_TRAINING),
        steps_per_epoch=len(p.loaders["train"]), **profile_floors(p),
    )
    auto = auto_power_limit(p, sampler)  # gpu.power_limit=auto: profiled in epoch 0
    on_step = with_auto(guard_steps(profile, limit), auto)
    run.measure(lambda: run.values.update(
        _phases(p, sampler, recorder, profile, train_steps, on_step)
    ))
    if auto is not None and p.power is not None:  # the limits it kept, and its profile
        run.values["hardware"] = {**p.hardware, "gpu_power": p.power.record()}
    run.values.update(_energy_columns(run, run.values))
    forecast = profile.settled()  # the sampler has stopped: every edge is settled
    if forecast is not None:
        run.values.update(forecast_columns(forecast))
        actual = run.values.get("energy_train_j")
        if run.ok and actual:
            run.values["forecast_error"] = (forecast.energy_j - actual) / actual
    run.close()
    return run.result()


def _phases(
    p: Prepared,
    sampler: energy.EnergySampler,
    recorder: Recorder,
    profile: ProfileWindow,
    train_steps: int,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    spec, trainer, loaders = p.spec, p.trainer, p.loaders
    out: dict[str, Any] = {}
    label = f"{spec.model_label}/{spec.dataset} b{spec.batch} {spec.precision}"
    validate = len(loaders["val"].dataset) > 0  # type: ignore[arg-type]  # val_fraction=0: none
    inference = spec.inference.protocol == "study" or spec.inference.batches > 0
    # The study's per-epoch test passes measure test accuracy: no separate test phase then.
    tested_each_epoch = spec.inference.every_epoch and spec.inference.protocol == "study"
    with TrainingProgress(label, train_steps, enabled=spec.sweeper.progress) as bar:
        profile.start()
        for epoch in range(spec.epochs):
            with sampler.phase("train_epoch", epoch) as ph:
                stats = trainer.train_epoch(
                    loaders["train"], on_step or profile.on_step, bar.advance
                )
            recorder.phase(ph.result, steps=stats.steps, samples=stats.samples, loss=stats.loss,
                           accuracy=stats.accuracy)
            status = f"epoch {epoch + 1}/{spec.epochs} loss {stats.loss:.3f}"
            out["train_loss"] = stats.loss
            out["train_samples"] = out.get("train_samples", 0) + stats.samples
            if validate:
                with sampler.phase("eval", epoch) as ph:
                    val = trainer.evaluate(loaders["val"])
                recorder.phase(ph.result, samples=val.samples, loss=val.loss,
                               accuracy=val.accuracy)
                status += f" val acc {val.accuracy:.3f}"
                out["val_accuracy"] = val.accuracy
            if inference and spec.inference.every_epoch:
                inf = _inference(p, sampler, recorder, epoch, out)
                if inf.accuracy is not None:
                    status += f" test acc {inf.accuracy:.3f}"
                    out["test_accuracy"] = inf.accuracy
            bar.set_status(status)
    if not tested_each_epoch:
        with sampler.phase("test", 0) as ph:
            test = trainer.evaluate(loaders["test"])
        recorder.phase(ph.result, samples=test.samples, loss=test.loss, accuracy=test.accuracy)
        out["test_accuracy"] = test.accuracy
    if inference and not spec.inference.every_epoch:
        if spec.sweeper.inference_front:  # judged on settled figures (a refresh or two)
            sampler.settle_ended()
        accuracy, energy_j = out.get("val_accuracy"), recorder.energy_of("train_epoch")
        unc_j = recorder.uncertainty_of("train_epoch")
        dominated = dominating_point(spec.sweeper.inference_front, accuracy, energy_j, unc_j)
        if dominated is None:
            _inference(p, sampler, recorder, 0, out)
        else:  # a search trial that cannot join the front (sweeper/run/inference_gate.py)
            out["stop_reason"] = skip_reason(dominated, accuracy, energy_j, unc_j)
    return out


def _inference(
    p: Prepared, sampler: energy.EnergySampler, recorder: Recorder, index: int,
    out: dict[str, Any],
) -> InferenceStats:
    """One measured inference phase, the pause before it (the study's sleep between its
    training and test passes: a phase of its own, in neither E_tr nor E_in) and its warm-up
    (outside the phase: its energy and time cover exactly the samples it counts)."""
    spec, trainer, loader = p.spec, p.trainer, p.loaders["inference"]
    _pause(sampler, recorder, spec.inference.pause_s, index)
    study = spec.inference.protocol == "study"
    cache = None if study else trainer.cached_inputs(loader, spec.inference.batches)
    trainer.warm_up(loader, spec.inference.warmup_batches)
    min_s = inference_min_seconds(p)
    with sampler.phase("inference", index) as ph:
        if cache is None:
            inf = trainer.inference_passes(loader, spec.inference.passes, min_s)
        else:
            inf = trainer.inference_benchmark(cache, spec.inference.batches, min_s)
    recorder.phase(ph.result, steps=inf.batches, samples=inf.samples, loss=inf.loss,
                   accuracy=inf.accuracy)
    out["inference_samples"] = out.get("inference_samples", 0) + inf.samples
    return inf


def _pause(sampler: energy.EnergySampler, recorder: Recorder, seconds: float, index: int) -> None:
    """The study's sleep before its test pass, measured as a phase of its own."""
    if seconds <= 0:
        return
    with sampler.phase("pause", index) as ph:
        time.sleep(seconds)
    recorder.phase(ph.result)


def _energy_columns(run: MeasuredRun, values: dict[str, Any]) -> dict[str, Any]:
    """Per-run energy, power and carbon from the recorded phases and the sampler summary."""
    recorder, summary = run.recorder, run.summary
    out: dict[str, Any] = {
        "train_duration_s": recorder.duration_of("train_epoch") or None,
        "inference_duration_s": recorder.duration_of("inference") or None,
    }
    if not recorder.phases and summary is None:
        return out
    split = energy_split(recorder.energy_of)
    out.update(split)
    if values.get("train_samples"):
        out["energy_per_train_sample_j"] = split["energy_train_j"] / values["train_samples"]
    if values.get("inference_samples"):
        out["energy_per_inference_sample_j"] = (
            split["energy_inference_j"] / values["inference_samples"]
        )
    total_j = summary.energy_j if summary is not None else sum(split.values())
    out.update(run.summary_columns(total_j, out, by_kind=True))
    if run.ok and not any(ph.kind == "inference" for ph in recorder.phases):
        # A search trial that skipped its benchmark (inference_gate): unmeasured, not 0 J.
        for column in ("energy_inference_j", "energy_inference_uncertainty_j",
                       "energy_inference_net_j"):
            out[column] = None
    return out
