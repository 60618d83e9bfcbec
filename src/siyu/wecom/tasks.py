"""Background tasks of the WeCom channel: drain the callback inbox; sweep rows left unprocessed.

The inbox table is the queue. The callback endpoint commits rows and asks for a drain
(``request_drain``, coalesced by the inbox writer: one request per batch of callbacks, not one per
callback); ``drain_wecom_inbox`` then applies every unprocessed row.

Order. Each row carries a ``partition_key`` (``siyu.wecom.callbacks.partition_key``): the contact, the
group chat or the tag library it is about. Rows of one key are applied in arrival (id) order, so an
edit_external_contact is never applied before the add it follows.

Batches. A pass repeatedly takes the first waiting row of up to ``BATCH_SIZE`` keys (chosen, and their
contact details read, while the previous batch is applied: the two batches share no key). Their contact
details are read from WeCom first, ``DRAIN_WORKERS`` reads at a time (``siyu.wecom.prefetch``); then the rows
``contact_batch.batchable`` names (adds without a welcome code, edits, deletions) are claimed and applied
set-wise in ONE transaction (``contact_batch.apply_contact_batch``: the customers bulk writer, events and
stage rules included), with the organization's credentials read once. The other rows (welcome sends,
add_half, hand-overs, groups, the tag library) are applied one per transaction by ``DRAIN_WORKERS``
workers, each key's rows to the worker ``crc32(key) % workers``. A key's next row is only taken by a later
batch, after the batch holding its previous row committed. If a batch fails, its rows are applied one by
one (each as below), so one bad row cannot hold back the others.

Exactly once, and order across processes. A row applied on its own is applied by ``process_inbox_item`` in
its own transaction, which claims the row (processed_at set, attempts + 1) with its first statement; a
batch claims all its rows with one statement of the same conditions. The claim matches only a row not yet
claimed and with no earlier row of the same key still waiting (unprocessed and below ``MAX_ATTEMPTS``). So
another drain (another process, the sweep) that holds an earlier row of the key, or got this row first,
makes the claim match nothing: on PostgreSQL a concurrent claim of the same row waits for the row lock and
then matches nothing, and a claim whose earlier row is claimed but not committed still sees that row
waiting; on SQLite the UPDATE takes the write lock and reads the latest commit. A rollback releases the
claim (and restores the error it cleared).

Failures. A failure rolls the effect back and records the error and attempt count on the row. The row keeps
blocking the later rows of its key (they are skipped for the rest of the pass and refused by the claim)
until a later pass or the sweep applies it, or it has failed ``MAX_ATTEMPTS`` times and is given up: a later
event of a contact is never applied before an earlier one that may still succeed. Conflicts between
concurrent transactions (a deadlock, a serialization failure, a unique key inserted meanwhile by another
row's transaction, SQLite's "database is locked") are not failures of the row: it is retried at once, up to
``CONFLICT_RETRIES`` times; a row SQLite still finds locked is left waiting, without an attempt counted.

SQLite has one writer at a time: the batches and workers of a process take turns at writing (a lock held
from the claim to the commit, instead of SQLite's busy wait, which sleeps in growing steps), while the slow
part, reading the contacts from WeCom (``siyu.wecom.prefetch``), happens before the claim.

The periodic ``sweep_wecom_inbox`` re-processes rows still unprocessed a minute after they arrived (failed
ones, or a crash between commit and drain request) up to ``MAX_ATTEMPTS``. Every night ``prune_wecom_inbox``
deletes rows processed longer ago than the organization's webhook retention (30 days unless set on the audit
page or by ``SIYU_WEBHOOK_RETENTION_DAYS``), so the table holds a month of callbacks rather than every
callback ever received.

One drain at a time per process: a drain requested while another runs in the same process only asks the
running one for one more pass, so the request is never lost.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from huey import crontab
from sqlalchemy import Update, and_, any_, bindparam, exists, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from siyu.integrations.wecom import WeComClient
from siyu.kit.bulk import delete_in_batches, one_of, one_of_param
from siyu.kit.clock import utcnow
from siyu.tenancy import service as tenancy
from siyu.wecom.callbacks import SOURCE
from siyu.wecom.contact_batch import apply_contact_batch, batchable
from siyu.wecom.credentials import callback_client
from siyu.wecom.dispatch import apply_event
from siyu.wecom.models import InboxItem
from siyu.wecom.prefetch import Prefetch, PrefetchedClient, fetch_contact, fetch_contacts
from siyu.worker.queue import huey, sessions, settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
#: Processed callbacks are kept this long (audits, the console's figures), then deleted. WeCom re-sends
#: a callback within seconds, so the dedupe key needs far less; unprocessed rows are always kept.
PRUNE_BATCH = 10_000
SWEEP_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500
DRAIN_BATCH = 500
#: Drain workers of a pass: keys applied at once. Past the number of WeCom reads and database round trips
#: that can usefully overlap, more only contend for the interpreter.
DRAIN_WORKERS = 8
MAX_WORKERS = 16
#: Rows a worker may have queued ahead of it; the pass's reader waits when one is that far behind.
WORKER_QUEUE = 1_000
CONFLICT_RETRIES = 5
#: Keys a batch takes (the first waiting row of each), claimed and applied in one transaction. Larger
#: batches spread the per-statement costs thinner but hold their locks longer and redo more when one row
#: fails (the batch then falls back to one row at a time).
BATCH_SIZE = 2000
ALREADY_PROCESSED = "already processed or no such inbox row"
WAITING_FOR_EARLIER = "waiting for an earlier event of the same key"
DATABASE_BUSY = "left waiting: the database stayed locked"
_NOT_APPLIED = frozenset({ALREADY_PROCESSED, WAITING_FOR_EARLIER, DATABASE_BUSY})

_inbox = InboxItem.__table__
_earlier = _inbox.alias("earlier")
# No earlier row of the same key still waiting: answered by the partial index over waiting rows
# (partition_key, id).
_FIRST_OF_KEY = ~exists().where(
    _earlier.c.partition_key == _inbox.c.partition_key,
    _earlier.c.id < _inbox.c.id,
    _earlier.c.processed_at.is_(None),
    _earlier.c.org_id == _inbox.c.org_id,
    _earlier.c.source == _inbox.c.source,
    _earlier.c.attempts < MAX_ATTEMPTS,
)
# Built once, claiming and reading the row in one statement: the worker runs it for every callback.
_CLAIM = (
    update(_inbox)
    .where(_inbox.c.id == bindparam("inbox_id"), _inbox.c.processed_at.is_(None), _FIRST_OF_KEY)
    .values(processed_at=bindparam("now"), attempts=_inbox.c.attempts + 1, error=None)
    .returning(_inbox.c.org_id, _inbox.c.payload)
)


def _claim_many(dialect: str) -> Update:
    """``_CLAIM`` of a batch's rows (``ids``, the highest ``top``) in one statement, for one dialect (see
    ``one_of_param``).

    Only the first waiting row of each of the batch's keys (``keys``) is claimed: a grouped scan of the
    keys' waiting rows up to ``top`` (a row above the batch's highest id is never earlier than one of its
    rows), since a per-row NOT EXISTS probe turns into a scan of every earlier waiting row per candidate
    when PostgreSQL has no statistics on the inbox yet (a fresh table, a burst of callbacks). On PostgreSQL
    the scan's answer is an array computed once: as a join, the same missing statistics made it probe a
    whole waiting-rows index once per claimed row."""
    first_waiting = (
        select(func.min(_earlier.c.id))
        .where(
            _earlier.c.source == SOURCE,
            _earlier.c.processed_at.is_(None),
            _earlier.c.attempts < MAX_ATTEMPTS,
            _earlier.c.id <= bindparam("top"),
            one_of_param(dialect, _earlier.c.partition_key, "keys"),
        )
        .group_by(_earlier.c.org_id, _earlier.c.partition_key)
    )
    first = (
        _inbox.c.id == any_(func.array(first_waiting.scalar_subquery()))
        if dialect == "postgresql"
        else _inbox.c.id.in_(first_waiting)
    )
    return (
        update(_inbox)
        .where(one_of_param(dialect, _inbox.c.id, "ids"), _inbox.c.processed_at.is_(None), first)
        .values(processed_at=bindparam("now"), attempts=_inbox.c.attempts + 1, error=None)
        .returning(_inbox.c.id)
    )


# Built once per dialect: the drain runs it for every batch.
_CLAIM_MANY = {dialect: _claim_many(dialect) for dialect in ("postgresql", "sqlite")}
_STILL_WAITING = select(_inbox.c.id).where(
    _inbox.c.id == bindparam("inbox_id"), _inbox.c.processed_at.is_(None)
)
#: PostgreSQL SQLSTATEs of a conflict with a concurrent transaction: deadlock, serialization failure, a
#: unique key inserted meanwhile, a lock not available.
_PG_CONFLICTS = frozenset({"40P01", "40001", "23505", "55P03"})
#: The workers of this process write to SQLite one at a time (see the module docstring).
_SQLITE_WRITER = threading.Lock()
_POOL = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="wecom-drain")
#: Chooses the next batch and runs its WeCom reads (on ``_POOL``) while a batch is applied.
_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wecom-read-ahead")


def _secret_key() -> str:
    return settings().resolved_secret_key()


def _sqlite_locked(exc: BaseException) -> bool:
    # "database is locked" (busy past the timeout) or "database table is locked"
    return isinstance(exc, DBAPIError) and "is locked" in str(exc.orig)


def _conflict(exc: BaseException) -> bool:
    """A clash with a concurrent transaction, which a retry of the row resolves."""
    if not isinstance(exc, DBAPIError):
        return False
    return getattr(exc.orig, "sqlstate", None) in _PG_CONFLICTS or _sqlite_locked(exc)


def process_inbox_item(inbox_id: int, prefetch: Prefetch | None = None) -> str:
    """Apply one inbox row in its own transaction; returns the outcome (``ALREADY_PROCESSED`` for repeats,
    ``WAITING_FOR_EARLIER`` while an earlier row of its key waits). ``prefetch`` is the row's contact details
    read by the drain before the claim, used in place of reading them inside the transaction."""
    factory = sessions()
    sqlite = factory.kw["bind"].dialect.name == "sqlite"
    writer = _SQLITE_WRITER if sqlite else contextlib.nullcontext()
    retry = 0
    while True:
        with writer, factory() as db:
            try:
                return _apply(db, inbox_id, prefetch)
            except Exception as exc:
                db.rollback()
                if not (_conflict(exc) and retry < CONFLICT_RETRIES):
                    if _sqlite_locked(exc):
                        log.warning("WeCom inbox row %s: the database stayed locked; left waiting", inbox_id)
                        return DATABASE_BUSY
                    _record_failure(factory, inbox_id, exc)
                    raise
                log.info("WeCom inbox row %s clashed with another transaction; retrying", inbox_id)
        time.sleep(0.005 * 2**retry)  # outside the writer lock: lets the other transaction finish
        retry += 1


def _apply(db: Session, inbox_id: int, prefetch: Prefetch | None) -> str:
    # Claim the row with the transaction's first statement (see the module docstring).
    claimed = db.execute(_CLAIM, {"inbox_id": inbox_id, "now": utcnow()}).first()
    if claimed is None:
        waiting = db.execute(_STILL_WAITING, {"inbox_id": inbox_id}).first() is not None
        db.rollback()
        return WAITING_FOR_EARLIER if waiting else ALREADY_PROCESSED
    org_id, payload = claimed
    client, welcome = callback_client(db, org_id, _secret_key)
    if client is not None and prefetch is not None:
        # Duck-typed: answers the one read it was prefetched for, passes every other call through.
        client = cast(WeComClient, PrefetchedClient(client, prefetch))
    outcome = apply_event(db, org_id, payload, client=client, welcome_text=welcome)
    db.commit()
    return outcome


def _record_failure(factory: sessionmaker[Session], inbox_id: int, exc: Exception) -> None:
    """Count the failed attempt and keep its error on the row (the claim was rolled back)."""
    try:
        with factory.begin() as failed:
            failed.execute(
                update(InboxItem)
                .where(InboxItem.id == inbox_id)
                .values(attempts=InboxItem.attempts + 1, error=f"{type(exc).__name__}: {exc}"[:2000])
            )
    except Exception:  # the row stays waiting with its previous count; the next pass tries it again
        log.exception("could not record the failure of WeCom inbox row %s", inbox_id)


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


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A row to apply, as the pass read it."""

    id: int
    org_id: int
    partition_key: str
    payload: dict[str, Any]


