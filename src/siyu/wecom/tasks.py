"""Background tasks of the WeCom channel: drain the callback inbox; sweep rows left unprocessed.

The inbox table is the queue. The callback endpoint commits rows and asks for a drain
(``request_drain``, coalesced by the inbox writer: one request per batch of callbacks, not one per
callback); ``drain_wecom_inbox`` then applies every unprocessed row in arrival order, so an
edit_external_contact is never applied before the add it follows.

Each row is applied by ``process_inbox_item`` in its own transaction, which claims the row
(processed_at set, attempts + 1) with its first statement and skips it if already claimed (another
drain, or the sweep, got there first): an event has its effect exactly once. A failure rolls the
effect back and records the error and attempt count on the row; the drain moves on to the next row.
The periodic ``sweep_wecom_inbox`` re-processes rows still unprocessed a minute after they arrived
(failed ones, or a crash between commit and drain request) up to ``MAX_ATTEMPTS``. Every night
``prune_wecom_inbox`` deletes rows processed more than ``INBOX_KEEP`` (30 days) ago, so the table holds
a month of callbacks rather than every callback ever received.

One drain at a time per process: a drain requested while another runs in the same process only asks
the running one for one more pass, so the request is never lost and rows are never raced for. Drains
in different worker processes (Redis storage) are safe too, through the per-row claim.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import cast

from huey import crontab
from sqlalchemy import and_, bindparam, select, update

from siyu.integrations.wecom import WeComClient
from siyu.kit.bulk import delete_in_batches
from siyu.kit.clock import utcnow
from siyu.wecom.callbacks import SOURCE
from siyu.wecom.credentials import callback_client
from siyu.wecom.models import InboxItem
from siyu.wecom.prefetch import Lookahead, Prefetch, PrefetchedClient
from siyu.wecom.processing import apply_event
from siyu.worker.queue import huey, sessions, settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
#: Processed callbacks are kept this long (audits, the console's figures), then deleted. WeCom re-sends
#: a callback within seconds, so the dedupe key needs far less; unprocessed rows are always kept.
INBOX_KEEP = timedelta(days=30)
PRUNE_BATCH = 10_000
SWEEP_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500
DRAIN_BATCH = 200
ALREADY_PROCESSED = "already processed or no such inbox row"


# Built once, claiming and reading the row in one statement: the worker runs it for every callback.
_CLAIM = (
    update(InboxItem.__table__)
    .where(InboxItem.id == bindparam("inbox_id"), InboxItem.processed_at.is_(None))
    .values(processed_at=bindparam("now"), attempts=InboxItem.attempts + 1, error=None)
    .returning(InboxItem.org_id, InboxItem.payload)
)


def _secret_key() -> str:
    return settings().resolved_secret_key()


def process_inbox_item(inbox_id: int, prefetch: Prefetch | None = None) -> str:
    """Apply one inbox row in its own transaction; returns the outcome ("already processed" for repeats).
    ``prefetch`` is the row's contact details fetched ahead by the drain, used in place of reading them."""
    factory = sessions()
    with factory() as db:
        try:
            # Claim the row with the transaction's first statement: on PostgreSQL a concurrent claim waits
            # for the row lock and then matches nothing; on SQLite the UPDATE takes the write lock and
            # reads the latest commit. Either way one transaction applies the event, and a rollback
            # releases the claim (and restores the error it cleared).
            claimed = db.execute(_CLAIM, {"inbox_id": inbox_id, "now": utcnow()}).first()
            if claimed is None:
                db.rollback()
                return ALREADY_PROCESSED
            org_id, payload = claimed
            client, welcome = callback_client(db, org_id, _secret_key)
            if client is not None and prefetch is not None:
                # Duck-typed: answers the one read it was prefetched for, passes every other call through.
                client = cast(WeComClient, PrefetchedClient(client, prefetch))
            outcome = apply_event(db, org_id, payload, client=client, welcome_text=welcome)
            db.commit()
            return outcome
        except Exception as exc:
            db.rollback()
            with factory.begin() as failed:
                failed.execute(
                    update(InboxItem)
                    .where(InboxItem.id == inbox_id)
                    .values(attempts=InboxItem.attempts + 1, error=f"{type(exc).__name__}: {exc}"[:2000])
                )
            raise


