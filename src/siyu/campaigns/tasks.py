"""Background tasks of campaigns: submit a reserved mass message to WeCom, and resume any submission a
killed worker left half-way (at worker start-up and every minute).

A Huey task taken by a worker that is then killed is gone with it; the message stays "submitting" and its
lock (``submission.LOCK``) is released with the dead process, so ``resume_mass_messages`` finds it."""

from __future__ import annotations

import logging
import threading

from huey import crontab

from siyu.campaigns import service as campaigns
from siyu.campaigns import submission
from siyu.wecom.credentials import client_for, load_plain
from siyu.worker.queue import huey, sessions, settings

log = logging.getLogger(__name__)
_started = threading.Event()


@huey.task(name="campaigns.submit_mass_message")
def submit_mass_message(org_id: int, message_id: int) -> dict[str, int] | None:
    """Submit, resume or finish cancelling one reserved mass message (a no-op while another process runs it)."""
    factory = sessions()
    with factory() as db:
        client = client_for(load_plain(db, org_id, settings().resolved_secret_key()))
    result = campaigns.run_submission(factory, org_id, message_id, client)
    if result is None:
        return None
    return {"submitted": result.submitted, "recovered": result.recovered, "failed": result.failed}


@huey.periodic_task(crontab(minute="*"), name="campaigns.resume_mass_messages")
def resume_mass_messages() -> int:
    """Every minute: queue every mass message left submitting or cancelling by a process that died."""
    found = submission.stalled(sessions())
    for org_id, message_id in found:
        log.info("resuming mass message %s of organization %s", message_id, org_id)
        submit_mass_message(org_id, message_id)
    return len(found)


@huey.on_startup()
def resume_at_start() -> None:
    """When a worker starts (each of its threads calls this; the first one acts): resume at once rather than
    at the next minute, so a worker restarted after a crash picks its submissions up straight away."""
    if _started.is_set():
        return
    _started.set()
    resume_mass_messages()
