"""Which energy the report's analyses use (gross or net of idle), and which runs they trust.

Gross is everything the meters read; net subtracts the idle baseline's power over the same
time (sweeper's addition: the study reports gross energy). With `net`, the energy columns
hold the net figures in the analyses (the exports keep the stored columns), so every figure,
correlation, fit and guideline uses them; a run without a net figure (no idle baseline)
drops out of the energy analyses. Runs measured on a busy machine can be left out.
"""

from __future__ import annotations

import pandas as pd

BASES = ("gross", "net")
NET_COLUMNS = {
    "energy_train_j": "energy_train_net_j",
    "energy_inference_j": "energy_inference_net_j",
    "energy_total_j": "energy_total_net_j",
    "energy_per_train_sample_j": "energy_per_train_sample_net_j",
    "energy_per_inference_sample_j": "energy_per_inference_sample_net_j",
}


def apply_basis(runs: pd.DataFrame, basis: str) -> tuple[pd.DataFrame, str]:
    """(runs with the chosen energy in the energy columns, a sentence saying which)."""
    if basis not in BASES:
        raise ValueError(f"energy basis {basis!r}: use one of {', '.join(BASES)}")
    if basis == "gross":
        return runs.assign(energy_basis="gross"), (
            "Energy shown is gross: everything the meters read, idle power included (the "
            "study's quantity; CO2 is always from gross energy).")
    out = runs.assign(energy_basis="net")
    for gross, net in NET_COLUMNS.items():
        out[f"{gross.removesuffix('_j')}_gross_j"] = out[gross]
        out[gross] = pd.to_numeric(out[net], errors="coerce").astype(float)
    missing = int(out["energy_train_j"].isna().sum() - runs["energy_train_j"].isna().sum())
    note = ("Energy shown is net of idle: gross - idle power x duration (sweeper's "
            "addition, not the study's quantity, which is gross; estimate-meter domains "
            "have no idle, so their net is their gross; "
            "CO2 stays gross).")
    if missing > 0:
        note += f" {missing} run(s) have no idle baseline and drop out of the energy analyses."
    return out, note


def drop_busy(runs: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Runs not measured on a busy machine, and a sentence naming those left out."""
    busy = runs["machine_busy"].fillna(False).astype(bool)
    if not busy.any():
        return runs, None
    ids = ", ".join(str(i) for i in runs.loc[busy, "id"])
    return runs[~busy].reset_index(drop=True), (
        f"Left out {int(busy.sum())} run(s) measured on a busy machine: {ids}."
    )