_WAITING_ROWS = select(InboxItem.id, InboxItem.org_id, InboxItem.partition_key, InboxItem.payload).where(
    InboxItem.source == SOURCE, InboxItem.processed_at.is_(None), InboxItem.attempts < MAX_ATTEMPTS
)


def drain(workers: int = 0, batch: int = BATCH_SIZE) -> int:
    """Apply every unprocessed WeCom inbox row, each key's rows in id order, up to ``batch`` keys per
    transaction with their WeCom reads made ``workers`` at a time (default ``DRAIN_WORKERS``); returns how
    many were applied. ``batch=0`` applies every row in its own transaction (``workers`` keys at once)."""
    if not _GATE.enter():
        return 0
    applied = 0
    workers = max(1, min(workers or DRAIN_WORKERS, MAX_WORKERS))
    try:
        while True:
            if batch > 0:
                applied += _batched_pass(workers, batch)
            else:
                applied += _run_pass(_waiting_rows(), workers)[0]
            if not _GATE.another_pass():
                return applied
    except BaseException:
        _GATE.release()
        raise


def _waiting_rows() -> Iterator[_Waiting]:
    """Every waiting row in id order, read ``DRAIN_BATCH`` at a time."""
    after = 0
    while True:
        with sessions()() as db:
            rows = db.execute(
                _WAITING_ROWS.where(InboxItem.id > after).order_by(InboxItem.id).limit(DRAIN_BATCH)
            ).all()
        if not rows:
            return
        for row in rows:
            yield _Waiting(row.id, row.org_id, row.partition_key, row.payload)
        after = rows[-1].id


