"""The layer-wise energy law (issue 24): layers from a meta-device forward, a known per-layer
law recovered for a network never fitted, and its interval's coverage on synthetic noise."""

from __future__ import annotations

import random

import pytest
import torch

from models import build_model, describe_layers, describe_model
from sweeper.predict.layerwise import FEATURES, fit_layerwise, layer_features, macs_feature

NETWORKS = [("vit", (3, 16, 16)), ("mobilenet", (3, 16, 16)), ("vgg", (3, 16, 16)),
            ("cnn", (3, 16, 16)), ("mlp", (3, 16, 16)), ("resnet", (3, 16, 16)),
            ("lenet", (3, 32, 32)), ("resnet18", (3, 32, 32)), ("preactresnet18", (3, 32, 32)),
            ("senet18", (3, 32, 32)), ("mobilenet_v1", (3, 32, 32)),
            ("regnetx_200mf", (3, 32, 32)), ("simpledla", (3, 32, 32)),
            ("googlenet", (3, 32, 32))]

# A known per-layer law (J per sample): per MAC of convolutions and of matmuls, per element
# read or written by compute and by element-wise layers, per parameter, per layer (a kernel
# launch), and per sample.
LAW = {"macs_conv": 2e-9, "macs_grouped": 6e-9, "macs_matmul": 1e-9,
       "moved_compute": 4e-8,
       "moved_elementwise": 1.5e-7, "params": 3e-9, "layers": 2e-5, "per_sample": 1e-3}


@pytest.fixture(scope="module")
def layers() -> dict[str, list]:
    out = {}
    for name, shape in NETWORKS:
        with torch.device("meta"):
            net = build_model(name, shape, 10)
        out[name] = describe_layers(net, shape)
    return out


def _truth(layer_list: list) -> float:
    """The known law applied layer by layer, then summed (not through layer_features)."""
    total = LAW["per_sample"]
    for layer in layer_list:
        total += LAW[macs_feature(layer)] * layer.macs
        moved = layer.elements_in + layer.elements_out
        total += (LAW["moved_compute"] if layer.kind in ("conv", "linear", "attention")
                  else LAW["moved_elementwise"]) * moved
        total += LAW["params"] * layer.params + LAW["layers"]
    return total


def test_layers_add_up_and_tell_networks_of_equal_macs_apart(layers: dict[str, list]) -> None:
    with torch.device("meta"):
        net = build_model("senet18", (3, 32, 32), 10)
    assert sum(x.macs for x in layers["senet18"]) == pytest.approx(
        describe_model(net, (3, 32, 32)).macs_per_sample, rel=1e-9)
    same = ["resnet18", "preactresnet18", "senet18"]
    macs = [sum(x.macs for x in layers[n]) for n in same]
    assert max(macs) / min(macs) < 1.02  # a MACs law gives them one estimate
    features = [layer_features(layers[n]) for n in same]
    assert len({f["layers"] for f in features}) == 3
    assert len({round(f["moved_elementwise"]) for f in features}) == 3


@pytest.mark.parametrize("unseen", ["senet18", "googlenet", "vit", "preactresnet18"])
def test_a_known_per_layer_law_is_recovered_for_an_unseen_network(
    layers: dict[str, list], unseen: str
) -> None:
    rows = [(layer_features(v), _truth(v)) for k, v in layers.items() if k != unseen]
    law = fit_layerwise(rows)
    predicted = law.predict(layer_features(layers[unseen]))
    assert predicted == pytest.approx(_truth(layers[unseen]), rel=0.05)


def test_the_interval_covers_90_percent_of_noisy_measurements(layers: dict[str, list]) -> None:
    """Each network measured with 10% log-normal noise; one held out in turn: its 90%
    prediction interval from the others covers its measurement 85-95% of the time."""
    rng = random.Random(0)
    names = list(layers)
    features = {k: layer_features(v) for k, v in layers.items()}
    truth = {k: _truth(v) for k, v in layers.items()}
    covered = trials = 0
    for _draw in range(40):
        noisy = {k: truth[k] * rng.lognormvariate(0.0, 0.1) for k in names}
        for unseen in names:
            law = fit_layerwise([(features[k], noisy[k]) for k in names if k != unseen])
            low, high = law.interval(features[unseen])
            covered += low <= noisy[unseen] <= high
            trials += 1
    assert 0.85 <= covered / trials <= 0.95, covered / trials


