"""The layer-time law (issue 24): mode=layers times a generic catalog of single layers into
the store; per-kind laws fitted on it and summed over a network's layers predict a network
that is not in the catalog, at a batch size the catalog was not timed at; the estimator and
the frontier sampler offer it where the machine has a catalog."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from models import build_model, describe_layers
from sweeper.predict.layer_time import LayerWork, fit_layer_time, group_of, layer_work
from sweeper.store import LayerCost
from sweeper.training.layer_catalog import catalog, measure_catalog

# A known per-call law of seconds: per group, (per call, per MAC x batch, per element moved
# x batch, per parameter).
LAW = {"conv": (3e-5, 2e-11, 1e-9, 4e-10), "conv_grouped": (2e-5, 2e-10, 2e-9, 1e-9),
       "linear": (1e-5, 3e-11, 5e-10, 2e-10), "norm": (2e-5, 0.0, 3e-9, 1e-8),
       "act": (5e-6, 0.0, 1.5e-9, 0.0), "pool": (8e-6, 0.0, 2e-9, 0.0)}
UNSEEN = [("resnet18", (3, 32, 32)), ("mobilenetv2", (3, 32, 32)), ("vgg", (3, 16, 16))]


def _call_s(work: LayerWork, batch: int) -> float:
    coef = LAW.get(work.group) or LAW["linear" if work.macs > 0 else "act"]
    return coef[0] + coef[1] * work.macs * batch + coef[2] * work.moved * batch + \
        coef[3] * work.params


@pytest.fixture(scope="module")
def catalog_works() -> list[tuple[str, LayerWork, object]]:
    """Every catalog layer's work, from the same describe_layers pass mode=layers uses."""
    out = []
    for name, shape, module in catalog():
        (info,) = describe_layers(nn.Sequential(module), shape)
        out.append((name, layer_work(info), info))
    return out


def _cost(name: str, info: object, batch: int, train_s: float, inference_s: float
          ) -> LayerCost:
    return LayerCost(layer=name, kind=info.kind, groups=info.groups, batch=batch,  # type: ignore[attr-defined]
                     macs_per_sample=info.macs, params=info.params,  # type: ignore[attr-defined]
                     elements_in_per_sample=info.elements_in,  # type: ignore[attr-defined]
                     elements_out_per_sample=info.elements_out,  # type: ignore[attr-defined]
                     train_s=train_s, inference_s=inference_s)


def _synthetic_rows(works: list, batches: tuple[int, ...], noise: float) -> list[LayerCost]:
    rng = random.Random(7)
    rows = []
    for batch in batches:
        for name, work, info in works:
            t = _call_s(work, batch) * rng.lognormvariate(0.0, noise)
            rows.append(_cost(name, info, batch, t, t / 3))
    return rows


def test_the_law_recovers_a_known_per_layer_law_for_networks_not_in_the_catalog(
    catalog_works: list,
) -> None:
    """Catalog times follow a known per-kind law with 5% noise, timed at batch 8 and 32; the
    fitted law predicts three networks' layer sums (the networks never timed whole) at
    batch 64, a batch size the catalog was not timed at, within 5%."""
    law = fit_layer_time(_synthetic_rows(catalog_works, (8, 32), noise=0.05), "train")
    assert law.layers_fitted == 2 * len(catalog_works)
    for name, shape in UNSEEN:
        with torch.device("meta"):
            net = build_model(name, shape, 10)
        works = [layer_work(x) for x in describe_layers(net, shape)]
        truth = sum(_call_s(w, 64) for w in works) / 64
        assert law.per_sample_s(works, 64) == pytest.approx(truth, rel=0.05), name


def test_the_catalog_is_generic_and_spans_the_kinds_networks_use(catalog_works: list) -> None:
    groups = {work.group for _, work, _ in catalog_works}
    assert {"conv", "conv_grouped", "linear", "attention", "norm", "act", "pool"} <= groups
    names = [name for name, _, _ in catalog_works]
    assert len(names) == len(set(names)) > 500


