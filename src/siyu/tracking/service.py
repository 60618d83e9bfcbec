"""Rules of the event log: validate a whole batch, resolve customers set-wise, append idempotently."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json
from sqlalchemy import Select, Table, select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.accounts.service import visible_accounts
from siyu.customers.access import visible_holders, visible_live_customers
from siyu.customers.models import Customer
from siyu.customers.repository import visible_customers
from siyu.customers.resolution import IdentityRef, live_customers, normalize_identity, resolve_identities
from siyu.events import bus
from siyu.events.models import Event
from siyu.kit.bulk import IN_LIST_SIZE, chunked, driver_datetime, executemany_raw, insert_ignore
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.errors import Invalid, NotFound
from siyu.kit.pagination import page_of
from siyu.tenancy.principal import Principal
from siyu.tracking.schemas import BATCH_ADAPTER, MAX_FUTURE, EventBatchIn, EventIn, IngestResult

EVENTS: Table = Event.__table__


def error_field(loc: Sequence[str | int]) -> str:
    """Render a Pydantic error location as the user writes it: ("events", 17, "occurred_at") -> events[17].occurred_at."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_batch(body: bytes) -> EventBatchIn:
    """Validate a raw JSON batch in one pass; the first error becomes a 422 naming its index and field."""
    try:
        return BATCH_ADAPTER.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        field = error_field(first["loc"]) or "body"
        raise Invalid(f"{field}: {first['msg']}{more}", field=field) from None


def _visible_account_ids(db: Session, principal: Principal, ids: set[int]) -> set[int]:
    if not ids:
        return set()
    return set(
        db.scalars(visible_accounts(principal).where(Account.id.in_(ids)).with_only_columns(Account.id))
    )


def ingest(
    db: Session, principal: Principal, events: Sequence[EventIn], *, prefix: str = "events"
) -> IngestResult:
    """Append events idempotently: check every item first (422 naming ``prefix[i].field``), then find or
    create customers named by identity, then one INSERT ... ON CONFLICT DO NOTHING for the whole batch.

    The caller writes only where it may read: a customer or account it cannot see is refused like one that
    does not exist, and an operator names customers by identity only when one of theirs holds it (they
    create no profiles here, which they could not see afterwards)."""
    org_id = principal.org_id

    def where(i: int, name: str) -> str:
        return f"{prefix}[{i}].{name}" if prefix else name

    refs: list[IdentityRef | None] = []
    for i, ev in enumerate(events):
        if (ev.customer_id is None) == (ev.identity is None):
            raise Invalid(
                "name the customer by customer_id or by identity (exactly one)", field=where(i, "customer_id")
            )
        refs.append(
            normalize_identity(ev.identity.kind, ev.identity.value, field=where(i, "identity.value"))
            if ev.identity is not None
            else None
        )
    # Checked here rather than in the schema: one clock read per batch instead of one per event.
    latest = utcnow() + MAX_FUTURE
    for i, ev in enumerate(events):
        if ev.occurred_at > latest:
            raise Invalid(
                "occurred_at is more than an hour in the future; is the UTC offset right?",
                field=where(i, "occurred_at"),
            )
    ids = {ev.customer_id for ev in events if ev.customer_id is not None}
    live = visible_live_customers(db, principal, ids) if ids else {}
    accounts = _visible_account_ids(
        db, principal, {ev.account_id for ev in events if ev.account_id is not None}
    )
    for i, ev in enumerate(events):
        if ev.customer_id is not None and ev.customer_id not in live:
            raise Invalid(
                f"customer {ev.customer_id} does not exist in this organization",
                field=where(i, "customer_id"),
            )
        if ev.account_id is not None and ev.account_id not in accounts:
            raise Invalid(
                f"account {ev.account_id} does not exist in this organization", field=where(i, "account_id")
            )

    wanted = {ref for ref in refs if ref is not None}
    holders: dict[IdentityRef, int] = {}
    if wanted and not principal.sees_whole_org:
        holders = visible_holders(db, principal, wanted)
        for i, ref in enumerate(refs):
            if ref is not None and ref not in holders:
                # One answer for "nobody" and "someone you cannot see": the mobile reveals no profile.
                raise NotFound(
                    "no customer you can see holds this identity", field=where(i, "identity.value")
                )
    elif wanted:
        # New customers take the source of the first event that names them.
        first_source: dict[IdentityRef, str | None] = {}
        for ev, ref in zip(events, refs, strict=True):
            if ref is not None and ref not in first_source:
                first_source[ref] = ev.source
        by_source: dict[str | None, list[IdentityRef]] = {}
        for ref, source in first_source.items():
            by_source.setdefault(source, []).append(ref)
        for source, group in by_source.items():
            holders.update(resolve_identities(db, org_id, group, source=source)[0])

    to_db = driver_datetime(db)
    received_at = utcnow()
    received = to_db(received_at)
    rows: dict[str, dict[str, Any]] = {}
    # SQLite takes the JSON text straight from us (the raw path skips SQLAlchemy's JSON type).
    sqlite = db.get_bind().dialect.name == "sqlite"
    dumps: Any = (lambda p: to_json(p).decode()) if sqlite else (lambda p: p)
    for ev, ref in zip(events, refs, strict=True):
        if ev.idempotency_key in rows:
            continue  # a repeat inside the batch is a duplicate like any other; the first one wins
        rows[ev.idempotency_key] = {
            "org_id": org_id,
            "customer_id": holders[ref] if ref is not None else live[ev.customer_id],  # type: ignore[index]
            "account_id": ev.account_id,
            "type": ev.type,
            "occurred_at": to_db(ev.occurred_at),
            "properties": dumps(ev.properties),
            "source": ev.source,
            "idempotency_key": ev.idempotency_key,
            "received_at": received,
            "backfill": False,
        }
    inserted = _insert_new(db, org_id, list(rows.values()))
    if inserted and bus.reacts_to({row["type"] for row in rows.values()}):
        _dispatch_new(db, org_id, list(rows), received_at)
    return IngestResult(inserted=inserted, duplicates=len(events) - inserted)