def test_features_are_the_laws_terms() -> None:
    assert set(LAW) == set(FEATURES)


# --- through the estimator's own fit path --------------------------------------------------

# A per-layer law with per-step terms (J per sample at batch b): the work terms per sample,
# the optimizer's pass over the weights, a launch per layer and a fixed cost per step.
STEP_LAW = {"params/batch": 4e-8, "layers/batch": 3e-4, "1/batch": 2e-2, "1": 5e-4}


def _truth_at(layer_list: list, batch: int) -> float:
    work = sum(LAW[macs_feature(x)] * x.macs
               + (LAW["moved_compute"] if x.kind in ("conv", "linear", "attention")
                  else LAW["moved_elementwise"]) * (x.elements_in + x.elements_out)
               for x in layer_list)
    params = sum(x.params for x in layer_list)
    return work + (STEP_LAW["params/batch"] * params + STEP_LAW["layers/batch"] * len(
        layer_list) + STEP_LAW["1/batch"]) / batch + STEP_LAW["1"]


def _observations(layers: dict[str, list], names: list[str]) -> list:
    from sweeper.predict.layerwise import feature_tuple
    from sweeper.predict.types import Observation

    out = []
    for name in names:
        params = sum(x.params for x in layers[name])
        macs = sum(x.macs for x in layers[name])
        for batch in (32, 128):
            out.append(Observation(
                run_id=len(out), hardware_id="hw", meter_source="rapl", model=name,
                dataset="synthetic", batch=batch, precision="fp32", params=params,
                macs_per_sample=macs, per_sample=_truth_at(layers[name], batch),
                layers=feature_tuple(layers[name])))
    return out


def _query(layers: dict[str, list], name: str, batch: int):
    from sweeper.predict.layerwise import feature_tuple
    from sweeper.predict.types import Query

    return Query(sum(x.macs for x in layers[name]), sum(x.params for x in layers[name]), batch,
                 "fp32", layers=feature_tuple(layers[name]))


@pytest.mark.parametrize("unseen", ["senet18", "googlenet"])
def test_the_estimator_recovers_a_per_layer_law_for_an_unseen_network(
    layers: dict[str, list], unseen: str
) -> None:
    from sweeper.predict.estimator import fit_energy

    fit = fit_energy(_observations(layers, [n for n in layers if n != unseen]))
    assert fit.law.startswith("layer-wise")
    assert fit.lomo is not None and fit.lomo.mape < 0.01  # exact law: held out, exact too
    for batch in (16, 64):  # batch sizes never fitted
        p = fit.predict(_query(layers, unseen, batch))
        assert not p.known_model
        assert p.per_sample == pytest.approx(_truth_at(layers[unseen], batch), rel=0.05)


def test_the_estimator_tells_networks_of_equal_macs_apart(layers: dict[str, list]) -> None:
    """resnet18, preactresnet18 and senet18 (MACs within 2%) get estimates that differ as
    their true costs do, where a MACs-and-parameters law gives them one."""
    from sweeper.predict.estimator import fit_energy

    same = ["resnet18", "preactresnet18", "senet18"]
    fit = fit_energy(_observations(layers, [n for n in layers if n not in same]))
    estimates = {n: fit.predict(_query(layers, n, 64)).per_sample for n in same}
    assert len({round(v, 12) for v in estimates.values()}) == 3
    for n in same:
        assert estimates[n] == pytest.approx(_truth_at(layers[n], 64), rel=0.05)


# --- mode=estimate end to end on real tiny runs --------------------------------------------

REAL_MODELS = ("lenet", "cnn", "mlp", "resnet", "mobilenet")
TINY_RUNS = ["dataset=synthetic", "dataset.image_size=32", "dataset.channels=3",
             "dataset.n_samples=160", "epochs=1", "inference.batches=2",
             "inference.min_seconds=0", "energy.idle.seconds=0", "sweeper.progress=false",
             "device=cpu", "sweeper.name=tiny"]