class _DrainGate:
    """Lets one drain run per process; a request meanwhile becomes one more pass of the running drain."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = False
        self._again = False

    def enter(self) -> bool:
        """True when the caller should drain; False when a running drain was asked for another pass."""
        with self._lock:
            if self._running:
                self._again = True
                return False
            self._running = True
            return True

    def another_pass(self) -> bool:
        """Called by the drain after a pass: True to go again, False (and released) when none was asked."""
        with self._lock:
            if self._again:
                self._again = False
                return True
            self._running = False
            return False

    def release(self) -> None:
        """Give the gate up after a failure."""
        with self._lock:
            self._running = self._again = False


_GATE = _DrainGate()


def drain() -> int:
    """Apply every unprocessed WeCom inbox row in id order; returns how many were applied."""
    if not _GATE.enter():
        return 0
    applied = 0
    try:
        while True:
            applied += _drain_pass()
            if not _GATE.another_pass():
                return applied
    except BaseException:
        _GATE.release()
        raise


def _drain_pass() -> int:
    applied = 0
    after = 0  # a row that fails is not retried in this pass: the sweep retries it later
    while True:
        with sessions()() as db:
            ids = list(
                db.scalars(
                    select(InboxItem.id)
                    .where(
                        InboxItem.source == SOURCE,
                        InboxItem.processed_at.is_(None),
                        InboxItem.attempts < MAX_ATTEMPTS,
                        InboxItem.id > after,
                    )
                    .order_by(InboxItem.id)
                    .limit(DRAIN_BATCH)
                )
            )
        if not ids:
            return applied
        applied += _apply_each(ids)
        after = ids[-1]


def _apply_each(ids: list[int]) -> int:
    """Apply these rows one by one; a failure is recorded on its row and does not stop the others. The
    contact details of the next few rows are fetched from WeCom meanwhile (``siyu.wecom.prefetch``)."""
    applied = 0
    with Lookahead(sessions(), _secret_key, ids) as ahead:
        for position, inbox_id in enumerate(ids):
            try:
                applied += process_inbox_item(inbox_id, ahead.take(position)) != ALREADY_PROCESSED
            except Exception:  # recorded on the row by process_inbox_item
                log.exception("WeCom inbox row %s failed", inbox_id)
    return applied


@huey.task(name="wecom.drain_inbox")
def drain_wecom_inbox() -> int:
    """Apply every unprocessed WeCom inbox row (idempotent; requested after callbacks are stored)."""
    return drain()


def request_drain() -> None:
    """Ask the worker to drain the inbox (runs inline when the queue is in immediate mode)."""
    drain_wecom_inbox()


def sweep(older_than: timedelta = SWEEP_AFTER, limit: int = SWEEP_BATCH) -> int:
    """Process unprocessed WeCom inbox rows older than ``older_than`` inline; returns how many succeeded."""
    cutoff = utcnow() - older_than
    with sessions()() as db:
        ids = list(
            db.scalars(
                select(InboxItem.id)
                .where(
                    InboxItem.source == SOURCE,
                    InboxItem.processed_at.is_(None),
                    InboxItem.received_at <= cutoff,
                    InboxItem.attempts < MAX_ATTEMPTS,
                )
                .order_by(InboxItem.id)
                .limit(limit)
            )
        )
    return _apply_each(ids)


@huey.periodic_task(crontab(minute="*"), name="wecom.sweep_inbox")
def sweep_wecom_inbox() -> int:
    """Every minute: re-process inbox rows left unprocessed (crash safety)."""
    return sweep()


def prune(keep: timedelta = INBOX_KEEP, batch: int = PRUNE_BATCH) -> int:
    """Delete WeCom inbox rows processed more than ``keep`` ago, ``batch`` rows per transaction (short locks,
    even after months of callbacks); returns how many were deleted."""
    cutoff = utcnow() - keep
    return delete_in_batches(
        sessions(),
        InboxItem.__table__,
        and_(InboxItem.source == SOURCE, InboxItem.processed_at < cutoff),
        batch,
    )


@huey.periodic_task(crontab(hour="20", minute="15"), name="wecom.prune_inbox")
def prune_wecom_inbox() -> int:
    """Nightly (04:15 Asia/Shanghai): delete processed callbacks older than INBOX_KEEP."""
    return prune()
