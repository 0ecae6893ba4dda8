"""Energy measurement for sweeper runs: meters (NVML, RAPL, labelled estimate), a background
sampler with exact per-phase readings, and carbon conversion from CodeCarbon's offline data.

Nothing here imports torch or the storage layer, so it can be used and tested on its own.
"""

from sweeper.energy.carbon import (
    DEFAULT_COUNTRY,
    CarbonIntensity,
    carbon_intensity,
    co2_g,
    country_codes,
)
from sweeper.energy.cpu_name import cpu_model_name
from sweeper.energy.estimate import MEMORY_W_PER_GIB, EstimateMeter
from sweeper.energy.labels import source_label
from sweeper.energy.nvml import NvmlMeter
from sweeper.energy.nvml_reading import GpuStats
from sweeper.energy.rapl import RaplMeter, counter_delta_uj
from sweeper.energy.sampler import EnergyCheckpoint, EnergySampler, PhaseHandle
from sweeper.energy.select import MeterSet, open_meters
from sweeper.energy.tdp import CODECARBON_DEFAULT_TDP_W, TdpLookup, lookup_cpu_tdp_w
from sweeper.energy.types import (
    SOURCES,
    DomainReading,
    EnergySummary,
    Meter,
    MeterReadError,
    PhaseEnergy,
    Sample,
)
from sweeper.errors import MeterUnavailable


def __getattr__(name: str) -> tuple[str, ...]:
    """CHOICES: the `meter=` names, read from the energy/meter config group when asked for."""
    if name == "CHOICES":
        from sweeper.energy import select

        return select.CHOICES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CHOICES",
    "CODECARBON_DEFAULT_TDP_W",
    "DEFAULT_COUNTRY",
    "MEMORY_W_PER_GIB",
    "SOURCES",
    "CarbonIntensity",
    "DomainReading",
    "EnergyCheckpoint",
    "EnergySampler",
    "EnergySummary",
    "EstimateMeter",
    "GpuStats",
    "Meter",
    "MeterReadError",
    "MeterSet",
    "MeterUnavailable",
    "NvmlMeter",
    "PhaseEnergy",
    "PhaseHandle",
    "RaplMeter",
    "Sample",
    "TdpLookup",
    "carbon_intensity",
    "co2_g",
    "counter_delta_uj",
    "country_codes",
    "cpu_model_name",
    "lookup_cpu_tdp_w",
    "open_meters",
    "source_label",
]
