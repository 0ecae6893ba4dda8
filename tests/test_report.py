"""The report: every figure written and non-empty, the page links them, estimates are marked,
exports hold the rows, and the guidelines carry numbers from the data."""

from __future__ import annotations

import html
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from sweeper.pareto import nondominated
from sweeper.report import build_report
from sweeper.report.__main__ import main as report_main
from sweeper.report.effects import paired_change
from sweeper.store import Phase, PhaseDomainEnergy, PowerSample, Run, Sweep, open_store
from tests.conftest import ROOT, TINY, cli_env

MODELS = {"cnn": (2.0e4, 9.0e3, 0.90), "resnet": (6.0e5, 7.0e4, 0.95), "vit": (2.5e5, 6.0e4, 0.92)}
EXPECTED_FIGURES = (
    "accuracy_vs_energy.png", "correlation_heatmaps.png", "energy_vs_batch.png",
    "energy_vs_macs.png",
    "forecast_error_vs_window.png", "power_trace.png", "energy_split.png", "estimator_fit.png",
)


def populate(url: str) -> dict[str, int]:
    """A small synthetic study: 3 models x 3 batches x 2 precisions on two machines (one
    measured with RAPL, one estimated), plus a failed run and a forecast-only run."""
    store = open_store(url)
    counts = {"runs": 0, "phases": 0}
    with store.session() as session:
        sweep = Sweep(name="paper: synthetic")
        session.add(sweep)
        session.flush()
        for hw, meter, scale in (("hw-rapl", "rapl", 1.0), ("hw-vm", "estimate", 1.7)):
            for model, (macs, params, acc) in MODELS.items():
                for batch in (32, 64, 128):
                    for precision in ("fp32", "bf16"):
                        samples = 1000
                        per_sample = scale * 2e-9 * macs**0.9 * batch**-0.25 * (
                            0.8 if precision == "bf16" else 1.0)
                        e_tr = per_sample * samples
                        e_in_per = per_sample / 3
                        run = Run(
                            sweep_id=sweep.id, config={"repeat": 0}, config_hash=f"{hw}{model}"
                            f"{batch}{precision}", model=model, dataset="digits", batch=batch,
                            lr=1e-3, optimizer="adam", epochs=2, precision=precision,
                            device="cpu", status="completed", params=int(params),
                            macs_per_sample=macs, hardware_id=hw, host=hw, cpu_model="cpu",
                            meter_source=meter, energy_train_j=e_tr, energy_eval_j=e_tr / 10,
                            energy_inference_j=e_in_per * 640, energy_total_j=e_tr * 1.2,
                            energy_per_train_sample_j=per_sample,
                            energy_per_inference_sample_j=e_in_per, train_samples=samples,
                            inference_samples=640, val_accuracy=acc - batch / 5000,
                            test_accuracy=acc - batch / 4000, co2_g=e_tr / 3.6e6 * 475,
                            carbon_intensity_g_per_kwh=475.0, pue=1.0, duration_s=3.0,
                            forecast_window=0.05 if batch != 64 else 0.2, forecast_steps=3,
                            forecast_energy_train_j=e_tr * (1.03 if batch == 32 else 0.99),
                            forecast_error=0.03 if batch == 32 else -0.01,
                        )
                        t = 0.0
                        for kind, energy_j in (("train_epoch", e_tr / 2), ("train_epoch", e_tr / 2),
                                               ("eval", e_tr / 10), ("inference", e_in_per * 640)):
                            phase = Phase(kind=kind, index=0, start_s=t, duration_s=1.0,
                                          energy_j=energy_j, meter_source=meter,
                                          mean_power_w=energy_j)
                            phase.domains = [PhaseDomainEnergy(domain="cpu", source=meter,
                                                               energy_j=energy_j)]
                            run.phases.append(phase)
                            t += 1.0
                            counts["phases"] += 1
                        session.add(run)
                        counts["runs"] += 1
        session.add(Run(sweep_id=sweep.id, config={}, config_hash="f", model="vgg",
                        dataset="digits", batch=16, lr=1e-3, optimizer="adam", epochs=1,
                        precision="fp32", device="cpu", status="failed", error_type="RuntimeError",
                        error_message="shape <mismatch> & co", meter_source="estimate"))
        session.add(Run(sweep_id=sweep.id, config={}, config_hash="g", model="resnet",
                        dataset="digits", batch=32, lr=1e-3, optimizer="adam", epochs=20,
                        precision="fp32", device="cpu", status="forecast", meter_source="rapl",
                        forecast_window=0.05, forecast_steps=40, forecast_energy_train_j=900.0,
                        forecast_duration_train_s=60.0, energy_total_j=50.0,
                        carbon_intensity_g_per_kwh=475.0, pue=1.0))
        counts["runs"] += 2
        session.flush()
        last = session.scalars(
            Run.__table__.select().with_only_columns(Run.__table__.c.id)
            .where(Run.__table__.c.status == "completed").order_by(Run.__table__.c.id.desc())
        ).first()
        session.add_all([
            PowerSample(run_id=last, t_s=0.1 * i, domain=d, source="estimate",
                        power_w=20 + 5 * math.sin(i / 5) + (3 if d == "memory" else 0),
                        energy_j=2.0 * i)
            for i in range(40) for d in ("cpu", "memory")
        ])
    counts["trace_run"] = int(last)
    return counts