def test_measure_catalog_times_real_layers_on_the_cpu() -> None:
    rows = measure_catalog(batch=4, device=torch.device("cpu"), limit=4, min_s=0.001)
    assert [r.layer for r in rows] == ["Conv2d(8, 8, k1) 32x32", "Conv2d(8, 8, k3) 32x32",
                                      "Conv2d(8, 8, k3, s2) 32x32", "Conv2d(8, 16, k1) 32x32"]
    first = rows[0]
    assert first.macs_per_sample == 8 * 8 * 32 * 32 and first.params == 64
    assert first.kind == "conv" and first.groups == 1 and first.batch == 4
    for r in rows:
        assert r.train_s > 0 and r.inference_s > 0 and r.repeats >= 5 and r.train_spread >= 0
    # Forward and backward cost more than a forward without gradients.
    assert sum(r.train_s for r in rows) > sum(r.inference_s for r in rows)


def test_attention_is_one_layer_with_its_projections_matmuls_and_weights() -> None:
    """nn.MultiheadAttention calls its output projection's weights directly (the child's
    hook never fires), so it is described whole: a vit's layers hold its attention's MACs
    (no remainder outside a layer), and the attention weights it writes count as moved.
    The catalog's attention layers time for real and cost more than a linear of their
    projections alone."""
    from sweeper.training.layer_catalog import SelfAttention, time_layer

    tokens, dim, heads = 17, 64, 4  # 16x16 image, patch 4: 16 patches and a class token
    with torch.device("meta"):
        net = build_model("vit", (3, 16, 16), 10, dim=dim, depth=2, heads=heads,
                          patch_size=4)
    layers = describe_layers(net, (3, 16, 16))
    attention = [x for x in layers if x.kind == "attention"]
    assert [x.name for x in attention] == ["encoder.0.self_attn", "encoder.1.self_attn"]
    assert not [x for x in layers if x.name == "(not in a leaf)"]
    first = attention[0]
    # q, k, v and output projections (4 T d^2) and the two attention matmuls (2 T^2 d).
    assert first.macs == 4 * tokens * dim * dim + 2 * tokens * tokens * dim
    assert first.elements_out == tokens * dim + heads * tokens * tokens
    assert first.params == 4 * dim * dim + 4 * dim
    assert layer_work(first).group == "attention"

    module = SelfAttention(32, 4)
    (info,) = describe_layers(nn.Sequential(module), (9, 32))
    assert info.kind == "attention" and info.macs == 4 * 9 * 32 * 32 + 2 * 9 * 9 * 32
    for _ in range(3):  # one preempted timing can invert the pair on a loaded machine
        train, inference = time_layer(module, (9, 32), 4, torch.device("cpu"), min_s=0.001)
        if train[0] > inference[0] > 0:
            break
    assert train[0] > inference[0] > 0


def test_mode_layers_stores_the_catalog_under_the_runs_hardware_id(
    tmp_path, hydra_conf: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real compose and a real SQLite file: the rows land under the hardware id a
    run on this device stores (so the estimator finds them), a second measurement at the
    same batch replaces the first, and the store's LayerTimer predicts a run from them."""
    from hydra import compose

    from sweeper.config.spec import build_spec
    from sweeper.run import layers_mode
    from sweeper.run.machine import machine_id
    from sweeper.run.sizing import LayerTimer

    db = tmp_path / "layers.db"
    cfg = compose("config", overrides=["mode=layers", "batch=4", "device=cpu",
                                       f"storage.url=sqlite:///{db}"])
    spec = build_spec(cfg)
    first = layers_mode.run_layer_catalog(spec, limit=12)
    again = layers_mode.run_layer_catalog(spec, limit=12)
    assert first.status == again.status == "completed"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select hardware_id, batch, precision, train_s, inference_s "
                            "from layer_costs").fetchall()
    assert len(rows) == first.extra["layers"] == 12  # replaced, not added
    assert {r[0] for r in rows} == {machine_id(spec)} == {first.extra["hardware_id"]}
    assert all(r[1] == 4 and r[2] == "fp32" and r[3] > 0 and r[4] > 0 for r in rows)

    from sweeper.store import open_store

    timer = LayerTimer(open_store(f"sqlite:///{db}"))
    run = SimpleNamespace(hardware_id=machine_id(spec), precision="fp32", batch=4,
                          config={"model": {"name": "cnn"},
                                  "dataset": {"name": "synthetic", "image_size": 16,
                                              "channels": 3}})
    train, inference = timer(run, "train"), timer(run, "inference")
    assert train is not None and inference is not None and train > inference > 0
    assert timer(replace_hw(run, "elsewhere"), "train") is None  # no catalog there


