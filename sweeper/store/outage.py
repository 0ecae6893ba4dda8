"""Riding out a store outage: a PostgreSQL server restarting or failing over, a network
blip, an SQLite file locked by another process for longer than its busy timeout.

One rule everywhere: a transient failure is retried with backoff, and sweeper gives up only
once the store has been unreachable for `storage.outage_s` (Store.outage_s) since that
failure. Two ways to apply it:

- `retried` (on the functions of sweeper.store.runs): the caller waits. A job about to start
  (reading its sweep, inserting its run row) or the summary waits for the store to return.
- `WriteBehind`: a running run's own writes (power samples from the sampler thread, phases,
  heartbeats, its closing update) never make the run wait. While the store is healthy they
  are written at once, in the calling thread, as before; once a write fails transiently, it
  and every later one queue in memory, in order, and a writer thread writes them, in that
  order, when the store is back. `flush()` waits for the queue (the run's close). The queue
  is also spooled to a local file (sweeper.store.spool), so a process that crashes or gives
  up during the outage loses nothing: the next command stores it (sweeper.store.replay).

A write that failed may still have committed (the connection dropped while the commit was
on its way); a write retried after a failure first asks the store whether it landed
(`landed=`), so a retry never stores a phase or a batch of samples twice.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

from sqlalchemy import exc as sa_exc

from sweeper.errors import DiskFull, StoreUnavailable
from sweeper.store.db import Store, disk_full
from sweeper.store.schema import utcnow
from sweeper.store.spool import Spool

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

FIRST_DELAY_S = 0.05  # the first retry comes quickly: most blips are a dropped connection
MAX_DELAY_S = 1.0  # then at most a try a second: cheap for the store, prompt on its return


class Reachable(Protocol):
    """What riding out an outage needs to know of a store (a Store, or the database of an
    Optuna study)."""

    display_url: str
    outage_s: float

    @property
    def is_sqlite(self) -> bool: ...


def is_transient(exc: BaseException, store: Reachable) -> bool:
    """Whether a failure means "the store is unreachable for now", not "this write is wrong".

    On SQLite only a lock held past the busy timeout is (its other OperationalErrors, such
    as "no such table", are not). On a server, any lost, refused or timed-out connection,
    an administrator's shutdown, a deadlock or serialization failure is.
    """
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if store.is_sqlite:
        text = str(getattr(exc, "orig", exc)).lower()
        return isinstance(exc, sa_exc.OperationalError) and ("locked" in text or "busy" in text)
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")


def give_up(
    store: Reachable, what: str, down_s: float, last: BaseException, after: str
) -> StoreUnavailable:
    """The one line a user sees when sweeper stops waiting for the store."""
    return StoreUnavailable(
        f"could not {what}: the store at {store.display_url} was unreachable for "
        f"{down_s:.0f} s (storage.outage_s={store.outage_s:g}; last error {_first_line(last)}). "
        + (after or "What was stored before is kept; running the same command again resumes "
           "the sweep.")
    )


def out_of_space(
    store: Reachable, what: str, exc: BaseException, after: str = ""
) -> DiskFull | None:
    """The one line for a write that failed because the store's disk is full (waiting
    frees no space, so it is not retried), or None."""
    url = getattr(store, "url", None)
    reason = None if url is None else disk_full(exc, url)
    if reason is None:
        return None
    return DiskFull(
        f"could not {what}: {reason}; free some space there. "
        + (after or "What was stored before is kept; running the same command again "
           "resumes the sweep.")
    )


@dataclass
class _Outage:
    """Time since the first failure, and the backoff before the next try."""

    started_s: float
    delay_s: float = FIRST_DELAY_S

    def down_s(self) -> float:
        return time.monotonic() - self.started_s

    def wait(self, outage_s: float) -> bool:
        """Sleep before the next try; False once the next try would come after outage_s."""
        remaining_s = outage_s - self.down_s()
        if remaining_s <= 0:
            return False
        time.sleep(min(self.delay_s, remaining_s))
        self.delay_s = min(2 * self.delay_s, MAX_DELAY_S)
        return True


def ride_out(
    store: Reachable, what: str, attempt: Callable[[bool], T], after: str = ""
) -> T:
    """attempt(retry) until it succeeds, retrying transient failures for store.outage_s."""
    outage: _Outage | None = None
    while True:
        try:
            result = attempt(outage is not None)
        except Exception as exc:
            full = out_of_space(store, what, exc, after)
            if full is not None:
                raise full from exc
            if not is_transient(exc, store):
                raise
            if outage is None:
                outage = _Outage(time.monotonic())
                log.warning(
                    "the store at %s is unreachable (%s): waiting up to %g s "
                    "(storage.outage_s) to %s", store.display_url, _first_line(exc),
                    store.outage_s, what,
                )
            if not outage.wait(store.outage_s):
                raise give_up(store, what, outage.down_s(), exc, after) from exc
            continue
        if outage is not None:
            log.warning("the store is back after %.1f s", outage.down_s())
        return result


class Retried(Generic[P, T]):
    """A short transaction on a store (a function whose first argument is the Store).

    Calling it waits out an outage; `once` is one try, for WriteBehind to schedule.
    """

    def __init__(
        self,
        fn: Callable[Concatenate[Store, P], T],
        what: str,
        landed: Callable[Concatenate[Store, P], T | None] | None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.what = what
        self.landed = landed

    def __call__(self, store: Store, *args: P.args, **kwargs: P.kwargs) -> T:
        return ride_out(store, self.what, lambda retry: self.once(store, retry, *args, **kwargs))

    def once(self, store: Store, retry: bool, *args: P.args, **kwargs: P.kwargs) -> T:
        """One try; after a failed try (retry=True), first whether that one committed."""
        if retry and self.landed is not None:
            found = self.landed(store, *args, **kwargs)
            if found is not None:
                return found
        return self.fn(store, *args, **kwargs)


def retried(
    what: str, landed: Callable[..., Any] | None = None
) -> Callable[[Callable[Concatenate[Store, P], T]], Retried[P, T]]:
    """Decorator: `what` completes "could not ..." in the give-up line; `landed(store,
    *args)` returns the earlier try's result if it committed, else None (writes that are not
    idempotent need one)."""

    def wrap(fn: Callable[Concatenate[Store, P], T]) -> Retried[P, T]:
        return Retried(fn, what, landed)

    return wrap


@dataclass
class _Pending:
    what: str
    write: Callable[[bool], object]  # write(retry)
    tried: bool  # a try already failed: it may have committed
    coalesce: bool  # a later identical write replaces it (heartbeats)


class WriteBehind:
    """The writes of one run, in the order they were made, surviving a store outage.

    Thread-safe: the sampler thread, the heartbeat thread and the run's own thread all write
    through it. `after` ends the give-up line (what happens to the run).
    """

    def __init__(
        self, store: Store, label: str, after: str = "", spool: Spool | None = None
    ) -> None:
        self.store = store
        self.label = label
        self.after = after
        self.spool = spool
        self._cond = threading.Condition()
        self._pending: deque[_Pending] = deque()
        self._failed: StoreUnavailable | None = None
        self.buffered = 0  # writes that went through the queue, over all outages

    def submit(
        self, what: str, op: Retried[P, Any], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Write now, or queue behind earlier writes while the store is unreachable.

        Raises the give-up error once the outage has outlasted store.outage_s, and any
        non-transient error of a write made at once (as a plain call would).
        """
        self._submit(what, lambda retry: op.once(self.store, retry, *args, **kwargs), False,
                     (op.__name__, args, kwargs))

    def submit_beat(
        self, what: str, op: Retried[P, Any], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """A write that only the latest of matters: queued once, however many come (a
        heartbeat means nothing later: it is not spooled)."""
        self._submit(what, lambda retry: op.once(self.store, retry, *args, **kwargs), True)

    def _submit(
        self, what: str, write: Callable[[bool], object], coalesce: bool,
        record: tuple[str, tuple[Any, ...], dict[str, Any]] | None = None,
    ) -> None:
        with self._cond:
            if self._failed is not None:
                raise self._failed
            if self._pending:
                last = self._pending[-1]
                if not (coalesce and last.coalesce and last.what == what and not last.tried):
                    self._pending.append(_Pending(what, write, False, coalesce))
                    self.buffered += 1
                    self._spool(record)
                return
            try:
                write(False)  # the healthy path: written now, in this thread, in order
                return
            except Exception as exc:
                full = out_of_space(self.store, f"record {self.label}", exc, self.after)
                if full is not None:  # every later write of the run fails at once too
                    self._failed = full
                    raise full from exc
                if not is_transient(exc, self.store):
                    raise
                self._pending.append(_Pending(what, write, True, coalesce))
                self.buffered += 1
                self._spool(record)
                log.warning(
                    "the store at %s is unreachable (%s): %s goes on and keeps its writes in "
                    "memory for up to %g s (storage.outage_s)", self.store.display_url,
                    _first_line(exc), self.label, self.store.outage_s,
                )
                threading.Thread(
                    target=self._drain, args=(_Outage(time.monotonic()),),
                    name="sweeper-store-outage", daemon=True,
                ).start()

    def _drain(self, outage: _Outage) -> None:
        """Write the queue in order once the store answers; stop after store.outage_s."""
        written = 0
        while True:
            with self._cond:
                if not self._pending:
                    log.warning(
                        "the store is back after %.1f s: %d buffered write(s) of %s stored",
                        outage.down_s(), written, self.label,
                    )
                    if self.spool is not None:
                        self.spool.discard()
                    self._cond.notify_all()
                    return
                item = self._pending[0]
            try:
                item.write(item.tried)
                written += 1
            except Exception as exc:
                full = out_of_space(self.store, f"record {self.label}", exc, self.after)
                if full is not None:
                    with self._cond:
                        self._failed = full
                        if self.spool is not None:
                            self.spool.gave_up(str(full))
                        self._cond.notify_all()
                    return
                if is_transient(exc, self.store):
                    item.tried = True
                    if outage.wait(self.store.outage_s):
                        continue
                    with self._cond:
                        self._failed = give_up(
                            self.store, f"record {self.label}", outage.down_s(), exc, self.after
                        )
                        if self.spool is not None:
                            self.spool.gave_up(self._gave_up_reason(outage))
                        self._cond.notify_all()
                    return
                # Not an outage: this write is wrong in itself; the rest still go in.
                log.error("%s: could not %s: %s", self.label, item.what, _first_line(exc))
            with self._cond:
                self._pending.popleft()
            outage.delay_s = FIRST_DELAY_S

    def _spool(self, record: tuple[str, tuple[Any, ...], dict[str, Any]] | None) -> None:
        if self.spool is not None and record is not None:
            self.spool.append(*record)

    def _gave_up_reason(self, outage: _Outage) -> str:
        """What the next command records for the run (sweeper.run.liveness)."""
        return (
            f"the store at {self.store.display_url} was unreachable for "
            f"{outage.down_s():.0f} s, longer than storage.outage_s={self.store.outage_s:g}: "
            f"pid {os.getpid()} on {socket.gethostname()} stopped waiting and gave the run up "
            f"at {utcnow():%Y-%m-%d %H:%M:%S} UTC"
        )

    def flush(self) -> None:
        """Wait until every write is stored, or raise the give-up error."""
        with self._cond:
            while self._pending and self._failed is None:
                self._cond.wait(0.5)
            if self._failed is not None:
                raise self._failed