def _heads(held: set[tuple[int, str]], size: int, received_before: datetime | None) -> list[_Waiting]:
    """The first waiting row of up to ``size`` keys, not of the keys ``held`` back this pass: the waiting
    rows read in id order (``DRAIN_BATCH`` at a time), each key's first one taken."""
    stmt = select(InboxItem.id, InboxItem.org_id, InboxItem.partition_key).where(
        InboxItem.source == SOURCE, InboxItem.processed_at.is_(None), InboxItem.attempts < MAX_ATTEMPTS
    )
    if received_before is not None:
        stmt = stmt.where(InboxItem.received_at <= received_before)
    seen = set(held)
    heads: dict[int, tuple[int, str]] = {}
    after = 0
    with sessions()() as db:
        while len(heads) < size:
            rows = db.execute(
                stmt.where(InboxItem.id > after).order_by(InboxItem.id).limit(DRAIN_BATCH)
            ).all()
            for row in rows:
                key = (row.org_id, row.partition_key)
                if key not in seen:
                    seen.add(key)
                    heads[row.id] = key
                    if len(heads) == size:
                        break
            if len(rows) < DRAIN_BATCH:
                break
            after = rows[-1].id
        if not heads:
            return []
        found = db.execute(select(InboxItem.id, InboxItem.payload).where(one_of(db, InboxItem.id, heads)))
        payloads: dict[int, dict[str, Any]] = {int(i): p for i, p in found}
    return [_Waiting(i, org_id, key, payloads[i]) for i, (org_id, key) in heads.items()]