def test_a_job_with_mode_layers_dispatches_to_the_catalog(
    tmp_path, hydra_conf: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_job, as Hydra calls it, times the catalog (the first 5 layers here) and stores it;
    no run or sweep is recorded."""
    from hydra import compose

    from sweeper.run import layers_mode
    from sweeper.run.job import run_job

    def first_five(batch: int, device: torch.device, precision: str, limit: object = None
                   ) -> list[LayerCost]:
        return measure_catalog(batch, device, precision, limit=5, min_s=0.001)

    monkeypatch.setattr(layers_mode, "measure_catalog", first_five)
    db = tmp_path / "job.db"
    result = run_job(compose("config", overrides=["mode=layers", "batch=2", "device=cpu",
                                                  f"storage.url=sqlite:///{db}"]))
    assert result.status == "completed" and result.run_id is None
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*), min(batch) from layer_costs").fetchone() == (5, 2)
        assert conn.execute("select count(*) from runs").fetchone() == (0,)


def test_mode_layers_is_refused_under_torchrun_before_any_timing(
    tmp_path, hydra_conf: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rank would time the catalog and replace the others' rows: refused in one
    line, nothing stored."""
    from hydra import compose

    from sweeper.errors import ConfigError
    from sweeper.run.job import run_job

    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    db = tmp_path / "ranks.db"
    with pytest.raises(ConfigError, match="'layers' under torchrun; time the catalog on one"):
        run_job(compose("config", overrides=["mode=layers", "device=cpu",
                                             f"storage.url=sqlite:///{db}"]))
    assert not db.exists()


def replace_hw(run: SimpleNamespace, hardware_id: str) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(run), "hardware_id": hardware_id})


