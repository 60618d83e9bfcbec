"""Draining the transactional outbox: at least once, idempotent handlers, back-off, failures visible.

An outbox subscriber (``bus.subscribe(name, types, outbox=True)``) gets a row per event it wants, written
in the event's transaction. The worker drains due rows (``drain``): each row is leased with a claim-by-
update (its ``next_attempt_at`` pushed past the lease), handled in its own transaction by the handler
registered under the subscriber's name (``register_handler``), and marked done in that transaction.

* A crash after the claim leaves the row pending: the lease runs out and the row is handled again, so
  handlers must be idempotent (they are written to converge on the current state, not to replay a delta).
* A handler that raises ``RetryLater`` (a platform's rate limit) is retried after the delay it names,
  and that does not count as a failure.
* A handler that raises ``GiveUp`` (the platform refused the request itself: retrying cannot help) is
  ``failed`` at once.
* Any other exception is recorded on the row and retried after ``BACKOFF[attempts]``; after
  ``MAX_ATTEMPTS`` failures the row is ``failed`` and stays visible (``health``) until retried by hand
  (``retry_failed``, which asks for a drain when its transaction commits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.events.models import OutboxItem
from siyu.kit.bulk import delete_in_batches
from siyu.kit.clock import utcnow
from siyu.kit.db import transaction

log = logging.getLogger(__name__)

#: Delay before the next try after the n-th failure.
BACKOFF = (
    timedelta(seconds=10),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
#: How long a claimed row is left alone; a drain that crashed gives it up when this runs out.
LEASE = timedelta(minutes=5)
DRAIN_BATCH = 200
#: Done rows are kept this long (the settings pages count the last day's), then deleted.
KEEP_DONE = timedelta(days=7)
OUTBOX: Table = OutboxItem.__table__

OutboxHandler = Callable[[Session, OutboxItem], None]
_handlers: dict[str, OutboxHandler] = {}


class RetryLater(Exception):
    """Raised by a handler to be tried again after ``seconds`` (a rate limit), without counting a failure."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry in {seconds:.0f} s")
        self.seconds = seconds


class GiveUp(Exception):
    """Raised by a handler when trying again cannot help (the platform refused the request itself): the
    row is failed at once, with ``message``, instead of after every back-off."""


def register_handler(name: str, handler: OutboxHandler) -> None:
    """Say which function handles the outbox rows of subscriber ``name``."""
    _handlers[name] = handler


def _due_ids(db: Session, now: datetime, limit: int) -> list[int]:
    return list(
        db.scalars(
            select(OutboxItem.id)
            .where(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now)
            .order_by(OutboxItem.id)
            .limit(limit)
        )
    )


def _claim(db: Session, item_id: int, now: datetime) -> bool:
    claimed = db.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now)
        .values(next_attempt_at=now + LEASE)
        .execution_options(synchronize_session=False)
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def handle_one(factory: sessionmaker[Session], item_id: int) -> str:
    """Claim and handle one row in its own transaction; returns done, retry, failed or skipped."""
    now = utcnow()
    try:
        with transaction(factory) as db:
            if not _claim(db, item_id, now):
                return "skipped"
            item = db.get(OutboxItem, item_id)
            assert item is not None
            handler = _handlers.get(item.handler)
            if handler is None:
                raise LookupError(f"no outbox handler registered for {item.handler!r}")
            handler(db, item)
            item.status, item.done_at, item.last_error = "done", utcnow(), ""
            return "done"
    except RetryLater as exc:
        _record(factory, item_id, error=str(exc), delay=timedelta(seconds=exc.seconds), failure=False)
        return "retry"
    except GiveUp as exc:
        return _record(factory, item_id, error=str(exc), delay=None, failure=True, final=True)
    except Exception as exc:
        log.warning("outbox row %s failed: %s", item_id, exc)
        return _record(factory, item_id, error=f"{type(exc).__name__}: {exc}", delay=None, failure=True)


def _record(
    factory: sessionmaker[Session],
    item_id: int,
    *,
    error: str,
    delay: timedelta | None,
    failure: bool,
    final: bool = False,
) -> str:
    with transaction(factory) as db:
        item = db.get(OutboxItem, item_id)
        if item is None:
            return "skipped"
        item.last_error = error[:2000]
        if failure:
            item.attempts += 1
            if final or item.attempts >= MAX_ATTEMPTS:
                item.status = "failed"
                return "failed"
            delay = BACKOFF[item.attempts - 1]
        item.next_attempt_at = utcnow() + (delay or timedelta(0))
        return "retry"


def drain(factory: sessionmaker[Session], *, limit: int | None = None) -> dict[str, int]:
    """Handle every due row (at most ``limit``), oldest first; returns counts by outcome."""
    counts: dict[str, int] = {}
    handled = 0
    while limit is None or handled < limit:
        with transaction(factory) as db:
            ids = _due_ids(db, utcnow(), DRAIN_BATCH if limit is None else min(DRAIN_BATCH, limit - handled))
        if not ids:
            break
        for item_id in ids:
            outcome = handle_one(factory, item_id)
            counts[outcome] = counts.get(outcome, 0) + 1
            handled += 1
    return counts


@dataclass(frozen=True)
class OutboxHealth:
    """What an organization's outbox rows of one handler look like: for the settings pages."""

    pending: int
    retrying: int
    failed: int
    done_24h: int
    recent_errors: list[tuple[datetime, str, str]]  # (when queued, event type, error)


def health(db: Session, org_id: int, handler: str) -> OutboxHealth:
    """Counts of waiting, retrying, failed and recently done rows, and the latest errors in words."""
    base = (
        select(func.count())
        .select_from(OutboxItem)
        .where(OutboxItem.org_id == org_id, OutboxItem.handler == handler)
    )
    pending = db.scalar(base.where(OutboxItem.status == "pending", OutboxItem.attempts == 0)) or 0
    retrying = db.scalar(base.where(OutboxItem.status == "pending", OutboxItem.attempts > 0)) or 0
    failed = db.scalar(base.where(OutboxItem.status == "failed")) or 0
    done = (
        db.scalar(
            base.where(OutboxItem.status == "done", OutboxItem.done_at >= utcnow() - timedelta(hours=24))
        )
        or 0
    )
    errors = db.execute(
        select(OutboxItem.created_at, OutboxItem.event_type, OutboxItem.last_error)
        .where(OutboxItem.org_id == org_id, OutboxItem.handler == handler, OutboxItem.last_error != "")
        .where(OutboxItem.status != "done")
        .order_by(OutboxItem.id.desc())
        .limit(10)
    ).all()
    return OutboxHealth(int(pending), int(retrying), int(failed), int(done), [tuple(r) for r in errors])  # type: ignore[misc]


def retry_failed(db: Session, org_id: int, handler: str) -> int:
    """Put an organization's failed rows of ``handler`` back in the queue (after the cause was fixed)."""
    result = db.execute(
        update(OutboxItem)
        .where(OutboxItem.org_id == org_id, OutboxItem.handler == handler, OutboxItem.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    retried = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if retried:
        db.info["siyu_outbox_written"] = True  # the commit asks the worker for a drain
    return retried


def prune(factory: sessionmaker[Session], keep: timedelta = KEEP_DONE) -> int:
    """Delete rows done more than ``keep`` ago, in short transactions; failed and pending rows are kept."""
    condition = (OutboxItem.status == "done") & (OutboxItem.done_at < utcnow() - keep)
    return delete_in_batches(factory, OUTBOX, condition)