def _batched_pass(workers: int, size: int, received_before: datetime | None = None, limit: int = 0) -> int:
    """Apply waiting rows a batch at a time until none is left (or ``limit`` rows were taken); returns how
    many were applied. A batch holds the first waiting row of each of its keys, so a key's next row is in a
    later batch, claimed after this one committed. Rows ``batchable`` by ``contact_batch`` are applied in one
    transaction; the others each in their own, ``workers`` keys at a time. A key whose row failed or must
    wait is held back for the rest of the pass.

    The next batch is chosen among the other keys, and its WeCom reads are made, while a batch is applied:
    its rows are already the first waiting rows of their keys, so each read still starts after the row
    before it was applied (see ``siyu.wecom.prefetch``)."""
    held: set[tuple[int, str]] = set()
    applied = taken = 0

    def ahead(exclude: set[tuple[int, str]]) -> Future[tuple[list[_Waiting], dict[int, Prefetch | None]]]:
        room = min(size, limit - taken) if limit else size
        return _read_ahead(set(exclude), room, received_before, workers)

    batch, reads = ahead(held).result()
    while batch:
        taken += len(batch)
        upcoming = ahead(held | {_key(r) for r in batch})
        together = [h for h in batch if batchable(h.payload)]
        if together:
            done, waiting = _apply_batch(together, reads)
            applied += done
            held |= waiting
        alone = [h for h in batch if not batchable(h.payload)]
        if alone:
            done, waiting = _run_pass(alone, workers)
            applied += done
            held |= waiting
        following, reads = upcoming.result()
        batch = [r for r in following if _key(r) not in held]
        if not batch:  # the keys of the batch just applied may have rows left
            batch, reads = ahead(held).result()
    return applied


