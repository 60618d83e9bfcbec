"""Background tasks of the event log: drain the outbox after each commit that wrote to it, every
minute for rows waiting on a back-off, and prune done rows nightly."""

from __future__ import annotations

from huey import crontab

from siyu.events import bus, outbox
from siyu.worker.queue import huey, sessions


@huey.task(name="events.drain_outbox")
def drain_outbox() -> dict[str, int]:
    """Handle every due outbox row (idempotent; requested after commits that queued work)."""
    return outbox.drain(sessions())


@huey.periodic_task(crontab(minute="*"), name="events.sweep_outbox")
def sweep_outbox() -> dict[str, int]:
    """Every minute: handle rows whose back-off or lease ran out (and any request that was lost)."""
    return outbox.drain(sessions())


@huey.periodic_task(crontab(hour="20", minute="25"), name="events.prune_outbox")
def prune_outbox() -> int:
    """Nightly (04:25 Asia/Shanghai): delete outbox rows done more than a week ago."""
    return outbox.prune(sessions())


bus.on_outbox_commit(drain_outbox)
