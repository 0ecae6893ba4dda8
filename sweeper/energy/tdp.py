"""A CPU's rated power (TDP), matched on its model name in CodeCarbon's cpu_power.csv."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache

from sweeper.energy.codecarbon_data import codecarbon_data_path

CODECARBON_DEFAULT_TDP_W = 85.0  # codecarbon.external.hardware.POWER_CONSTANT (v2.x-3.x)


_NOISE = [
    r"\(r\)",
    r"\(tm\)",
    r"@\s*\d+(?:\.\d+)?\s*ghz",
    r"\b\d+-core\b",
    r"\bprocessor\b",
    r"\bcpu\b",
    r"\bwith radeon .*$",
]


def normalize_cpu_name(name: str) -> str:
    """Lower-case model name without trademarks, clock speed, core count and filler words."""
    s = name.lower()
    for pattern in _NOISE:
        s = re.sub(pattern, " ", s)
    return " ".join(s.split())


@lru_cache(maxsize=1)
def _tdp_table() -> tuple[tuple[str, frozenset[str], str, float], ...]:
    """(normalized name, its tokens, table name, TDP W) for every row of CodeCarbon's table."""
    rows = []
    with open(codecarbon_data_path("hardware", "cpu_power.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                tdp_w = float(row["TDP"])
            except (KeyError, TypeError, ValueError):
                continue
            norm = normalize_cpu_name(row["Name"])
            rows.append((norm, frozenset(norm.split()), row["Name"], tdp_w))
    return tuple(rows)


@dataclass(frozen=True)
class TdpLookup:
    """A CPU's rated power and where the number came from."""

    tdp_w: float
    matched_name: str | None
    source: str


def lookup_cpu_tdp_w(model: str | None) -> TdpLookup:
    """Match a CPU model to CodeCarbon's TDP table, or fall back to CodeCarbon's 85 W default.

    Exact match on the normalized name first; otherwise the most specific table entry whose
    words (including a model number) all appear in the model name, if it is unambiguous.
    """
    default = TdpLookup(
        CODECARBON_DEFAULT_TDP_W,
        None,
        f"default {CODECARBON_DEFAULT_TDP_W:g} W (CodeCarbon POWER_CONSTANT; "
        f"{model or 'unknown CPU'} not in cpu_power.csv)",
    )
    if not model:
        return default
    norm = normalize_cpu_name(model)
    tokens = frozenset(norm.split())
    table = _tdp_table()
    for name_norm, _, name, tdp_w in table:
        if name_norm == norm:
            return TdpLookup(tdp_w, name, f"codecarbon cpu_power.csv: {name}")
    candidates = [
        (len(toks), name, tdp_w)
        for _, toks, name, tdp_w in table
        if toks and toks <= tokens and any(ch.isdigit() for t in toks for ch in t)
    ]
    if not candidates:
        return default
    best = max(c[0] for c in candidates)
    top = [c for c in candidates if c[0] == best]
    if len({c[2] for c in top}) > 1:
        return default
    return TdpLookup(top[0][2], top[0][1], f"codecarbon cpu_power.csv: {top[0][1]}")