def test_a_store_with_a_catalog_offers_the_layer_time_law_and_it_wins_where_true(
    catalog_works: list,
) -> None:
    """Runs whose joules per sample are proportional to their networks' layer time (with 3%
    noise) while MACs and activations tell them apart badly: the layer-time law is a
    candidate, the estimator chooses it in every leave-one-model-out fold, and its held-out
    error is below 5%; the frontier sampler's fit picks it too."""
    from models import describe_model
    from sweeper.predict.heldout import all_candidates, choose_law, leave_one_model_out
    from sweeper.predict.laws import LAYER_TIME_LAW
    from sweeper.predict.types import Observation
    from sweeper.search.frontier_energy import FrontierEnergy, SizedParams

    law = fit_layer_time(_synthetic_rows(catalog_works, (8, 32), noise=0.0), "train")
    names = ["lenet", "cnn", "mlp", "resnet", "mobilenet", "vgg", "vit", "resnet18",
             "mobilenet_v1", "regnetx_200mf"]
    rng = random.Random(3)
    observations, sized = [], {}
    for name in names:
        shape = (3, 32, 32)
        with torch.device("meta"):
            net = build_model(name, shape, 10)
        info = describe_model(net, shape)
        works = [layer_work(x) for x in describe_layers(net, shape)]
        for batch in (16, 64):
            layer_s = law.per_sample_s(works, batch)
            sized[(name, batch)] = SizedParams(info.macs_per_sample, info.params, batch, "fp32",
                                               1000, layer_s=layer_s)
            for _repeat in range(2):
                observations.append(Observation(
                    run_id=len(observations), hardware_id="h", meter_source="estimate",
                    model=name, dataset="synthetic", batch=batch, precision="fp32",
                    params=info.params, macs_per_sample=info.macs_per_sample,
                    per_sample=70.0 * layer_s * rng.lognormvariate(0.0, 0.03),
                    activations_per_sample=info.activations_per_sample, layer_s=layer_s))
    assert LAYER_TIME_LAW in all_candidates(observations)
    fitted, name = choose_law(observations)
    assert name == LAYER_TIME_LAW
    score = leave_one_model_out(observations)  # the law chosen inside every fold
    assert score is not None and set(score.laws) == {LAYER_TIME_LAW}
    assert score.mape < 0.05
    # Without catalog times the law is not offered.
    assert LAYER_TIME_LAW not in all_candidates([replace(o, layer_s=None) for o in observations])

    energy = FrontierEnergy(lambda params: sized[(params["model"], params["batch"])])
    energy.observe([({"model": n, "batch": b}, 70.0 * s.layer_s * 1000)  # type: ignore[operator]
                    for (n, b), s in sized.items() if n not in ("resnet18", "vgg")])
    assert energy.law == LAYER_TIME_LAW
    truth = 70.0 * sized[("resnet18", 64)].layer_s * 1000  # type: ignore[operator]
    assert energy.predict_j({"model": "resnet18", "batch": 64}) == pytest.approx(truth, rel=0.05)


def test_group_of_tells_grouped_convolutions_apart() -> None:
    assert group_of("conv", 1) == "conv" and group_of("conv", 32) == "conv_grouped"
    assert group_of("norm", 1) == "norm"
    with pytest.raises(ValueError, match="phase"):
        fit_layer_time([], "backward")
    zero = _cost("ReLU(8) 4x4", SimpleNamespace(kind="act", groups=1, macs=0.0, params=0,
                                                elements_in=128.0, elements_out=128.0),
                 8, 0.0, 1e-6)
    with pytest.raises(ValueError, match="positive"):
        fit_layer_time([zero], "train")


def test_estimates_look_runs_up_under_the_id_a_run_stores(
    tmp_path, hydra_conf: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU machine a run's hardware_id includes NVML's driver and power limits, from
    its meters: a configuration sized for mode=estimate, the frontier's priors or
    mode=layers gets that id too (sweeper.run.machine), not one without the meters."""
    from hydra import compose

    from sweeper.config.spec import build_spec
    from sweeper.energy.hardware import describe_host
    from sweeper.run import machine
    from sweeper.run.sizing import size_config
    from sweeper.training.device import describe_accelerator

    described = {"nvml.nvml_driver_version": "580.95", "nvml.gpu:0.name": "NVIDIA H200",
                 "nvml.gpu:0.power_limit_w": "700"}

    class Meters:  # what energy.open_meters returns where NVML measures a GPU
        def describe(self) -> dict[str, str]:
            return described

        def close(self) -> None:
            pass

        def __enter__(self) -> Meters:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    monkeypatch.setattr(machine.energy, "open_meters", lambda *a, **k: Meters())
    machine._machine_id.cache_clear()
    try:
        spec = build_spec(compose("config", overrides=["device=cpu", "model=mlp",
                                                       "dataset=digits"]))
        stored = machine.hardware_of(torch.device("cpu"), described).hardware_id
        without = describe_host(describe_accelerator(torch.device("cpu"))).hardware_id
        assert machine.machine_id(spec) == stored != without
        assert size_config(spec, str(tmp_path)).hardware_id == stored
    finally:
        machine._machine_id.cache_clear()
