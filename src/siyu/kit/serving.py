"""Process set-up for long-running servers."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def settle_heap() -> None:
    """Collect once and freeze what survived start-up, so later full collections skip it.

    Start-up leaves hundreds of thousands of objects that live as long as the process (modules, routes,
    mappers, compiled statements). Without freezing, every generation-2 collection walks them all: pauses
    of 100-400 ms were measured in bench/wecom_callbacks.py, long enough to break a 50 ms p99."""
    gc.collect()
    gc.freeze()


_PAUSE_LOCK = threading.Lock()
_pausers = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk job; it resumes when the last such job ends.

    A bulk job (a full WeCom sync of 100,000 contacts) allocates millions of short-lived, acyclic
    objects, which reference counting frees; the cyclic collector still walked the growing heap about
    fourteen times (1.5 s of a 12 s sync, holding the GIL, so every other thread stopped too). Jobs on
    other threads may overlap: the collector resumes only when the last one leaves, and only if it
    was enabled when the first one came."""
    global _pausers, _resume
    with _PAUSE_LOCK:
        if _pausers == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _pausers -= 1
            if _pausers == 0 and _resume:
                gc.enable()