def _key(row: _Waiting) -> tuple[int, str]:
    return (row.org_id, row.partition_key)


def _read_ahead(
    exclude: set[tuple[int, str]], room: int, received_before: datetime | None, workers: int
) -> Future[tuple[list[_Waiting], dict[int, Prefetch | None]]]:
    """Start choosing the next batch (``_heads``) and making the WeCom reads of its batchable rows
    (``workers`` at a time); the future answers the batch and its reads by inbox id."""

    def read() -> tuple[list[_Waiting], dict[int, Prefetch | None]]:
        rows = _heads(exclude, room, received_before) if room > 0 else []
        together = [r for r in rows if batchable(r.payload)]
        found = fetch_contacts(
            sessions(), [(r.org_id, r.payload) for r in together], _secret_key, _POOL, workers
        )
        return rows, {r.id: p for r, p in zip(together, found, strict=True)}

    return _READER.submit(read)


def _apply_batch(rows: list[_Waiting], reads: dict[int, Prefetch | None]) -> tuple[int, set[tuple[int, str]]]:
    """Claim and apply ``rows`` (distinct keys) in one transaction, with the WeCom reads made for them
    beforehand; if that fails, each row on its own. Returns how many were applied and the keys to hold
    back."""
    factory = sessions()
    prefetched = [reads.get(r.id) for r in rows]
    sqlite = factory.kw["bind"].dialect.name == "sqlite"
    try:
        with _SQLITE_WRITER if sqlite else contextlib.nullcontext(), factory() as db:
            claim = {
                "ids": [r.id for r in rows],
                "top": max(r.id for r in rows),
                "keys": sorted({r.partition_key for r in rows}),
                "now": utcnow(),
            }
            claimed = set(db.scalars(_CLAIM_MANY[factory.kw["bind"].dialect.name], claim))
            mine = [(r, p) for r, p in zip(rows, prefetched, strict=True) if r.id in claimed]
            for org_id in sorted({r.org_id for r, _ in mine}):
                of_org = [(r, p) for r, p in mine if r.org_id == org_id]
                client, welcome = callback_client(db, org_id, _secret_key)
                clients = [_client_for(client, p) for _, p in of_org]
                apply_contact_batch(db, org_id, [r.payload for r, _ in of_org], clients, welcome_text=welcome)
            db.commit()
    except Exception:
        log.warning(
            "a batch of %s WeCom inbox rows failed; applying them one by one", len(rows), exc_info=True
        )
        return _one_by_one(rows, prefetched)
    # Rows another drain claimed first, or held back by an earlier row it holds: that drain applies them.
    return len(claimed), {(r.org_id, r.partition_key) for r in rows if r.id not in claimed}


def _client_for(client: WeComClient | None, prefetch: Prefetch | None) -> WeComClient | None:
    if client is None or prefetch is None:
        return client
    # Duck-typed: answers the one read it was prefetched for, passes every other call through.
    return cast(WeComClient, PrefetchedClient(client, prefetch))


def _one_by_one(rows: list[_Waiting], prefetched: list[Prefetch | None]) -> tuple[int, set[tuple[int, str]]]:
    """A failed batch's rows, each in its own transaction: one bad row does not hold back the others."""
    applied = 0
    held: set[tuple[int, str]] = set()
    for row, prefetch in zip(rows, prefetched, strict=True):
        try:
            outcome = process_inbox_item(row.id, prefetch)
        except Exception:  # recorded on the row by process_inbox_item
            log.exception("WeCom inbox row %s failed", row.id)
            held.add((row.org_id, row.partition_key))
            continue
        if outcome in _NOT_APPLIED:
            if outcome != ALREADY_PROCESSED:
                held.add((row.org_id, row.partition_key))
        else:
            applied += 1
    return applied, held


