"""Process set-up for long-running servers."""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Collect once and freeze what survived start-up, so later full collections skip it.

    Start-up leaves hundreds of thousands of objects that live as long as the process (modules, routes,
    mappers, compiled statements). Without freezing, every generation-2 collection walks them all: pauses
    of 100-400 ms were measured in bench/wecom_callbacks.py, long enough to break a 50 ms p99."""
    gc.collect()
    gc.freeze()
