"""Runs and per-phase energy exported as CSV (and Parquet when pyarrow is installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd


def parquet_available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def export_tables(
    tables: dict[str, pd.DataFrame], out_dir: Path, parquet: bool = True
) -> list[Path]:
    """Write each frame as <name>.csv, plus <name>.parquet if asked and possible. A Parquet
    file not written this time (--no-parquet, or no pyarrow) is removed, so no export is
    left over from an earlier report beside fresh ones."""
    written = []
    for name, frame in tables.items():
        csv_path = out_dir / f"{name}.csv"
        frame.to_csv(csv_path, index=False)
        written.append(csv_path)
        parquet_path = out_dir / f"{name}.parquet"
        if parquet and parquet_available():
            frame.to_parquet(parquet_path, index=False)
            written.append(parquet_path)
        else:
            parquet_path.unlink(missing_ok=True)
    return written
