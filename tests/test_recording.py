"""A signal landing in the middle of a write: held until the write is done, then delivered,
so what a run counts and what it stores never part ways."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from sweeper.energy import PhaseEnergy
from sweeper.run.recording import Recorder, RunInterrupted, interrupts_held, sigterm_as_interrupt
from sweeper.store import Store
from sweeper.store import runs as store_runs
from tests.conftest import run_row


@pytest.fixture(autouse=True)
def _sigint_raises_keyboard_interrupt() -> Iterator[None]:
    """Python installs its KeyboardInterrupt handler only where SIGINT was not ignored when
    it started; a test run in the background of a non-interactive shell (nohup, `&`)
    inherits SIGINT ignored. These tests are about a user's Ctrl-C, so they set it up."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = Store(sqlite_url)
    yield s
    s.dispose()


def test_held_signals_arrive_after_the_block_through_the_previous_handler() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("the rest of the block ran")
    assert done == ["the rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored

    with sigterm_as_interrupt(), pytest.raises(RunInterrupted, match="SIGTERM"), interrupts_held():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("again")
    assert done[-1] == "again"


def test_no_signal_means_no_interrupt() -> None:
    with interrupts_held():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_a_phase_write_keeps_memory_and_database_in_step(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_id = store_runs.ensure_sweep(store, "grid: cut")
    run_id = store_runs.insert_run(store, run_row(sweep_id, status="running"))
    recorder = Recorder(store, run_id, keep_samples=False)
    write_phase = store_runs.add_phase.fn

    def ctrl_c_mid_write(*args: object, **kwargs: object) -> int:
        os.kill(os.getpid(), signal.SIGINT)  # lands while the row is being written
        return write_phase(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_runs.add_phase, "fn", ctrl_c_mid_write)
    epoch = PhaseEnergy("train_epoch", 0, 0.0, 1.0, 12.5, {"cpu": 12.5}, {"cpu": "estimate"})
    with pytest.raises(KeyboardInterrupt):
        recorder.phase(epoch, steps=10)
    stored = store_runs.run_phases(store, run_id)
    assert [(p.kind, p.energy_j) for p in stored] == [("train_epoch", 12.5)]
    assert recorder.energy_of("train_epoch") == 12.5  # counted once, like it is stored


def test_a_phase_is_written_once_final_and_a_flagged_one_keeps_its_figure_out(
    store: Store,
) -> None:
    from sweeper.run.recording import uncertainty_columns

    sweep_id = store_runs.ensure_sweep(store, "grid: refresh")
    run_id = store_runs.insert_run(store, run_row(sweep_id, status="running"))
    recorder = Recorder(store, run_id, keep_samples=False)
    # From the boundary reads; the sampler fills in the interpolated figure later, in place.
    epoch = PhaseEnergy("train_epoch", 0, 0.0, 1.0, 124.0, {"gpu:0": 124.0}, {"gpu:0": "nvml"},
                        source="nvml", energy_uncertainty_j=12.4, final=False)
    recorder.phase(epoch, steps=5)
    assert store_runs.run_phases(store, run_id) == []  # waits for the refresh after its end
    assert recorder.energy_of("train_epoch") == 124.0  # but counts at once
    epoch.energy_j, epoch.by_domain = 131.0, {"gpu:0": 131.0}
    epoch.energy_uncertainty_j, epoch.uncertainty_by_domain = 0.6, {"gpu:0": 0.6}
    epoch.final = True
    impossible = PhaseEnergy(
        "eval", 0, 1.0, 0.007, 12.0, {"gpu:0": 12.0}, {"gpu:0": "nvml"}, source="nvml",
        energy_uncertainty_j=0.2,
        flag="mean power 1714 W (+- 29 W) of gpu:0 over 7 ms exceeds the 875 W ...",
    )
    recorder.phase(impossible, samples=10)  # writes the first, now final, then this one

    stored = store_runs.run_phases(store, run_id)
    assert [(p.kind, p.energy_j, p.energy_uncertainty_j, p.steps) for p in stored] == [
        ("train_epoch", 131.0, 0.6, 5), ("eval", None, 0.2, None),
    ]
    assert stored[0].energy_flag is None and stored[1].mean_power_w is None
    assert (stored[1].energy_flag or "").startswith("mean power 1714 W")
    with store.session() as session:
        from sqlalchemy import select

        from sweeper.store import PhaseDomainEnergy

        domains = session.execute(
            select(PhaseDomainEnergy.phase_id, PhaseDomainEnergy.energy_uncertainty_j)
        ).all()
    assert domains == [(stored[0].id, 0.6)]  # none for the flagged phase

    columns = uncertainty_columns(recorder.phases, None)
    assert columns["energy_train_uncertainty_j"] == 0.6
    assert columns["energy_eval_uncertainty_j"] == 0.2
    assert columns["energy_total_uncertainty_j"] == pytest.approx(0.8)
    assert "eval[0]: mean power 1714 W" in columns["flagged_phases"]