@pytest.mark.slow
def test_report_on_generated_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    counts = populate(url)
    out = tmp_path / "report"
    console = Console(file=open(tmp_path / "summary.txt", "w"), width=160)  # noqa: SIM115
    report = build_report(open_store(url), out, console=console)
    console.file.close()

    for name in EXPECTED_FIGURES:
        path = out / name
        assert path.is_file() and path.stat().st_size > 5000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.html.read_text()
    for name in EXPECTED_FIGURES:
        assert f"src='{name}'" in page
    # Estimates are marked in tables; measured rows are not.
    assert "ESTIMATE" in page and "measured" in page and "class='banner'" in page
    assert page.count('<tr class="estimated">') >= 18
    # HTML is escaped.
    assert "shape &lt;mismatch&gt; &amp; co" in page
    # The page is rendered from the packaged Jinja2 template; the wide all-runs table sits in
    # a scroll container, so the page keeps its width.
    assert (ROOT / "sweeper" / "report" / "templates" / "report.html.j2").is_file()
    assert page.startswith("<!doctype html>") and "{{" not in page and "{%" not in page
    assert '<div class="scroll tall" id="all-runs"><table>' in page
    assert ".scroll { max-width: 100%; overflow-x: auto; }" in page
    assert "src='correlation_heatmaps.png'" in page
    # The forecast-only run is listed with its prediction.
    assert "Forecast-only runs" in page and "900.0" in page

    runs_csv = pd.read_csv(out / "runs.csv")
    assert len(runs_csv) == counts["runs"]
    assert set(runs_csv["estimated"]) == {True, False}
    assert len(pd.read_csv(out / "phases.csv")) == counts["phases"]
    assert len(pd.read_parquet(out / "runs.parquet")) == counts["runs"]
    assert (out / "phase_domains.csv").stat().st_size > 0
    assert report.trace_run_id == counts["trace_run"]

    # Estimator fits are separate per machine, and scored out of sample.
    assert {(f.target, f.hardware_id) for f in report.fits} == {
        (t, h) for t in ("train", "inference") for h in ("hw-rapl", "hw-vm")}
    assert all(f.loo is not None and f.loo.mape < 0.05 for f in report.fits)

    text = " ".join(report.guidelines)
    assert re.search(r"batch 128 used \d+% less training energy than batch 32 \(95% CI "
                     r"-\d+% to -\d+%\) for [\d.]+ points less test accuracy", text)
    assert "bf16 used 20% less training energy than fp32" in text
    assert "[estimated energy]" in text
    summary = (tmp_path / "summary.txt").read_text()
    assert "Energy-accuracy front" in summary and "[estimated energy]" in summary


