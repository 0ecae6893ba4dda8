"""The CPU's model name, which identifies the hardware and looks up its rated power."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_model_name() -> str | None:
    """CPU brand string, from /proc/cpuinfo (fast) or py-cpuinfo (portable, ~1 s)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    try:
        import cpuinfo

        brand = str(cpuinfo.get_cpu_info().get("brand_raw") or "").strip()
        return brand or None
    except Exception:  # py-cpuinfo is best-effort on exotic platforms
        return None
