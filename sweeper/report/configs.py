"""Distinct configurations and the study's metrics, from the runs frame.

Runs that differ only in settings that do not change the computation (learning rate, seed,
repeat, search trial) do the same work: for energy they are one configuration measured
several times, so they are averaged into one row before anything is correlated or counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Settings that change what is computed (and so the energy); everything else is averaged.
COMPUTE_KEYS = ("model", "dataset", "batch", "precision", "epochs", "optimizer", "device",
                "macs_per_sample", "params", "hardware_id", "meter_source")
# Settings that do not: runs differing only in these are one configuration.
NON_COMPUTE_KEYS = ("lr", "seed", "repeat", "trial_number")
MACHINE_KEYS = ("hardware_id", "meter_source")
ESTIMATED_NOTE = " [estimated energy]"


def completed(frame: pd.DataFrame) -> pd.DataFrame:
    """Completed runs with a training energy figure."""
    return frame[(frame["status"] == "completed") & frame["energy_train_j"].notna()]


def learnt(frame: pd.DataFrame) -> pd.DataFrame:
    """Completed runs not at chance accuracy: the only runs a mean may include (a run that
    diverged to chance did not do the work its configuration stands for)."""
    done = completed(frame)
    return done[~done["at_chance"].fillna(False).astype(bool)]


def chance_note(frame: pd.DataFrame) -> str:
    """'; 2 completed run(s) at chance accuracy left out (ids 5, 9)', or ''."""
    done = completed(frame)
    ids = done.loc[done["at_chance"].fillna(False).astype(bool), "id"].astype(int).tolist()
    if not ids:
        return ""
    listed = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10
                                              else "")
    return f"; {len(ids)} completed run(s) at chance accuracy left out of every mean (ids {listed})"


@dataclass(frozen=True)
class Metric:
    column: str
    label: str


# The study's metrics, in heatmap order.
METRICS = (
    Metric("energy_per_train_sample_j", "E_tr / sample"),
    Metric("energy_per_inference_sample_j", "E_in / sample"),
    Metric("macs_per_sample", "MACs"),
    Metric("params", "parameters"),
    Metric("macs_per_param", "MACs / param"),
    Metric("train_duration_s", "train time"),
    Metric("test_accuracy", "test accuracy"),
    Metric("train_samples_per_s", "throughput"),
    Metric("train_samples_per_j", "samples / J"),
    Metric("macs_per_j", "MACs / J"),
)


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return numerator / denominator.where(denominator > 0)


def with_efficiency(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds throughput (training samples per second), samples per joule of training energy
    and forward MACs per joule of training energy (MACs per sample x samples / E_tr)."""
    samples = runs["train_samples"]
    return runs.assign(
        train_samples_per_s=_ratio(samples, runs["train_duration_s"]),
        train_samples_per_j=_ratio(samples, runs["energy_train_j"]),
        macs_per_j=_ratio(runs["macs_per_sample"] * samples, runs["energy_train_j"]),
    )