@pytest.mark.slow
def test_mode_estimate_fits_real_runs_with_their_layers(tmp_path, hydra_conf: None) -> None:
    """Five networks really trained (tiny) into a SQLite store; `mode=estimate` of the
    study's networks (CIFAR-10 not on disk) fits them with every run's layers, offers the
    layer-wise law, scores it by model, says the networks were never run, and gives
    resnet18, preactresnet18 and senet18 different estimates where that law is chosen."""
    from hydra import compose

    from sweeper.config.spec import build_spec
    from sweeper.predict.heldout import all_candidates
    from sweeper.predict.observations import load_observations
    from sweeper.run.estimate_mode import estimate_config, score_line
    from sweeper.run.sizing import run_layers
    from sweeper.store import open_store
    from tests.conftest import run_cli

    db = tmp_path / "tiny.db"
    result = run_cli(["-m", *TINY_RUNS, f"model={','.join(REAL_MODELS)}", "batch=16,64",
                      f"storage.url=sqlite:///{db}", f"hydra.sweep.dir={tmp_path / 'mr'}"],
                     tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    observations = load_observations(open_store(f"sqlite:///{db}"), layers=run_layers)
    assert len(observations) == 10 and all(o.layers for o in observations)
    assert any(name.startswith("layer-wise") for name in all_candidates(observations))

    estimates = {}
    for model in ("resnet18", "preactresnet18", "senet18"):
        cfg = compose("config", overrides=[
            "+experiment=study", "mode=estimate", f"model={model}", "batch=64",
            "device=cpu", "estimate.sweep=tiny", f"storage.url=sqlite:///{db}",
            f"dataset.root={tmp_path / 'no-cifar'}"])
        estimates[model] = estimate_config(cfg, build_spec(cfg))
    train = estimates["senet18"].predictions["train"]
    assert not train.known_model and train.n_models == 5
    assert train.lomo_mape is not None and train.coverage is not None
    assert train.low is not None and train.low <= train.per_sample <= train.high  # type: ignore[operator]
    assert "held-out MAPE" in score_line("train", train)
    # Inference is estimated at the batch it runs at: training at 64 and inferring at 16
    # gives the training estimate of batch 64 and the inference estimate of batch 16.
    def predictions(*overrides: str) -> dict:
        cfg = compose("config", overrides=[
            "+experiment=study", "mode=estimate", "model=senet18", "device=cpu",
            "estimate.sweep=tiny", f"storage.url=sqlite:///{db}",
            f"dataset.root={tmp_path / 'no-cifar'}", *overrides])
        return estimate_config(cfg, build_spec(cfg)).predictions

    mixed = predictions("batch=64", "inference.batch=16")
    at16 = predictions("batch=16", "inference.batch=16")
    assert mixed["train"].per_sample == pytest.approx(train.per_sample, rel=1e-12)
    assert mixed["inference"].per_sample == pytest.approx(at16["inference"].per_sample,
                                                          rel=1e-12)
    per_sample = {m: e.predictions["train"].per_sample for m, e in estimates.items()}
    if train.law.startswith("layer-wise"):
        assert len({round(v, 15) for v in per_sample.values()}) == 3
    # The report's fits (its guideline lines) are mode=estimate's: the same laws offered.
    from sweeper.report import fit_runs
    from sweeper.report.data import load_runs

    store = open_store(f"sqlite:///{db}")
    report_fit = next(f for f in fit_runs(load_runs(store), store=store) if f.target == "train")
    assert report_fit.law == train.law and report_fit.lomo is not None
    assert report_fit.lomo.mape == pytest.approx(train.lomo_mape)


def test_the_frontier_sampler_estimates_untried_networks_with_the_layer_wise_law(
    layers: dict[str, list]
) -> None:
    """Measured trials of ten networks follow a per-layer law; the frontier's energy
    estimate of the three networks of equal MACs it never tried comes from the layer-wise
    law (it predicts held-out networks clearly better than the log-linear fit) and tells
    them apart."""
    from sweeper.predict.layerwise import feature_tuple
    from sweeper.search.frontier_energy import FrontierEnergy, SizedParams

    def describe(params: dict) -> SizedParams:
        net = layers[params["model"]]
        return SizedParams(sum(x.macs for x in net), sum(x.params for x in net), 32, "fp32",
                           1000, layers=feature_tuple(net))

    same = ["resnet18", "preactresnet18", "senet18"]
    energy = FrontierEnergy(describe)
    energy.observe([({"model": n}, _truth_at(layers[n], 32) * 1000)
                    for n in layers if n not in same])
    assert energy.law.startswith("layer-wise")
    estimates = [energy.predict_j({"model": n}) for n in same]
    assert len({round(e, 9) for e in estimates}) == 3
    for name, estimate in zip(same, estimates, strict=True):
        assert estimate == pytest.approx(_truth_at(layers[name], 32) * 1000, rel=0.05)
