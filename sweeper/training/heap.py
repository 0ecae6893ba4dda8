"""Keep Python's full garbage collections out of the steps being measured.

A full (generation 2) collection walks every object the collector tracks. Once torch,
its compiler stack (imported by the first optimizer: sympy, torch._dynamo) and the data
are loaded, that is some 350,000 objects and 50-120 ms on a 2-core VM: 5-9 steps of a
small network, landing wherever allocation counts trigger it. One inside a 5% profile
window read a whole run 13-15% high (mobilenet b16 on digits, issue 24). The objects that
exist before training are long-lived, so they are frozen (``gc.freeze``) for the run: a
full collection then walks only what the run allocates (under a millisecond), and cyclic
garbage the run makes is still collected. They are unfrozen afterwards, so a later run in
the same process can collect them.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze what exists now (after a collection, so no garbage is kept) until the block
    ends; nested or concurrent blocks leave it to the last one out (the freeze is the
    process's)."""
    global _depth
    with _lock:
        if _depth == 0:
            gc.collect()
            gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()
