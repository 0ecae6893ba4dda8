"""A GPU power limit for one run, set through NVML and always given back.

``gpu.power_limit`` (a fraction of the card's default limit) or ``gpu.power_limit_w``
(watts) caps every GPU of a run with ``nvmlDeviceSetPowerManagementLimit``, within
``nvmlDeviceGetPowerManagementLimitConstraints``. ``open_power_cap`` checks everything
before any work (the range, and the permission, by setting each card's current limit
again): a refusal is one ``ConfigError`` line naming the GPU, its allowed range and what
is missing.

The limit found at start is written to a small owner-only state file per GPU *before* the
card is changed, under ``$SWEEPER_STATE_DIR/gpu-power/<host>/`` (default
``~/.cache/sweeper``; sweeper.energy.power_state). When a run was killed (kill -9, the OOM
killer) before it could restore the card, ``restore_stale`` puts back the original limit of
every GPU whose holders are all gone. Runs on one GPU at once must ask for the same limit,
and the last one to leave restores the original.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sweeper.energy.nvml_devices import is_mig, nvml_target, open_handle, visible_devices
from sweeper.energy.power_state import alive, holder, locked, state_dir, write_state
from sweeper.errors import ConfigError

NVML_ERROR_INVALID_ARGUMENT = 2  # pynvml's values, for bindings without the names
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4


@dataclass(frozen=True)
class PowerLimitRequest:
    """What the config asked for: a fraction of the default limit, or watts (not both)."""

    fraction: float | None = None
    watts: float | None = None
    auto: bool = False  # profile AUTO_FRACTIONS in the first epoch (power_limit_auto)
    max_slowdown: float = 0.1  # auto: the most time per step it may add to the default's

    @property
    def active(self) -> bool:
        return self.fraction is not None or self.watts is not None or self.auto

    def target_w(self, default_w: float) -> float:
        """The limit to set at start (auto starts at the default)."""
        return self.watts if self.watts is not None else default_w * (self.fraction or 1.0)

    def __str__(self) -> str:
        if self.auto:
            return "gpu.power_limit=auto"
        if self.watts is not None:
            return f"gpu.power_limit_w={self.watts:g}"
        return "gpu.power_limit=null" if self.fraction is None else \
            f"gpu.power_limit={self.fraction:g}"


@dataclass(frozen=True)
class GpuPowerLimit:
    """One GPU's limits in watts: as found, the card's default, its range, and what was set
    (read back from the card)."""

    gpu: str  # "gpu:0", CUDA's index, as the meters name it
    nvml_device: str  # NVML index or UUID
    name: str
    original_w: float
    default_w: float
    min_w: float
    max_w: float
    requested_w: float
    applied_w: float | None = None


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM blocked for this thread until the block ends, then delivered."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _error_value(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return int(value) if isinstance(value, int) else None


def _code(nvml: Any, name: str, fallback: int) -> int:
    return int(getattr(nvml, name, fallback))


def _import_nvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        raise ConfigError(
            f"gpu.power_limit needs NVML: nvidia-ml-py (pynvml) is not installed ({exc})"
        ) from exc
    return pynvml


def _state_name(nvml: Any, handle: Any, target: str) -> str:
    """The GPU's UUID where NVML gives one (stable whatever CUDA_VISIBLE_DEVICES says)."""
    with contextlib.suppress(Exception):
        uuid = nvml.nvmlDeviceGetUUID(handle)
        uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        if uuid:
            return uuid
    return f"index-{target}"


def _set_mw(nvml: Any, handle: Any, limit_w: float) -> None:
    nvml.nvmlDeviceSetPowerManagementLimit(handle, round(limit_w * 1000))


def _get_w(nvml: Any, handle: Any) -> float:
    return float(nvml.nvmlDeviceGetPowerManagementLimit(handle)) / 1000.0


@dataclass
class _Card:
    limit: GpuPowerLimit
    handle: Any
    state_file: Path


