"""Health of the WeCom callback inbox for the console: what arrived, waits, fails, and was given up.

A broken callback URL shows as nothing received; a stuck worker as a growing number waiting; a bug in
processing as failing rows with their errors. Every figure is an aggregate over the index
``ix_inbox_source_processed_at_id`` (source, processed_at, id): the rows of interest are the
unprocessed ones (processed_at NULL) and the recently processed ones, never the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from siyu.kit.clock import utcnow
from siyu.wecom.callbacks import SOURCE
from siyu.wecom.models import InboxItem
from siyu.wecom.tasks import MAX_ATTEMPTS

WINDOW = timedelta(hours=24)
RECENT_ERRORS = 5


@dataclass(frozen=True)
class InboxError:
    """One unprocessed callback that failed: its event kind, the last error and how often it was tried."""

    kind: str
    error: str
    attempts: int
    received_at: datetime
    given_up: bool


@dataclass(frozen=True)
class InboxHealth:
    """Callback inbox figures of one organization.

    waiting counts every unprocessed row; of those, failing ones failed at least once and are still
    retried by the sweep, given_up ones reached ``max_attempts`` and are retried no more.
    """

    received_24h: int
    waiting: int
    failing: int
    given_up: int
    last_received_at: datetime | None
    max_attempts: int = MAX_ATTEMPTS
    recent_errors: list[InboxError] = field(default_factory=list)


def inbox_health(db: Session, org_id: int) -> InboxHealth:
    """Count the organization's WeCom callbacks received in the last 24 h, waiting, failing and given up.

    A row received in the window is either unprocessed or processed after it arrived, so restricting
    to ``processed_at IS NULL OR processed_at >= cutoff`` (two ranges of the index) loses none of them.
    Only when nothing arrived in the window is the last arrival looked up among all the organization's
    rows (through the (org_id, source, external_key) unique index), which is the case to alarm about.
    """
    cutoff = utcnow() - WINDOW
    unprocessed = InboxItem.processed_at.is_(None)
    retried = InboxItem.attempts.between(1, MAX_ATTEMPTS - 1)
    row = db.execute(
        select(
            func.count().filter(InboxItem.received_at >= cutoff),
            func.count().filter(unprocessed),
            func.count().filter(unprocessed, retried),
            func.count().filter(unprocessed, InboxItem.attempts >= MAX_ATTEMPTS),
            func.max(InboxItem.received_at),
        ).where(
            InboxItem.source == SOURCE,
            or_(unprocessed, InboxItem.processed_at >= cutoff),
            InboxItem.org_id == org_id,
        )
    ).one()
    received, waiting, failing, given_up, last_in_window = row
    last: datetime | None = last_in_window
    if not received:
        last = db.scalar(
            select(func.max(InboxItem.received_at)).where(
                InboxItem.org_id == org_id, InboxItem.source == SOURCE
            )
        )
    errors = db.execute(
        select(InboxItem.kind, InboxItem.error, InboxItem.attempts, InboxItem.received_at)
        .where(InboxItem.source == SOURCE, unprocessed, InboxItem.org_id == org_id, InboxItem.attempts >= 1)
        .order_by(InboxItem.id.desc())
        .limit(RECENT_ERRORS)
    ).all()
    return InboxHealth(
        received_24h=received,
        waiting=waiting,
        failing=failing,
        given_up=given_up,
        last_received_at=last,
        recent_errors=[
            InboxError(
                kind=kind,
                error=error or "",
                attempts=attempts,
                received_at=received_at,
                given_up=attempts >= MAX_ATTEMPTS,
            )
            for kind, error, attempts, received_at in errors
        ],
    )
