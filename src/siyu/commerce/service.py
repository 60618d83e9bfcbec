"""Rules for orders: one row per (platform, external_id), buyers resolved to customers, set-based writes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, bindparam, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.accounts.service import visible_accounts
from siyu.commerce.models import Order, OrderItem
from siyu.commerce.schemas import OrderIn, OrderItemOut, OrderOut
from siyu.customers.access import visible_holders, visible_live_customers
from siyu.customers.importer import CustomerRow, write_customer_rows
from siyu.customers.models import Customer
from siyu.customers.repository import visible_customers
from siyu.customers.resolution import IdentityRef, live_customers, normalize_identity
from siyu.events.bus import DomainEvent, emit_many
from siyu.events.vocabulary import EventType
from siyu.kit.bulk import (
    IN_LIST_SIZE,
    ImportReport,
    chunked,
    driver_datetime,
    executemany_raw,
    insert_returning_ids,
)
from siyu.kit.clock import utcnow
from siyu.kit.errors import Invalid, NotFound
from siyu.kit.pagination import page_of
from siyu.tenancy.principal import Principal

ORDERS: Table = Order.__table__
ORDER_ITEMS: Table = OrderItem.__table__


@dataclass(slots=True)
class ItemLine:
    """An order line as parsed (money in fen)."""

    name: str
    quantity: int
    unit_price_fen: int
    sku: str | None = None
    unit_cost_fen: int | None = None


@dataclass(slots=True)
class OrderRow:
    """One order ready to store: the buyer by identities (or a known customer id), money in fen."""

    row: int
    platform: str
    external_id: str
    amount_fen: int
    paid_at: datetime
    refunded_fen: int = 0
    identities: list[IdentityRef] = field(default_factory=list)
    customer_id: int | None = None
    account_id: int | None = None
    name: str | None = None
    items: list[ItemLine] = field(default_factory=list)


def write_orders(
    db: Session,
    org_id: int,
    rows: list[OrderRow],
    report: ImportReport,
    *,
    source: str | None = None,
    reason: str = "order import",
) -> list[int]:
    """Store a chunk of orders idempotently; returns the order id of each row.

    New (platform, external_id) pairs are inserted with their lines; known ones only take a changed
    refund (refunds arrive after the first export); everything else about a stored order is kept.
    Buyers named by identity are found or created (and merged when one row links two profiles); a new
    buyer's source is ``source``, or the order's platform when None.
    """
    buyers = [r for r in rows if r.customer_id is None]
    scratch = ImportReport()
    customer_rows = [
        CustomerRow(
            r.row,
            {},
            r.identities,
            defaults={
                k: v
                for k, v in (
                    ("name", r.name),
                    ("source", source or r.platform),
                    ("mobile", _mobile_of(r.identities)),
                )
                if v
            },
        )
        for r in buyers
    ]
    for r, cid in zip(
        buyers, write_customer_rows(db, org_id, customer_rows, scratch, reason=reason), strict=True
    ):
        r.customer_id = cid
    report.customers_created += scratch.created
    report.merged += scratch.merged

    existing: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    by_platform: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_platform[r.platform].append(r.external_id)
    for platform, ext_ids in by_platform.items():
        for part in chunked(sorted(set(ext_ids)), IN_LIST_SIZE):
            for oid, ext, refunded, amount, customer_id in db.execute(
                select(
                    ORDERS.c.id,
                    ORDERS.c.external_id,
                    ORDERS.c.refunded_fen,
                    ORDERS.c.amount_fen,
                    ORDERS.c.customer_id,
                ).where(
                    ORDERS.c.org_id == org_id, ORDERS.c.platform == platform, ORDERS.c.external_id.in_(part)
                )
            ):
                existing[(platform, ext)] = (oid, refunded, amount, customer_id)

    to_db = driver_datetime(db)
    now = to_db(utcnow())
    fresh: dict[tuple[str, str], OrderRow] = {}
    refunds: dict[int, int] = {}
    events: list[DomainEvent] = []
    for r in rows:
        key = (r.platform, r.external_id)
        if key in existing:
            oid, refunded, amount, customer_id = existing[key]
            if r.refunded_fen != refunded and refunds.get(oid, refunded) != r.refunded_fen:
                if r.refunded_fen > refunds.get(oid, refunded):
                    events.append(_refunded(org_id, customer_id, oid, r.refunded_fen, amount, utcnow()))
                refunds[oid] = r.refunded_fen
                report.updated += 1
            else:
                report.unchanged += 1
        elif key in fresh:
            report.unchanged += 1  # the same order twice in one file: the first row wins
        else:
            fresh[key] = r
    new_rows = list(fresh.values())
    ids = (
        insert_returning_ids(
            db,
            ORDERS,
            [
                {
                    "org_id": org_id,
                    "customer_id": r.customer_id,
                    "account_id": r.account_id,
                    "platform": r.platform,
                    "external_id": r.external_id,
                    "amount_fen": r.amount_fen,
                    "refunded_fen": r.refunded_fen,
                    "paid_at": to_db(r.paid_at),
                    "created_at": now,
                }
                for r in new_rows
            ],
        )
        if new_rows
        else []
    )
    report.created += len(ids)
    executemany_raw(
        db,
        ORDER_ITEMS.insert(),
        [
            {
                "order_id": oid,
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price_fen": item.unit_price_fen,
                "unit_cost_fen": item.unit_cost_fen,
            }
            for oid, r in zip(ids, new_rows, strict=True)
            for item in r.items
        ],
    )
    if refunds:
        executemany_raw(
            db,
            update(ORDERS)
            .where(ORDERS.c.id == bindparam("b_id"))
            .values(refunded_fen=bindparam("refunded_fen")),
            [{"b_id": oid, "refunded_fen": fen} for oid, fen in refunds.items()],
        )
    for oid, r in zip(ids, new_rows, strict=True):
        assert r.customer_id is not None
        events.append(
            DomainEvent(
                org_id=org_id,
                customer_id=r.customer_id,
                type=EventType.order_paid,
                occurred_at=r.paid_at,
                properties={"order_id": oid, "platform": r.platform, "amount_fen": r.amount_fen},
                account_id=r.account_id,
                key=f"order_paid:{oid}",
            )
        )
        if r.refunded_fen > 0:  # exported after the refund: the order arrives already (partly) refunded
            events.append(_refunded(org_id, r.customer_id, oid, r.refunded_fen, r.amount_fen, r.paid_at))
    # One batch per chunk: the stage rules read the orders of every buyer of the chunk at once.
    emit_many(db, events)
    order_ids = {key: row[0] for key, row in existing.items()}
    order_ids.update({(r.platform, r.external_id): oid for oid, r in zip(ids, new_rows, strict=True)})
    return [order_ids[(r.platform, r.external_id)] for r in rows]


def _refunded(
    org_id: int, customer_id: int, order_id: int, refunded_fen: int, amount_fen: int, at: datetime
) -> DomainEvent:
    """order_refunded for an order whose refund grew to ``refunded_fen`` (keyed by the new total)."""
    return DomainEvent(
        org_id=org_id,
        customer_id=customer_id,
        type=EventType.order_refunded,
        occurred_at=at,
        properties={"order_id": order_id, "refunded_fen": refunded_fen, "amount_fen": amount_fen},
        key=f"order_refunded:{order_id}:{refunded_fen}",
    )


def _mobile_of(refs: list[IdentityRef]) -> str | None:
    return next((v for k, v in refs if k == "mobile"), None)


def create_order(db: Session, principal: Principal, data: OrderIn) -> tuple[Order, bool]:
    """Store an order posted by API; an order already stored for (platform, external_id) is returned as is
    (with its refund updated when the post carries a different one). Returns (order, created).

    The caller writes only where it may read: a buyer or account it cannot see is refused like one that
    does not exist, an operator names buyers by identity only when one of theirs holds it, and a stored
    order of a customer it cannot see answers 404 instead of being returned or changed."""
    org_id = principal.org_id
    row = OrderRow(
        0,
        data.platform,
        data.external_id,
        data.amount_fen,
        data.paid_at,
        data.refunded_fen,
        account_id=data.account_id,
        items=[ItemLine(i.name, i.quantity, i.unit_price_fen, i.sku, i.unit_cost_fen) for i in data.items],
    )
    if data.customer_id is not None:
        live = visible_live_customers(db, principal, [data.customer_id])
        if data.customer_id not in live:
            raise Invalid(
                f"customer {data.customer_id} does not exist in this organization", field="customer_id"
            )
        row.customer_id = live[data.customer_id]
    else:
        assert data.identity is not None
        ref = normalize_identity(data.identity.kind, data.identity.value, field="identity.value")
        if principal.sees_whole_org:
            row.identities = [ref]
        else:
            holder = visible_holders(db, principal, [ref]).get(ref)
            if holder is None:
                raise NotFound("no customer you can see holds this identity", field="identity.value")
            row.customer_id = holder
    if (
        data.account_id is not None
        and db.scalar(
            visible_accounts(principal).where(Account.id == data.account_id).with_only_columns(Account.id)
        )
        is None
    ):
        raise Invalid(f"account {data.account_id} does not exist in this organization", field="account_id")
    stored = select(Order.id).where(
        Order.org_id == org_id, Order.platform == data.platform, Order.external_id == data.external_id
    )
    if (
        db.scalar(stored) is not None
        and db.scalar(
            visible_orders(principal).where(
                Order.platform == data.platform, Order.external_id == data.external_id
            )
        )
        is None
    ):
        raise NotFound("order not found", field="external_id")
    report = ImportReport()
    (order_id,) = write_orders(db, org_id, [row], report, source=data.platform, reason="order API")
    order = db.get(Order, order_id, populate_existing=True)
    assert order is not None
    return order, report.created == 1


def visible_orders(principal: Principal) -> Select[Order]:
    """Orders of the caller's organization; operators see those of customers they may see."""
    stmt = select(Order).where(Order.org_id == principal.org_id)
    if not principal.sees_whole_org:
        stmt = stmt.where(Order.customer_id.in_(visible_customers(principal).with_only_columns(Customer.id)))
    return stmt