@dataclass
class PowerCap:
    """The limits of one run, checked; ``with cap:`` sets them and restores the originals."""

    request: PowerLimitRequest
    nvml: Any
    cards: list[_Card] = field(default_factory=list)
    _held: list[_Card] = field(default_factory=list)
    auto_profile: dict[str, Any] | None = None  # gpu.power_limit=auto: what it measured

    @property
    def gpus(self) -> list[GpuPowerLimit]:
        return [c.limit for c in self.cards]

    def __enter__(self) -> PowerCap:
        try:
            for card in self.cards:
                self._acquire(card)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the GPUs and NVML (reference-counted: other users keep theirs)."""
        try:
            self.release()
        finally:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()

    def _acquire(self, card: _Card) -> None:
        g, nvml = card.limit, self.nvml
        with locked(card.state_file) as state:
            state = _recover(nvml, card.handle, card.state_file, state)
            if state is not None:  # a live run holds this GPU
                if not _compatible(state, self.request, g.requested_w):
                    raise ConfigError(_conflict(self.request, g, state))
                state["holders"].append(holder())
            else:  # recorded before the card changes: a crash from here on is recoverable
                state = {"gpu": g.name, "nvml_device": g.nvml_device,
                         "original_mw": round(_get_w(nvml, card.handle) * 1000),
                         "limit_mw": round(g.requested_w * 1000), "holders": [holder()],
                         "auto": self.request.auto}
            write_state(card.state_file, state)
            self._held.append(card)
            _set_mw(nvml, card.handle, g.requested_w)
            applied = _get_w(nvml, card.handle)
        card.limit = GpuPowerLimit(**{**asdict(g), "original_w": state["original_mw"] / 1000.0,
                                      "applied_w": applied})

    def release(self) -> None:
        """Leave every GPU held; the last holder puts its original limit back. Ctrl-C and
        SIGTERM wait until that is done (a second Ctrl-C must not leave a card capped)."""
        with _signals_held():
            self._release()

    def _release(self) -> None:
        while self._held:
            card = self._held.pop()
            me = holder()
            with locked(card.state_file) as state:
                if state is None:
                    continue
                state["holders"] = [h for h in state["holders"]
                                    if alive(h) and h.get("pid") != me["pid"]]
                if state["holders"]:
                    write_state(card.state_file, state)
                else:
                    _set_mw(self.nvml, card.handle, state["original_mw"] / 1000.0)
                    card.state_file.unlink(missing_ok=True)

    def set_fraction(self, fraction: float) -> float:
        """Set every GPU held to ``fraction`` of its default limit, within its range (for
        gpu.power_limit=auto); the mean limit applied, in watts, as read back."""
        applied = []
        for card in self._held:
            g = card.limit
            target_w = min(max(fraction * g.default_w, g.min_w), g.max_w)
            _set_mw(self.nvml, card.handle, target_w)
            card.limit = GpuPowerLimit(**{**asdict(g), "requested_w": target_w,
                                          "applied_w": _get_w(self.nvml, card.handle)})
            applied.append(card.limit.applied_w)
        return sum(applied) / len(applied) if applied else float("nan")

    def record(self) -> dict[str, Any]:
        """What a run stores (hardware["gpu_power"]): the request and each GPU's limits
        (with auto, those it kept), and the auto profile."""
        out = {"requested": str(self.request), "fraction": self.request.fraction,
               "watts": self.request.watts,
               "gpus": {c.limit.gpu: asdict(c.limit) for c in self.cards}}
        if self.request.auto:
            out["max_slowdown"] = self.request.max_slowdown
            out["auto"] = self.auto_profile
        return out

    def identity(self, described: dict[str, str]) -> dict[str, str]:
        """Meter descriptions with each GPU's limit as found: a limit sweeper sets is a
        config dimension, not another machine (the hardware id stays the card's)."""
        out = dict(described)
        for c in self.cards:
            key = f"nvml.{c.limit.gpu}.power_limit_w"
            if key in out:
                out[key] = f"{c.limit.original_w:g}"
        return out


def _compatible(state: dict[str, Any], request: PowerLimitRequest, target_w: float) -> bool:
    """Another live run's limit on this GPU allows this one beside it: the same fixed one."""
    if request.auto or state.get("auto"):
        return False
    return state["limit_mw"] == round(target_w * 1000)


def _conflict(request: PowerLimitRequest, gpu: GpuPowerLimit | str, state: dict[str, Any]
              ) -> str:
    if isinstance(gpu, GpuPowerLimit):
        gpu = f"GPU {gpu.gpu.split(':')[1]} ({gpu.name})"
    pids = ", ".join(str(h["pid"]) for h in state["holders"])
    held = "profiled (gpu.power_limit=auto)" if state.get("auto") else \
        f"capped at {state['limit_mw'] / 1000:g} W"
    return (f"{request}: {gpu} is {held} by another sweeper run (pid {pids}); runs sharing "
            "a GPU must ask for the same fixed limit")


def _recover(nvml: Any, handle: Any, path: Path, state: dict[str, Any] | None
             ) -> dict[str, Any] | None:
    """Under the lock: drop holders that are gone; with none left, restore the original
    limit and delete the file. The state still held by live runs, or None."""
    if state is None:
        return None
    state["holders"] = [h for h in state.get("holders", []) if alive(h)]
    if state["holders"]:
        return state
    _set_mw(nvml, handle, float(state["original_mw"]) / 1000.0)
    path.unlink(missing_ok=True)
    return None


def restore_stale(nvml: ModuleType | Any | None = None) -> list[str]:
    """Put back the original limit of every GPU left capped by a run that died (kill -9,
    OOM); one line per GPU restored. Costs a directory listing when there is nothing."""
    folder = state_dir()
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return []
    nvml = nvml or _import_nvml()
    nvml.nvmlInit()
    done = []
    try:
        for path in files:
            with locked(path) as state:
                if state is None or any(alive(h) for h in state.get("holders", [])):
                    continue
                target = str(state.get("nvml_device"))
                handle = open_handle(nvml, path.stem if path.stem.startswith("GPU-")
                                     else target)
                _recover(nvml, handle, path, state)
                done.append(f"GPU {target} ({state.get('gpu')}): power limit restored to "
                            f"{state['original_mw'] / 1000:g} W, left by a run that ended "
                            "without restoring it")
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    return done


def open_power_cap(
    request: PowerLimitRequest, gpu_indices: Sequence[int] | None, *,
    nvml: ModuleType | Any | None = None, cuda_visible_devices: str | None = None,
) -> PowerCap:
    """Check ``request`` on every GPU in ``gpu_indices`` (CUDA's; None: every visible one)
    and return the cap to enter; a ``ConfigError`` line, with nothing changed, otherwise."""
    nvml = nvml or _import_nvml()
    try:
        nvml.nvmlInit()
    except Exception as exc:
        raise ConfigError(f"{request} needs NVML, which could not start here "
                          f"({type(exc).__name__}: {exc})") from exc
    if cuda_visible_devices is None:
        cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = visible_devices(cuda_visible_devices)
    cap = PowerCap(request, nvml)
    try:
        count = int(nvml.nvmlDeviceGetCount()) if visible is None else len(visible)
        indices = list(range(count)) if gpu_indices is None else list(gpu_indices)
        bad = [i for i in indices if not 0 <= i < count]
        if bad or not indices:
            raise ConfigError(f"{request}: GPU(s) {bad or indices} not found ({count} visible)")
        for i in indices:
            target = nvml_target(i, visible)
            if is_mig(target):
                raise ConfigError(f"{request}: GPU {i} is the MIG instance {target}; a power "
                                  "limit applies to a whole GPU")
            try:
                cap.cards.append(_check(nvml, request, i, target))
            except nvml.NVMLError as exc:  # a lost GPU, a bad UUID
                raise ConfigError(f"{request}: NVML cannot read GPU {i} (NVML device "
                                  f"{target}): {exc}") from exc
    except BaseException:
        cap.close()
        raise
    return cap


def _check(nvml: Any, request: PowerLimitRequest, index: int, target: str) -> _Card:
    """One GPU's limits, the request within its range, and the permission to set it."""
    handle = open_handle(nvml, target)
    name = nvml.nvmlDeviceGetName(handle)
    name = name.decode() if isinstance(name, bytes) else str(name)
    gpu = f"GPU {index} ({name})"
    try:
        lo_mw, hi_mw = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
        default_w = float(nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle)) / 1000.0
        current_w = _get_w(nvml, handle)
    except nvml.NVMLError as exc:
        raise ConfigError(f"{request}: {gpu} has no settable power limit "
                          f"(NVML: {exc}); use gpu.power_limit=null on this card") from exc
    lo_w, hi_w = float(lo_mw) / 1000.0, float(hi_mw) / 1000.0
    target_w = request.target_w(default_w)
    if not lo_w <= target_w <= hi_w:
        allowed = f"{lo_w:g}-{hi_w:g} W"
        if request.fraction is not None or request.auto:
            allowed += f" ({lo_w / default_w:.2f}-{hi_w / default_w:.2f} of its default " \
                       f"{default_w:g} W)"
        given = request.watts if request.watts is not None else request.fraction or 1.0
        raise ConfigError(f"invalid value for '{str(request).split('=')[0]}': {given:g} is "
                          f"{target_w:g} W on {gpu}; allowed: {allowed}")
    state_file = state_dir() / f"{_state_name(nvml, handle, target)}.json"
    with locked(state_file) as state:
        holders = [h for h in (state or {}).get("holders", []) if alive(h)]
        if holders and state and not _compatible(state, request, target_w):
            raise ConfigError(_conflict(request, gpu, {**state, "holders": holders}))
    try:  # the permission, asked without changing anything: its current limit again
        _set_mw(nvml, handle, current_w)
    except nvml.NVMLError as exc:
        code = _error_value(exc)
        if code == _code(nvml, "NVML_ERROR_NO_PERMISSION", NVML_ERROR_NO_PERMISSION):
            why = "needs root (NVML_ERROR_NO_PERMISSION): run the sweep as root"
        elif code == _code(nvml, "NVML_ERROR_NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED):
            why = "is not supported on this card (NVML_ERROR_NOT_SUPPORTED)"
        else:
            why = f"was refused by NVML ({exc})"
        raise ConfigError(f"{request}: setting the power limit of {gpu} (allowed "
                          f"{lo_w:g}-{hi_w:g} W) {why}, or use gpu.power_limit=null") from exc
    limit = GpuPowerLimit(f"gpu:{index}", target, name, current_w, default_w, lo_w, hi_w,
                          target_w)
    return _Card(limit, handle, state_file)
