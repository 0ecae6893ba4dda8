"""Grams of CO2-equivalent from joules, with CodeCarbon's bundled offline intensity data.

Only the data files shipped inside the codecarbon package are read (no network, no API key),
so results are reproducible offline. Intensities are annual averages (location-based), not
the marginal intensity at the hour the run happened.

The default location is ``"WORLD"``: CodeCarbon's world average (475 gCO2eq/kWh, IEA 2019),
which CodeCarbon itself falls back to when a country is unknown. Pass a country's ISO 3166-1
alpha-3 code for its mix; regions exist for the USA (states, EPA eGRID 2023), Canada
(provinces), China (provinces) and the Nordic bidding zones (SE1-SE4, NO1-NO5, FI).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from sweeper.energy.codecarbon_data import codecarbon_data_path

DEFAULT_COUNTRY = "WORLD"
J_PER_KWH = 3.6e6
G_PER_LB = 453.59237
_NORDIC = {"SWE": "SE", "NOR": "NO", "FIN": "FI"}


@dataclass(frozen=True)
class CarbonIntensity:
    """Grid carbon intensity and a human-readable statement of where it came from."""

    g_per_kwh: float
    source: str


@cache
def _load(*parts: str) -> Any:
    with open(codecarbon_data_path(*parts), encoding="utf-8") as f:
        return json.load(f)


def country_codes() -> list[str]:
    """Every accepted country code: ``"WORLD"`` plus the ISO alpha-3 codes CodeCarbon knows."""
    return [DEFAULT_COUNTRY, *sorted(_load("private_infra", "global_energy_mix.json"))]


def _region_intensity(iso: str, region: str) -> CarbonIntensity:
    key = " ".join(region.lower().split())
    if iso == "USA":
        data = _load("private_infra", "2023", "usa_emissions.json")
        states = {k: v for k, v in data.items() if not k.startswith("_")}
        by_code = {v.get("regionCode", "").lower(): k for k, v in states.items()}
        name = key if key in states else by_code.get(key)
        if name is not None:
            year = data.get("_source", {}).get("year", "")
            g = float(states[name]["emissions"]) * G_PER_LB / 1000.0  # lbs/MWh -> g/kWh
            return CarbonIntensity(g, f"codecarbon usa_emissions (EPA eGRID {year}): {name}")
        valid = sorted(states)
    elif iso == "CAN":
        mixes = _load("private_infra", "2023", "canada_energy_mix.json")
        if key in mixes:
            # Same method as CodeCarbon: only fossil shares carry emissions.
            factors = _load("private_infra", "carbon_intensity_per_source.json")
            mix = mixes[key]
            g = sum(
                mix.get(src, 0.0) / mix["total"] * factors[fac]
                for src, fac in (
                    ("coal", "coal"),
                    ("petroleum", "petroleum"),
                    ("naturalGas", "natural_gas"),
                )
            )
            return CarbonIntensity(g, f"codecarbon canada_energy_mix 2023 (fossil share): {key}")
        valid = sorted(mixes)
    elif iso == "CHN":
        data = _load("private_infra", "2023", "china_provincial_emissions.json")
        name = re.sub(r"\s+(province|municipality|autonomous region)$", "", key)
        for code, entry in data["data"].items():
            if name in entry["names"] or key == code.lower():
                year = entry.get("year", "")
                return CarbonIntensity(
                    float(entry["emission_factor"]),
                    f"codecarbon china_provincial_emissions (MEE/NBS {year}): "
                    f"{entry['description']}",
                )
        valid = sorted(e["description"] for e in data["data"].values())
    elif iso in _NORDIC:
        data = _load("private_infra", "nordic_emissions.json")["data"]
        zones = [z for z in data if z.startswith(_NORDIC[iso])]
        zone = key.upper()
        if zone in zones:
            entry = data[zone]
            return CarbonIntensity(
                float(entry["emission_factor"]),
                f"codecarbon nordic_emissions {entry.get('year', '')}: {zone}",
            )
        valid = zones
    else:
        raise ValueError(
            f"no regional data for {iso}: regions exist only for USA, CAN, CHN, SWE, NOR, FIN; "
            "use region=None for the country average"
        )
    raise ValueError(f"unknown region {region!r} for {iso}; valid: {', '.join(valid)}")


def carbon_intensity(
    country_iso3: str = DEFAULT_COUNTRY, region: str | None = None
) -> CarbonIntensity:
    """Average grid intensity for a country (ISO alpha-3) or one of its regions."""
    iso = country_iso3.strip().upper()
    if iso == DEFAULT_COUNTRY:
        if region is not None:
            raise ValueError("region needs a country code, not WORLD")
        factors = _load("private_infra", "carbon_intensity_per_source.json")
        return CarbonIntensity(
            float(factors["world_average"]),
            "codecarbon carbon_intensity_per_source: world_average (IEA 2019)",
        )
    mix = _load("private_infra", "global_energy_mix.json")
    if iso not in mix:
        raise ValueError(
            f"unknown country code {country_iso3!r}: use an ISO 3166-1 alpha-3 code such as "
            f"'FRA' or 'USA', or 'WORLD'; sweeper.energy.carbon.country_codes() lists the "
            f"{len(mix)} codes in CodeCarbon's global_energy_mix.json"
        )
    if region is not None:
        return _region_intensity(iso, region)
    entry = mix[iso]
    return CarbonIntensity(
        float(entry["carbon_intensity"]),
        f"codecarbon global_energy_mix {entry.get('year', '')}: {iso} ({entry['country_name']})",
    )


def co2_g(energy_j: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    """Grams CO2eq for ``energy_j`` of IT energy; ``pue`` scales it up to facility energy."""
    if energy_j < 0 or intensity_g_per_kwh < 0:
        raise ValueError("energy_j and intensity_g_per_kwh must be non-negative")
    if pue < 1.0:
        raise ValueError(f"pue is facility/IT energy and cannot be below 1, got {pue}")
    return energy_j / J_PER_KWH * intensity_g_per_kwh * pue
