"""The garbage-collector pause used by bulk jobs: nested and overlapping pauses resume it once, at the end."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from siyu.kit.serving import collector_paused


@pytest.fixture(autouse=True)
def _restore_collector() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


def test_collector_resumes_after_the_last_overlapping_pause() -> None:
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other_job() -> None:
        with collector_paused():
            inside.set()
            release.wait(5)

    job = threading.Thread(target=other_job)
    with collector_paused():
        assert not gc.isenabled()
        job.start()
        assert inside.wait(5)
    assert not gc.isenabled(), "the other job is still running"
    release.set()
    job.join(5)
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_the_collector_resumes_when_the_job_fails() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("sync failed")
    assert gc.isenabled()
