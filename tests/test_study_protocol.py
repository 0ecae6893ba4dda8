"""The study as its released code ran it (issue 19): a test pass over 5x the test set after
every epoch at the training batch size, the 2 s pauses, training on every image, the 143-run
batch sweep; inference warm-up outside the measured phase; `mode=estimate` without the data
set on disk. Real Hydra compose, real torch training on a tiny CIFAR-10 in torchvision's
on-disk format, a real SQLite store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose

from sweeper import energy
from sweeper.app.callbacks import grid_job_overrides
from sweeper.app.command_line import check_command_line
from sweeper.config.spec import build_spec
from sweeper.datasets import load_dataset
from sweeper.energy.select import MeterSet
from sweeper.energy.types import DomainReading
from sweeper.run import prepare as prepare_module
from sweeper.run.job import run_job
from tests.conftest import run_cli
from tests.test_study import STUDY_MODELS, expected_law, seed_store

FAST = ["device=cpu", "meter=estimate", "energy.idle.seconds=0", "sweeper.progress=false",
        "energy.keep_samples=false"]


def _grid_jobs(experiment: str) -> list[list[str]]:
    """The jobs Hydra's basic sweeper launches for a preset (nothing runs)."""
    cfg = compose("config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    return grid_job_overrides(cfg)


def test_study_grid_is_the_released_batch_sweep(hydra_conf: None) -> None:
    study = _grid_jobs("study")
    models = {job[0].removeprefix("model=") for job in study}
    assert len(study) == 143 and "googlenet" not in models and len(models) == 13
    with_googlenet = _grid_jobs("study_googlenet")
    assert len(with_googlenet) == 154
    assert {job[0].removeprefix("model=") for job in with_googlenet} == set(STUDY_MODELS)
    per_model = _grid_jobs("study_models")
    assert len(per_model) == 14 and all(job[1] == "batch=128" for job in per_model)
    spec = build_spec(compose("config", overrides=["+experiment=study_models", "model=lenet"]))
    assert (spec.epochs, spec.batch, spec.inference.batch) == (100, 128, 128)
    assert len(_grid_jobs("study_smoke")) == 13 * 3


def test_study_keys_and_sweepers_default(hydra_conf: None) -> None:
    study = build_spec(compose("config", overrides=["+experiment=study", "model=lenet",
                                                    "batch=32"]))
    assert study.inference.batch == 32  # the training batch size, as --test-size ${batch}
    assert (study.inference.every_epoch, study.inference.pause_s, study.inference.passes,
            study.inference.min_seconds, study.inference.warmup_batches) == (True, 2.0, 5, 0, 0)
    assert study.dataset_options["val_fraction"] == 0
    assert (study.loader.workers, study.loader.pin_memory) == (1, None)  # pinned on CUDA
    own = build_spec(compose("config"))
    assert (own.inference.every_epoch, own.inference.pause_s) == (False, 0.0)
    # sweeper's cleaner protocol is one override away from the study's.
    cleaner = build_spec(compose("config", overrides=[
        "+experiment=study", "model=lenet", "inference.every_epoch=false",
        "dataset.val_fraction=0.1", "loader.workers=auto"]))
    assert not cleaner.inference.every_epoch and cleaner.loader.workers is None
    with pytest.raises(Exception, match="inference.every_epoch"):  # OmegaConf would read True
        check_command_line(["inference.every_epoch=3"])


def _run(root: Path, db: Path, overrides: list[str]) -> dict[str, Any]:
    cfg = compose("config", overrides=[
        "dataset=cifar10", f"dataset.root={root}", f"storage.url=sqlite:///{db}", *FAST,
        *overrides])
    result = run_job(cfg)
    assert result.status == "completed", result.error
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        run = dict(conn.execute("select * from runs where id = ?", (result.run_id,)).fetchone())
        run["phases"] = [dict(r) for r in conn.execute(
            'select * from phases where run_id = ? order by id', (result.run_id,))]
    return run


def test_study_protocol_tests_after_every_epoch(
    hydra_conf: None, tiny_cifar10: Path, tmp_path: Path
) -> None:
    """2 epochs on a 50-image CIFAR-10 (20 test images) at batch 8: each epoch's test pass is
    its own measured phase over 5 x 20 images in batches of 8, after a pause."""
    run = _run(tiny_cifar10, tmp_path / "s.db", [
        "+experiment=study", "model=lenet", "batch=8", "epochs=2", "inference.pause_s=0.05"])
    kinds = [(p["kind"], p["index"]) for p in run["phases"]]
    assert kinds == [("train_epoch", 0), ("pause", 0), ("inference", 0),
                     ("train_epoch", 1), ("pause", 1), ("inference", 1)]
    tests = [p for p in run["phases"] if p["kind"] == "inference"]
    assert all(p["samples"] == 5 * 20 and p["steps"] == 5 * 3 for p in tests)  # ceil(20/8)
    assert all(p["energy_j"] is not None and p["accuracy"] is not None for p in tests), [
        p["energy_flag"] for p in tests]
    assert all(p["duration_s"] >= 0.05 for p in run["phases"] if p["kind"] == "pause")
    # E_in: the epochs' test passes, pauses in neither E_in nor E_tr
    assert run["energy_inference_j"] == pytest.approx(sum(p["energy_j"] for p in tests))
    assert run["energy_train_j"] == pytest.approx(
        sum(p["energy_j"] for p in run["phases"] if p["kind"] == "train_epoch"))
    assert run["inference_samples"] == 2 * 100
    assert run["energy_per_inference_sample_j"] == pytest.approx(
        run["energy_inference_j"] / 200)
    # All 50 training images, accuracy is test accuracy (the last epoch's test pass)
    assert run["train_samples"] == 2 * 50 and run["val_accuracy"] is None
    assert run["test_accuracy"] == tests[-1]["accuracy"]
    assert '"workers": 1' in run["hardware"]  # the study's one loader worker
    # Short per-epoch test passes make one warning line, not one per epoch.
    assert (run["measurement_warning"] or "").count("E_in is low-resolution") <= 1


def test_val_fraction_zero_trains_on_every_image(
    hydra_conf: None, tiny_cifar10: Path, tmp_path: Path
) -> None:
    run = _run(tiny_cifar10, tmp_path / "v.db", [
        "model=cnn", "batch=10", "epochs=2", "dataset.val_fraction=0", "inference.batches=2"])
    kinds = [p["kind"] for p in run["phases"]]
    assert kinds == ["train_epoch", "train_epoch", "test", "inference"]  # no empty eval
    assert [p["samples"] for p in run["phases"][:2]] == [50, 50]
    assert run["val_accuracy"] is None and run["test_accuracy"] is not None


class PerSampleMeter:
    """A meter whose counter moves by a known energy for every sample the model forwards,
    and by nothing else: a phase's energy per sample must come out exactly at that figure
    when the phase covers exactly the samples it counts."""

    source = "rapl"

    def __init__(self, joules_per_sample: float) -> None:
        self.joules_per_sample = joules_per_sample
        self.samples = 0

    def count(self, _module: torch.nn.Module, inputs: tuple, _out: Any) -> None:
        self.samples += int(inputs[0].shape[0])

    def read(self) -> list[DomainReading]:
        return [DomainReading("package-0", "rapl", self.samples * self.joules_per_sample)]

    def describe(self) -> dict[str, str]:
        return {"package-0": "test meter: a fixed energy per forwarded sample"}

    def close(self) -> None:
        pass


@pytest.mark.parametrize("protocol", ["batches", "study"])
@pytest.mark.parametrize("warmup", [0, 2])
def test_inference_warm_up_is_outside_the_measured_phase(
    hydra_conf: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str,
    warmup: int,
) -> None:
    e_j = 1e-3
    meter = PerSampleMeter(e_j)
    build = prepare_module.build_model

    def counted(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = build(*args, **kwargs)
        model.register_forward_hook(meter.count)
        return model

    monkeypatch.setattr(prepare_module, "build_model", counted)
    monkeypatch.setattr(energy, "open_meters", lambda *a, **k: MeterSet([meter], ["test"]))
    db = tmp_path / "w.db"
    cfg = compose("config", overrides=[
        "model=cnn", "batch=32", "epochs=1", f"storage.url=sqlite:///{db}", *FAST[:1],
        "energy.idle.seconds=0", "sweeper.progress=false", f"inference.protocol={protocol}",
        f"inference.warmup_batches={warmup}", "inference.batches=3", "inference.passes=2",
        "inference.min_seconds=0", "inference.batch=16"])
    result = run_job(cfg)
    assert result.status == "completed", result.error
    with sqlite3.connect(db) as conn:
        per_sample, e_in, unc, samples = conn.execute(
            "select energy_per_inference_sample_j, energy_inference_j, "
            "energy_inference_uncertainty_j, inference_samples from runs").fetchone()
    test_images = len(load_dataset("digits").test)
    assert samples == (3 * 16 if protocol == "batches" else 2 * test_images)
    assert abs(e_in - e_j * samples) <= unc + 1e-9 * e_in
    assert per_sample == pytest.approx(e_j, rel=1e-9)


def test_study_estimate_without_cifar10_on_disk(hydra_conf: None, tmp_path: Path) -> None:
    """The study's sizes come from CIFAR-10's config (50,000 / 10,000 images), not its files:
    200 epochs of 50,000 training images and 5 x 10,000 test images after each."""
    from sweeper.run.estimate_mode import estimate_config

    db = tmp_path / "e.db"
    seed_store(db)
    cfg = compose("config", overrides=[
        "+experiment=study", "model=resnet", "batch=128", "mode=estimate", "device=cpu",
        f"dataset.root={tmp_path / 'nothing here'}", f"storage.url=sqlite:///{db}"])
    estimate = estimate_config(cfg, build_spec(cfg))
    assert (estimate.train_samples, estimate.eval_samples, estimate.inference_samples) == (
        200 * 50_000, 0, 200 * 5 * 10_000)
    energy_j, _ = expected_law("resnet", 128, train=200 * 50_000, other=200 * 50_000)
    assert estimate.energy_j.value == pytest.approx(energy_j, rel=1e-3)


@pytest.mark.slow
def test_study_estimate_prints_its_table_without_cifar10(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    seed_store(db)
    result = run_cli(["-m", "+experiment=study", "mode=estimate", "model=lenet,resnet18",
                      "batch=4,256", "device=cpu", f"dataset.root={tmp_path / 'empty'}",
                      f"storage.url=sqlite:///{db}", f"hydra.sweep.dir={tmp_path / 'mr'}"],
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "estimate of a 4-configuration grid (nothing run)" in result.stdout
    assert "resnet18/cifar10 b256 fp32" in result.stdout
    assert result.stdout.count("intervals: 90% prediction intervals from held-out") == 1
    # One message on what the intervals mean, not a second "interval from held-out models"
    # per table (each fit's score line may still say how often its intervals held).
    assert "interval from held-out" not in result.stdout


@pytest.mark.slow
def test_a_search_refuses_val_fraction_zero(tmp_path: Path) -> None:
    """The search maximises validation accuracy: with none, it is refused in one line."""
    result = run_cli(["-m", "hydra/sweeper=pareto", "dataset.val_fraction=0",
                      f"storage.url=sqlite:///{tmp_path / 's.db'}"], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "dataset.val_fraction" in result.stderr and "search" in result.stderr
    assert not (tmp_path / "s.db").exists()  # refused before the store is opened
