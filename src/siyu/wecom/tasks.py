"""Background tasks of the WeCom channel: process one inbox row; sweep rows left unprocessed.

``process_wecom_inbox(inbox_id)`` is enqueued by the callback endpoint after the inbox row is committed.
It claims the row (processed_at set, attempts + 1) in the transaction's first statement, skips it if
already claimed (a duplicate enqueue, or the sweep got there first), and applies the event in the
same transaction, so an event has its effect exactly
once. A failure rolls the effect back, records the error and attempt count, and Huey retries it.
The periodic ``sweep_wecom_inbox`` re-processes rows still unprocessed a minute after they arrived
(a crash between commit and enqueue, a lost task, retries exhausted) up to ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from huey import crontab
from sqlalchemy import select, update

from siyu.kit.clock import utcnow
from siyu.wecom.callbacks import SOURCE
from siyu.wecom.credentials import client_for, get_credentials, plain_credentials
from siyu.wecom.models import InboxItem
from siyu.wecom.processing import apply_event
from siyu.worker.queue import huey, sessions, settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
SWEEP_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500


def process_inbox_item(inbox_id: int) -> str:
    """Apply one inbox row in its own transaction; returns the outcome ("already processed" for repeats)."""
    factory = sessions()
    with factory() as db:
        try:
            # Claim the row with the transaction's first statement: on PostgreSQL a concurrent claim waits
            # for the row lock and then matches nothing; on SQLite the UPDATE takes the write lock and
            # reads the latest commit. Either way one transaction applies the event, and a rollback
            # releases the claim.
            claimed = db.execute(
                update(InboxItem).where(InboxItem.id == inbox_id, InboxItem.processed_at.is_(None))
                .values(processed_at=utcnow(), attempts=InboxItem.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                db.rollback()
                return "already processed or no such inbox row"
            item = db.get(InboxItem, inbox_id)
            assert item is not None
            creds_row = get_credentials(db, item.org_id)
            client = None
            welcome = ""
            if creds_row is not None:
                creds = plain_credentials(creds_row, settings().resolved_secret_key())
                client, welcome = client_for(creds), creds.welcome_text
            outcome = apply_event(db, item.org_id, item.payload, client=client, welcome_text=welcome)
            item.error = None
            db.commit()
            return outcome
        except Exception as exc:
            db.rollback()
            with factory.begin() as failed:
                failed.execute(
                    update(InboxItem).where(InboxItem.id == inbox_id)
                    .values(attempts=InboxItem.attempts + 1, error=f"{type(exc).__name__}: {exc}"[:2000])
                )
            raise


@huey.task(retries=3, retry_delay=5, name="wecom.process_inbox")
def process_wecom_inbox(inbox_id: int) -> str:
    """Process one WeCom inbox row (idempotent)."""
    return process_inbox_item(inbox_id)


def sweep(older_than: timedelta = SWEEP_AFTER, limit: int = SWEEP_BATCH) -> int:
    """Process unprocessed WeCom inbox rows older than ``older_than`` inline; returns how many succeeded."""
    cutoff = utcnow() - older_than
    with sessions()() as db:
        ids = list(db.scalars(
            select(InboxItem.id).where(
                InboxItem.source == SOURCE, InboxItem.processed_at.is_(None),
                InboxItem.received_at <= cutoff, InboxItem.attempts < MAX_ATTEMPTS,
            ).order_by(InboxItem.id).limit(limit)
        ))
    done = 0
    for inbox_id in ids:
        try:
            process_inbox_item(inbox_id)
            done += 1
        except Exception:  # recorded on the row by process_inbox_item; keep sweeping the others
            log.exception("inbox row %s failed again", inbox_id)
    return done


@huey.periodic_task(crontab(minute="*"), name="wecom.sweep_inbox")
def sweep_wecom_inbox() -> int:
    """Every minute: re-process inbox rows left unprocessed (crash safety)."""
    return sweep()