def get_order(db: Session, principal: Principal, order_id: int) -> Order:
    """One visible order, or 404 (also for other organizations' orders)."""
    order = db.scalar(visible_orders(principal).where(Order.id == order_id))
    if order is None:
        raise NotFound("order not found", field="order_id")
    return order


def list_orders(
    db: Session,
    principal: Principal,
    *,
    customer_id: int | None = None,
    platform: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int | None = None,
    limit: int = 100,
) -> tuple[list[Order], int | None]:
    """Newest first (by id), filtered by customer, platform and a paid_at range [since, until)."""
    stmt = visible_orders(principal)
    if customer_id is not None:
        live = live_customers(db, principal.org_id, [customer_id])
        stmt = stmt.where(Order.customer_id == live.get(customer_id, customer_id))
    if platform is not None:
        stmt = stmt.where(Order.platform == platform)
    if since is not None:
        stmt = stmt.where(Order.paid_at >= since)
    if until is not None:
        stmt = stmt.where(Order.paid_at < until)
    if cursor is not None:
        stmt = stmt.where(Order.id < cursor)
    rows = list(db.scalars(stmt.order_by(Order.id.desc()).limit(limit + 1)))
    return page_of(rows, limit, lambda o: o.id)


def latest_orders(db: Session, org_id: int, customer_id: int, limit: int = 5) -> list[Order]:
    """The newest orders of one customer the caller already checked the principal may see (by paid_at, on
    the customer's own index: `list_orders` walks every visible order newest first until it finds theirs)."""
    stmt = (
        select(Order)
        .where(Order.customer_id == customer_id, Order.org_id == org_id)
        .order_by(Order.paid_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return list(db.scalars(stmt))


def with_items(db: Session, orders: list[Order]) -> list[OrderOut]:
    """Orders as API objects with their lines, loaded in one query."""
    lines: dict[int, list[OrderItemOut]] = defaultdict(list)
    ids = [o.id for o in orders]
    for part in chunked(ids, IN_LIST_SIZE):
        for item in db.scalars(select(OrderItem).where(OrderItem.order_id.in_(part)).order_by(OrderItem.id)):
            lines[item.order_id].append(OrderItemOut.model_validate(item))
    out: list[OrderOut] = []
    for order in orders:
        data: dict[str, Any] = OrderOut.model_validate(order).model_dump()
        data["items"] = lines[order.id]
        out.append(OrderOut.model_validate(data))
    return out
