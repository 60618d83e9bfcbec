"""Domain events: append to the event log and tell the subscribers, in the writer's transaction.

Every change of customer state appends an event (``emit`` / ``emit_many``) in the same transaction
as the change, so the log and the tables can never disagree. Subscribers are registered in one place,
``siyu/subscriptions.py`` (loaded on the first emit), and come in two kinds:

* in-transaction subscribers run at once, inside the writer's transaction, on the batch of new events
  (the stage rules): what they write commits or rolls back with the change itself;
* outbox subscribers get one outbox row per event they want, written in the same transaction; the
  worker drains the outbox after commit (``siyu.events.outbox``): at least once, retried with back-off,
  failures visible. Work that leaves the database (a call to WeCom) always goes this way.

Events are idempotent by ``(org_id, idempotency_key)``: emitting a key that is already stored adds
nothing and tells nobody. A key left empty is made unique.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.orm import Session

from siyu.events.models import Event, OutboxItem
from siyu.kit.bulk import driver_datetime, insert_ignore, insert_rows, insert_rows_returning
from siyu.kit.clock import ensure_utc, utcnow

EVENTS: Table = Event.__table__
OUTBOX: Table = OutboxItem.__table__
SUBSCRIPTIONS_MODULE = "siyu.subscriptions"
#: Subscribers may emit (the stage rules emit stage_changed); deeper chains mean a loop.
MAX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """One thing that happened to a customer, as handed to ``emit`` and to subscribers."""

    org_id: int
    customer_id: int
    type: str
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    account_id: int | None = None
    source: str | None = None
    key: str = ""
    #: A past fact written late (a first sync's history): dated by when it happened, flagged so that
    #: "new today" figures and triggers do not take it for today's news.
    backfill: bool = False

    @property
    def origin(self) -> str:
        """Where the change came from (``properties["origin"]``), "" if not said."""
        return str(self.properties.get("origin") or "")


InTransactionHandler = Callable[[Session, Sequence[DomainEvent]], None]
Wants = Callable[[Session, DomainEvent], bool]


@dataclass(frozen=True)
class Subscription:
    """A subscriber: its name, the types it reacts to (None: all), and how it runs."""

    name: str
    types: frozenset[str] | None
    handler: InTransactionHandler | None
    outbox: bool
    wants: Wants | None


_subscriptions: dict[str, Subscription] = {}
_state: dict[str, Any] = {"loaded": False, "on_outbox_commit": None}


def subscribe(
    name: str,
    types: Collection[str] | None,
    handler: InTransactionHandler | None = None,
    *,
    outbox: bool = False,
    wants: Wants | None = None,
) -> None:
    """Register a subscriber (from ``siyu/subscriptions.py``). In-transaction subscribers give a
    ``handler``; outbox subscribers give ``outbox=True`` and run through ``siyu.events.outbox`` handlers
    registered under the same name. ``wants`` filters single events (cheap checks only)."""
    if outbox == (handler is not None):
        raise ValueError("a subscriber either runs in the transaction (handler) or through the outbox")
    _subscriptions[name] = Subscription(
        name, frozenset(types) if types is not None else None, handler, outbox, wants
    )


def subscriptions() -> list[Subscription]:
    """The registered subscribers, loading ``siyu/subscriptions.py`` first if nobody has."""
    _ensure_loaded()
    return list(_subscriptions.values())


def reacts_to(types: Collection[str]) -> bool:
    """Whether any subscriber reacts to one of ``types`` (so a bulk writer knows to dispatch)."""
    wanted = set(types)
    return any(sub.types is None or sub.types & wanted for sub in subscriptions())


def _ensure_loaded() -> None:
    if not _state["loaded"]:
        # Imported by name: the registry imports every domain, and no domain may import it.
        importlib.import_module(SUBSCRIPTIONS_MODULE)
        _state["loaded"] = True


def on_outbox_commit(callback: Callable[[], None] | None) -> None:
    """Call ``callback`` after each commit that wrote outbox rows (the worker's drain request)."""
    _state["on_outbox_commit"] = callback


def new_key(type_: str) -> str:
    """A unique idempotency key for an event with no natural one."""
    return f"{type_}:{uuid.uuid4().hex}"


def emit(db: Session, ev: DomainEvent) -> bool:
    """Append one event and tell the subscribers; False when its key was already stored."""
    return bool(emit_many(db, [ev]))


def emit_many(db: Session, events: Sequence[DomainEvent]) -> list[DomainEvent]:
    """Append events set-wise (stored keys skipped) and dispatch the new ones; returns them.

    Events without a key cannot clash, so they are written without a conflict check, in the bulk
    writers' fastest form (``kit.bulk.insert_rows``); keyed ones ask back which keys went in. A first
    WeCom sync writes a few hundred thousand events this way."""
    if not events:
        return []
    _ensure_loaded()
    db.flush()  # subscribers read the state the events describe
    fresh: list[DomainEvent] = []
    keyed: dict[tuple[int, str], DomainEvent] = {}
    batch = uuid.uuid4().hex  # unkeyed events get "<type>:<batch>:<n>": unique, and cheap by the 100,000
    for n, ev in enumerate(events):
        if ev.key:
            keyed.setdefault((ev.org_id, ev.key), ev)
        else:
            fresh.append(_with_key(ev, f"{ev.type}:{batch}:{n}"))
    stamp = driver_datetime(db)
    received = stamp(utcnow())
    new = list(fresh)
    insert_rows(db, EVENTS, [_row(ev, stamp, received) for ev in fresh])
    if keyed:
        stored = {
            (org, key)
            for org, key in insert_rows_returning(
                db,
                EVENTS,
                [_row(ev, stamp, received) for ev in keyed.values()],
                ["org_id", "idempotency_key"],
                ["org_id", "idempotency_key"],
            )
        }
        new.extend(ev for k, ev in keyed.items() if k in stored)
    dispatch(db, new)
    return new


def _with_key(ev: DomainEvent, key: str) -> DomainEvent:
    # Spelled out: dataclasses.replace inspects the fields on every call, 20 µs an event.
    return DomainEvent(
        ev.org_id,
        ev.customer_id,
        ev.type,
        ev.occurred_at,
        ev.properties,
        ev.account_id,
        ev.source,
        key,
        ev.backfill,
    )


def _row(ev: DomainEvent, stamp: Callable[[datetime], Any], received: Any) -> dict[str, Any]:
    """One event as a row of driver values (properties as JSON text, times as the driver stores them)."""
    return {
        "org_id": ev.org_id,
        "customer_id": ev.customer_id,
        "account_id": ev.account_id,
        "type": str(ev.type),
        "occurred_at": stamp(ensure_utc(ev.occurred_at)),
        "properties": json.dumps(dict(ev.properties)),
        "source": ev.source,
        "idempotency_key": ev.key,
        "backfill": ev.backfill,
        "received_at": received,
    }


def dispatch(db: Session, events: Sequence[DomainEvent]) -> None:
    """Tell the subscribers about events already stored in this transaction (``emit_many`` calls this;
    the event API's bulk ingest calls it for the rows it inserted itself)."""
    if not events:
        return
    _ensure_loaded()
    depth = db.info.get("siyu_event_depth", 0)
    if depth >= MAX_DEPTH:
        raise RuntimeError(f"event subscribers emitted {MAX_DEPTH} levels deep: a subscriber loop?")
    db.info["siyu_event_depth"] = depth + 1
    try:
        outbox_rows: list[dict[str, Any]] = []
        for sub in _subscriptions.values():
            mine = [ev for ev in events if sub.types is None or ev.type in sub.types]
            if sub.wants is not None:
                mine = [ev for ev in mine if sub.wants(db, ev)]
            if not mine:
                continue
            if sub.handler is not None:
                sub.handler(db, mine)
            else:
                outbox_rows.extend(_outbox_row(sub.name, ev) for ev in mine)
        if outbox_rows:
            db.execute(insert_ignore(db, OUTBOX, ["handler", "dedupe_key"]), outbox_rows)
            db.info["siyu_outbox_written"] = True
    finally:
        db.info["siyu_event_depth"] = depth


def _outbox_row(handler: str, ev: DomainEvent) -> dict[str, Any]:
    now = utcnow()
    return {
        "org_id": ev.org_id,
        "handler": handler,
        "dedupe_key": f"{ev.org_id}:{ev.key}"[:200],
        "event_type": ev.type,
        "customer_id": ev.customer_id,
        "payload": {
            "key": ev.key,
            "occurred_at": ensure_utc(ev.occurred_at).isoformat(),
            "account_id": ev.account_id,
            "properties": dict(ev.properties),
        },
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
        "created_at": now,
    }


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("siyu_outbox_written", False):
        callback = _state["on_outbox_commit"]
        if callback is not None:
            callback()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("siyu_outbox_written", None)