@pytest.mark.slow
def test_report_filters_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    counts = populate(url)
    out = tmp_path / "r"
    assert report_main(["--storage", url, "--out", str(out), "--quiet"]) == 0
    assert (out / "runs.parquet").is_file()
    code = report_main(["--storage", url, "--out", str(out), "--sweep", "paper: synthetic",
                        "--run", "1", "--no-parquet", "--quiet"])
    assert code == 0
    assert not list(out.glob("*.parquet"))  # the earlier report's Parquet files are gone
    assert len(pd.read_csv(out / "runs.csv")) == counts["runs"]
    page = (out / "index.html").read_bytes()
    capsys.readouterr()

    # An unknown sweep is refused in one line that names the sweeps; nothing is rewritten.
    assert report_main(["--storage", url, "--out", str(out), "--sweep", "nothing",
                        "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nothing'" in err and "'paper: synthetic'" in err
    assert (out / "index.html").read_bytes() == page
    assert len(pd.read_csv(out / "runs.csv")) == counts["runs"]

    assert report_main(["--storage", url, "--list"]) == 0
    assert capsys.readouterr().out == f"paper: synthetic\t{counts['runs']} run(s)\n"
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    open_store(empty)
    assert report_main(["--storage", empty, "--list"]) == 0
    assert "no sweeps in" in capsys.readouterr().out

    missing = f"sqlite:///{tmp_path / 'absent.db'}"
    assert report_main(["--storage", missing, "--out", str(out)]) == 2
    assert "no database" in capsys.readouterr().err
    assert report_main(["--storage", url, "--out", str(out), "--run", "999", "--quiet"]) == 2


@pytest.mark.slow
def test_report_uses_net_energy_and_leaves_out_busy_runs(tmp_path: Path) -> None:
    """--energy net puts the net-of-idle figures in every analysis (gross kept in the
    export) and --exclude-busy drops runs measured on a busy machine; the page says both."""
    import sqlite3

    db = tmp_path / "runs.db"
    url = f"sqlite:///{db}"
    counts = populate(url)
    with sqlite3.connect(db) as conn:
        conn.execute("update runs set energy_train_net_j = energy_train_j / 2, "
                     "idle_power_w = 10 where meter_source = 'rapl'")
        conn.execute("update runs set energy_train_net_j = energy_train_j, idle_power_w = 0 "
                     "where meter_source = 'estimate'")
        conn.execute("update runs set machine_busy = 1 where id in (1, 2)")
        gross = dict(conn.execute("select id, energy_train_j from runs where id = 3"))
    out = tmp_path / "r"
    code = report_main(["--storage", url, "--out", str(out), "--energy", "net",
                        "--exclude-busy", "--no-parquet", "--quiet"])
    assert code == 0
    runs = pd.read_csv(out / "runs.csv").set_index("id")
    assert len(runs) == counts["runs"] - 2 and not {1, 2} & set(runs.index)
    # The exports keep the store's columns, one name per quantity (issue 20, item 6).
    assert runs.loc[3, "energy_train_j"] == pytest.approx(gross[3])  # run 3 is rapl
    assert runs.loc[3, "energy_train_net_j"] == pytest.approx(gross[3] / 2)
    assert not [c for c in runs.columns if c.endswith("_gross_j") or c == "accuracy"]
    # The analyses use the net figure.
    report = build_report(open_store(url), tmp_path / "again", energy="net", parquet=False)
    assert report.front is not None
    assert report.front.set_index("id").loc[3, "energy_train_j"] == pytest.approx(gross[3] / 2)
    page = (out / "index.html").read_text()
    assert "net of idle" in page and "Left out 2 run(s) measured on a busy machine" in page
    assert "Meter 'rapl': CPU package and DRAM energy measured by RAPL" in html.unescape(page)


def test_pareto_and_matched_pairs() -> None:
    mask = nondominated([0.5, 0.7, 0.9, 0.6, 0.9], [1, 2, 3, 2.5, 4])
    assert mask.tolist() == [True, True, True, False, False]
    frame = pd.DataFrame({
        "status": "completed", "model": ["a", "a", "b", "b", "c"], "dataset": "d", "lr": 0.1,
        "optimizer": "adam", "epochs": 1, "precision": "fp32", "hardware_id": "h",
        "meter_source": "rapl", "batch": [32, 128, 32, 128, 128],
        "energy_train_j": [100.0, 50.0, 200.0, 150.0, 1.0],
        "test_accuracy": [0.9, 0.88, 0.8, 0.8, 0.3], "estimated": False, "at_chance": False,
    })
    change = paired_change(frame, "batch", 32, 128)
    assert change is not None and change.n == 2  # model c has no batch-32 partner
    assert change.energy_change == pytest.approx((0.5 * 0.75) ** 0.5 - 1)  # geometric mean
    assert change.accuracy_points == pytest.approx(-1.0)


@pytest.mark.slow
def test_report_on_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'real.db'}"
    subprocess.run([sys.executable, "-m", "sweeper", *TINY, f"storage.url={url}",
                    "meter=estimate"], cwd=tmp_path, env=cli_env(), check=True,
                   capture_output=True, timeout=300)
    out = tmp_path / "report"
    assert report_main(["--storage", url, "--out", str(out)]) == 0
    assert "estimate" in capsys.readouterr().out
    assert all((out / name).stat().st_size > 0 for name in EXPECTED_FIGURES)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 1 and bool(runs["estimated"].iloc[0])
    assert runs["energy_train_uncertainty_j"].iloc[0] > 0  # the stored uncertainty is shown
    page = (out / "index.html").read_text()
    assert "<th>± E_tr</th>" in page or "± E_tr" in page


def test_report_does_not_import_torch() -> None:
    code = "import sys, sweeper.report.__main__, sweeper.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_paper_preset_composes_the_study_grid() -> None:
    import itertools

    from hydra import compose, initialize_config_dir

    from sweeper.config.spec import build_spec

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=paper"], return_hydra_config=True)
        params = dict(cfg.hydra.sweeper.params)
        assert params == {"model": "cnn,vgg,resnet,mobilenet", "batch": "32,64,128,256",
                          "lr": "0.01,0.001", "precision": "fp32,bf16"}
        assert (cfg.optimizer, cfg.epochs, cfg.sweeper.name) == ("sgd", 5, "paper")
        assert cfg.forecast.window == 0.2
        grid = [v.split(",") for v in params.values()]
        # Every value of every factor appears in one of these jobs (the full grid is 64).
        jobs = zip(*(itertools.islice(itertools.cycle(values), 4) for values in grid),
                   strict=True)
        for model, batch, lr, precision in jobs:
            job = compose("config", overrides=[
                "+experiment=paper", f"model={model}", f"batch={batch}", f"lr={lr}",
                f"precision={precision}"])
            spec = build_spec(job)
            assert (spec.model, spec.batch, spec.lr, spec.dataset) == (
                model, int(batch), float(lr), "digits")


def test_report_refuses_an_out_that_is_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    populate(url)
    target = tmp_path / "FILE"
    target.touch()
    assert report_main(["--storage", url, "--out", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an existing file, not a folder" in err
    assert target.is_file() and target.stat().st_size == 0
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("runs.db")] == ["FILE"]


@pytest.mark.slow
def test_report_refuses_a_run_of_another_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    counts = populate(url)
    store = open_store(url)
    with store.session() as session:
        other = Sweep(name="other")
        session.add(other)
        session.flush()
        stray = Run(sweep_id=other.id, config={}, config_hash="x", model="mlp",
                    dataset="digits", batch=8, lr=1e-3, optimizer="adam", epochs=1,
                    precision="fp32", device="cpu", status="completed", meter_source="estimate",
                    energy_train_j=1.0, val_accuracy=0.5)
        session.add(stray)
        session.flush()
        stray_id = stray.id
    out = tmp_path / "r"
    code = report_main(["--storage", url, "--out", str(out), "--sweep", "paper: synthetic",
                        "--run", str(stray_id), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"run {stray_id} belongs to sweep 'other', not to --sweep 'paper: synthetic'" in err
    assert not out.exists()
    # The run's own sweep, or no filter, takes it (its trace is drawn).
    assert report_main(["--storage", url, "--out", str(out), "--run", str(stray_id),
                        "--quiet", "--no-parquet"]) == 0
    assert len(pd.read_csv(out / "runs.csv")) == counts["runs"] + 1