def _run_pass(rows: Iterable[_Waiting], workers: int) -> tuple[int, set[tuple[int, str]]]:
    """Hand each row to the worker of its key and wait for all of them; returns how many were applied and
    the keys held back (a row failed or must wait)."""
    workers = max(1, min(workers, MAX_WORKERS))
    queues: list[queue.Queue[_Waiting | None]] = [queue.Queue(WORKER_QUEUE) for _ in range(workers)]
    futures = [_POOL.submit(_work, q) for q in queues]
    try:
        for row in rows:
            queues[zlib.crc32(row.partition_key.encode()) % workers].put(row)
    finally:
        for q in queues:
            q.put(None)
    applied = 0
    held: set[tuple[int, str]] = set()
    for f in futures:
        done, waiting = f.result()
        applied += done
        held |= waiting
    return applied, held


def _work(rows: queue.Queue[_Waiting | None]) -> tuple[int, set[tuple[int, str]]]:
    """One drain worker: apply its rows in order. A key whose row failed or must wait is skipped for the
    rest of the pass (its later rows would only be refused by the claim)."""
    applied = 0
    held: set[tuple[int, str]] = set()
    factory = sessions()
    for row in iter(rows.get, None):
        key = (row.org_id, row.partition_key)
        if key in held:
            continue
        try:
            # Read from WeCom before the claim: the previous row of this contact is applied by now.
            prefetch = fetch_contact(factory, row.org_id, row.payload, _secret_key)
            outcome = process_inbox_item(row.id, prefetch)
        except Exception:  # recorded on the row by process_inbox_item
            log.exception("WeCom inbox row %s failed", row.id)
            held.add(key)
            continue
        if outcome in _NOT_APPLIED:
            if outcome != ALREADY_PROCESSED:
                held.add(key)
        else:
            applied += 1
    return applied, held


@huey.task(name="wecom.drain_inbox")
def drain_wecom_inbox() -> int:
    """Apply every unprocessed WeCom inbox row (idempotent; requested after callbacks are stored)."""
    return drain()


def request_drain() -> None:
    """Ask the worker to drain the inbox (runs inline when the queue is in immediate mode)."""
    drain_wecom_inbox()


def sweep(older_than: timedelta = SWEEP_AFTER, limit: int = SWEEP_BATCH) -> int:
    """Process up to ``limit`` unprocessed WeCom inbox rows older than ``older_than`` now (each key's in
    order, in batches as the drain does); returns how many succeeded."""
    return _batched_pass(DRAIN_WORKERS, BATCH_SIZE, utcnow() - older_than, limit)


@huey.periodic_task(crontab(minute="*"), name="wecom.sweep_inbox")
def sweep_wecom_inbox() -> int:
    """Every minute: re-process inbox rows left unprocessed (crash safety)."""
    return sweep()


def _webhook_days(keep: timedelta | None) -> dict[int, float]:
    defaults = tenancy.default_retention(settings())
    with sessions()() as db:
        return tenancy.webhook_days_by_org(db, defaults, keep)


def prune(keep: timedelta | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete WeCom inbox rows processed more than ``keep`` ago (default: each organization's webhook
    retention, see ``tenancy.service.retention_of``), ``batch`` rows per transaction (short locks, even after
    months of callbacks); returns how many were deleted."""
    now = utcnow()
    deleted = 0
    for org_id, days in _webhook_days(keep).items():
        deleted += delete_in_batches(
            sessions(),
            InboxItem.__table__,
            and_(
                InboxItem.org_id == org_id,
                InboxItem.source == SOURCE,
                InboxItem.processed_at < now - timedelta(days=days),
            ),
            batch,
        )
    return deleted


@huey.periodic_task(crontab(hour="20", minute="15"), name="wecom.prune_inbox")
def prune_wecom_inbox() -> int:
    """Nightly (04:15 Asia/Shanghai): delete processed callbacks older than each organization's retention."""
    return prune()