def configurations(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct configuration of the completed runs not at chance: metrics
    averaged over runs that differ only in NON_COMPUTE_KEYS, with `n_runs` and `estimated`
    (any run estimated)."""
    done = with_efficiency(learnt(runs))
    columns = [m.column for m in METRICS if m.column not in COMPUTE_KEYS]
    extra = ["energy_train_j", "energy_inference_j"]
    if done.empty:
        return pd.DataFrame(columns=[*COMPUTE_KEYS, *columns, *extra, "n_runs", "estimated"])
    grouped = done.groupby(list(COMPUTE_KEYS), dropna=False)
    frame = grouped[[*columns, *extra]].mean()
    frame["n_runs"] = grouped.size()
    frame["estimated"] = grouped["estimated"].any()
    return frame.reset_index()


@dataclass(frozen=True)
class CorrelationMatrix:
    """Pearson and Spearman correlations between METRICS over one machine's configurations."""

    hardware_id: str
    meter_source: str
    labels: list[str]
    pearson: np.ndarray
    spearman: np.ndarray
    pairs_n: np.ndarray  # configurations with both values, per cell
    n_configs: int
    n_runs: int
    estimated: bool
    left_out: list[str]  # metrics without two distinct values here (no correlation)

    def strong(self, threshold: float = 0.7) -> list[tuple[str, str, float, float, int]]:
        """Pairs with |Pearson| or |Spearman| >= threshold: (a, b, pearson, spearman, n)."""
        out = []
        for i in range(len(self.labels)):
            for j in range(i + 1, len(self.labels)):
                p, s = self.pearson[i, j], self.spearman[i, j]
                if abs(p) >= threshold or abs(s) >= threshold:
                    out.append((self.labels[i], self.labels[j], float(p), float(s),
                                int(self.pairs_n[i, j])))
        return out


def correlation_matrices(runs: pd.DataFrame, min_configs: int = 3) -> list[CorrelationMatrix]:
    """One matrix per machine and meter (energy is not comparable across them), over its
    distinct configurations. A metric that is missing or constant on a machine has no
    correlation: it is left out of that machine's matrix and named in `left_out`."""
    configs = configurations(runs)
    out = []
    for (hardware, meter), group in configs.groupby(list(MACHINE_KEYS), dropna=False):
        if len(group) < min_configs:
            continue
        values = group[[m.column for m in METRICS]].astype(float)
        varies = values.nunique() >= 2
        labels = [m.label for m, keep in zip(METRICS, varies, strict=True) if keep]
        left_out = [m.label for m, keep in zip(METRICS, varies, strict=True) if not keep]
        values = values.loc[:, varies.to_numpy()]
        present = values.notna().astype(int)
        pearson = values.corr(method="pearson", min_periods=min_configs)
        spearman = values.corr(method="spearman", min_periods=min_configs)
        out.append(CorrelationMatrix(
            str(hardware), str(meter), labels, pearson.to_numpy(), spearman.to_numpy(),
            (present.T @ present).to_numpy(), len(group), int(group["n_runs"].sum()),
            bool(group["estimated"].any()), left_out,
        ))
    return out


@dataclass(frozen=True)
class BatchTable:
    """A model x batch-size table of one metric. Rows split by every swept setting that
    varies (lr included), so a cell only averages repeats and seeds of one configuration;
    runs at chance accuracy are never averaged with the others: a cell shows the mean of
    its `counts` runs that learnt, `chance` counts those left out (and when every run of a
    cell is at chance, their mean is shown, marked)."""

    title: str
    row_names: list[str]
    batches: list[int]
    values: list[list[float]]
    counts: list[list[int]]
    chance: list[list[int]]
    fmt: str
    estimated: list[bool]  # per row: any of its runs has estimated energy


TABLE_METRICS = (("energy_train_j", "E_tr (J)", ".4g"), ("energy_inference_j", "E_in (J)", ".4g"),
                 ("test_accuracy", "test accuracy", ".3f"))
# Settings a row is split by when they vary (the model always): every swept hyperparameter.
ROW_KEYS = ("precision", "lr", "optimizer", "dataset", "epochs", "hardware_id", "meter_source")


def averaged_over(runs: pd.DataFrame, keys: list[str]) -> str:
    """What a cell averages over: 'each cell: one run', or 'mean over 2 seeds, 3 repeats'."""
    sizes = runs.groupby(keys, dropna=False).size()
    if (sizes <= 1).all():
        return "each cell: one run"
    varying = [f"{runs[c].nunique(dropna=False)} {c}s" for c in ("seed", "repeat", "trial_number")
               if c in runs and runs[c].nunique(dropna=False) > 1]
    return "each cell: mean of its runs over " + (", ".join(varying) or "identical settings")


def batch_tables(runs: pd.DataFrame) -> list[BatchTable]:
    """Per-model x batch-size tables of E_tr, E_in and test accuracy, one row per model and
    value of every varying swept setting."""
    done = completed(runs)
    if done.empty:
        return []
    splits = [k for k in ROW_KEYS if done[k].nunique(dropna=False) > 1]
    done = done.assign(
        row=done[["model", *splits]].apply(
            lambda r: " ".join([str(r["model"]), *(
                "unknown" if pd.isna(r[k]) else f"lr {r[k]:g}" if k == "lr" else str(r[k])
                for k in splits)]), axis=1),
        chance=done["at_chance"].fillna(False).astype(bool))
    rows = sorted(done["row"].unique())
    estimated = done.groupby("row")["estimated"].any().reindex(rows).astype(bool).tolist()
    batches = sorted(int(b) for b in done["batch"].unique())
    cells = done.groupby(["row", "batch"])
    note = averaged_over(done, ["row", "batch"])
    out = []
    for column, label, fmt in TABLE_METRICS:
        values, counts, chance = [], [], []
        for row in rows:
            values.append([]), counts.append([]), chance.append([])
            for batch in batches:
                cell = cells.get_group((row, batch)) if (row, batch) in cells.groups else None
                if cell is None:
                    values[-1].append(np.nan), counts[-1].append(0), chance[-1].append(0)
                    continue
                good = cell[~cell["chance"]]
                used = good if not good.empty else cell
                values[-1].append(float(used[column].mean()))
                counts[-1].append(len(good))
                chance[-1].append(int(cell["chance"].sum()))
        title = f"{label} by model and batch size (rows: model" + (
            f" {' '.join(splits)}" if splits else "") + f"; {note})"
        out.append(BatchTable(title, rows, batches, values, counts, chance, fmt, estimated))
    return out
