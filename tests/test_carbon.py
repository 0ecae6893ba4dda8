"""Carbon intensity from CodeCarbon's bundled data, and the joules -> grams conversion."""

from __future__ import annotations

import json

import pytest

from sweeper.energy.carbon import (
    DEFAULT_COUNTRY,
    carbon_intensity,
    co2_g,
    country_codes,
)
from sweeper.energy.codecarbon_data import codecarbon_data_path


def bundled(*parts: str) -> dict:
    with open(codecarbon_data_path("private_infra", *parts), encoding="utf-8") as f:
        return json.load(f)


def test_country_values_are_codecarbons() -> None:
    mix = bundled("global_energy_mix.json")
    for iso in ("FRA", "USA", "DEU", "IND"):
        ci = carbon_intensity(iso)
        assert ci.g_per_kwh == mix[iso]["carbon_intensity"]
        assert iso in ci.source and "global_energy_mix" in ci.source
        assert str(mix[iso]["year"]) in ci.source
    assert carbon_intensity("fra") == carbon_intensity("FRA")
    assert carbon_intensity("FRA").g_per_kwh < carbon_intensity("IND").g_per_kwh


def test_default_is_the_world_average() -> None:
    assert DEFAULT_COUNTRY == "WORLD"
    ci = carbon_intensity()
    assert ci.g_per_kwh == bundled("carbon_intensity_per_source.json")["world_average"]
    assert "world_average" in ci.source


def test_unknown_country_says_how_to_find_codes() -> None:
    with pytest.raises(ValueError) as err:
        carbon_intensity("XYZ")
    assert "ISO 3166-1 alpha-3" in str(err.value) and "country_codes()" in str(err.value)
    assert "FRA" in country_codes() and "WORLD" in country_codes()


def test_us_state_by_name_or_code() -> None:
    states = bundled("2023", "usa_emissions.json")
    lbs_per_mwh = states["california"]["emissions"]
    ci = carbon_intensity("USA", "California")
    assert ci.g_per_kwh == pytest.approx(lbs_per_mwh * 453.59237 / 1000)
    assert carbon_intensity("USA", "CA") == ci
    assert "eGRID" in ci.source and "california" in ci.source


def test_other_regions() -> None:
    quebec = carbon_intensity("CAN", "quebec")
    alberta = carbon_intensity("CAN", "Alberta")
    assert 0 < quebec.g_per_kwh < 50 < alberta.g_per_kwh  # hydro vs. fossil provinces
    nordic = bundled("nordic_emissions.json")["data"]
    assert carbon_intensity("SWE", "se3").g_per_kwh == nordic["SE3"]["emission_factor"]
    assert carbon_intensity("CHN", "Beijing Municipality").g_per_kwh > 0


def test_unknown_region_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: .*texas"):
        carbon_intensity("USA", "Atlantis")
    with pytest.raises(ValueError, match="no regional data for FRA"):
        carbon_intensity("FRA", "Bretagne")


def test_co2_grams() -> None:
    assert co2_g(3.6e6, 400.0) == pytest.approx(400.0)  # 1 kWh
    assert co2_g(1800.0, 500.0, pue=1.5) == pytest.approx(0.375)
    assert co2_g(0.0, 500.0) == 0.0
    with pytest.raises(ValueError):
        co2_g(1.0, 100.0, pue=0.9)
    with pytest.raises(ValueError):
        co2_g(-1.0, 100.0)