def _dispatch_new(db: Session, org_id: int, keys: list[str], received: datetime) -> None:
    """Tell the subscribers about the rows this call inserted: their keys, stamped with this call's
    ``received_at`` (a key stored earlier has an earlier stamp)."""
    new: list[bus.DomainEvent] = []
    for part in chunked(keys, IN_LIST_SIZE):
        for row in db.execute(
            select(
                EVENTS.c.customer_id,
                EVENTS.c.type,
                EVENTS.c.occurred_at,
                EVENTS.c.properties,
                EVENTS.c.account_id,
                EVENTS.c.source,
                EVENTS.c.idempotency_key,
            ).where(
                EVENTS.c.org_id == org_id,
                EVENTS.c.idempotency_key.in_(part),
                EVENTS.c.received_at == received,
            )
        ):
            props = row.properties if isinstance(row.properties, dict) else json.loads(row.properties or "{}")
            new.append(
                bus.DomainEvent(
                    org_id=org_id,
                    customer_id=row.customer_id,
                    type=row.type,
                    occurred_at=ensure_utc(row.occurred_at),
                    properties=props,
                    account_id=row.account_id,
                    source=row.source,
                    key=row.idempotency_key,
                )
            )
    bus.dispatch(db, new)


def _insert_new(db: Session, org_id: int, rows: list[dict[str, Any]]) -> int:
    """Insert ignoring stored keys; return how many rows were new."""
    if not rows:
        return 0
    stmt = insert_ignore(db, EVENTS, ["org_id", "idempotency_key"])
    if db.get_bind().dialect.name == "sqlite":
        return executemany_raw(db, stmt, rows)  # sqlite3 sums the rows each execution changed
    # PostgreSQL: RETURNING counts exactly the rows the conflict clause let through.
    return len(db.execute(stmt.returning(EVENTS.c.id), rows).all())


def ingest_one(db: Session, principal: Principal, event: EventIn) -> tuple[Event, bool]:
    """Append one event; returns the stored event and whether it is new (False: the key was already used).
    A key already used for an event the caller cannot see answers 404 rather than that event."""
    result = ingest(db, principal, [event], prefix="")
    stored = db.scalar(visible_events(principal).where(Event.idempotency_key == event.idempotency_key))
    if stored is None:
        raise NotFound("event not found", field="idempotency_key")
    return stored, result.inserted == 1


def visible_events(principal: Principal) -> Select[Event]:
    """Events of the caller's organization; operators only see events of customers they may see."""
    stmt = select(Event).where(Event.org_id == principal.org_id)
    if not principal.sees_whole_org:
        stmt = stmt.where(Event.customer_id.in_(visible_customers(principal).with_only_columns(Customer.id)))
    return stmt


def list_events(
    db: Session,
    principal: Principal,
    *,
    customer_id: int | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int | None = None,
    limit: int = 100,
) -> tuple[list[Event], int | None]:
    """Newest first (by id), filtered by customer, type and an occurred_at range [since, until)."""
    stmt = visible_events(principal)
    if customer_id is not None:
        live = live_customers(db, principal.org_id, [customer_id])
        stmt = stmt.where(Event.customer_id == live.get(customer_id, customer_id))
    if type is not None:
        stmt = stmt.where(Event.type == type)
    if since is not None:
        stmt = stmt.where(Event.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(Event.occurred_at < until)
    if cursor is not None:
        stmt = stmt.where(Event.id < cursor)
    rows = list(db.scalars(stmt.order_by(Event.id.desc()).limit(limit + 1)))
    return page_of(rows, limit, lambda e: e.id)
