"""Queries of the customer hub. Everything a principal reads goes through ``visible_customers``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, func, literal, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from siyu.accounts.models import Account
from siyu.commerce.models import Order
from siyu.customers import search
from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    CustomerTag,
    FollowRelation,
    FollowStatus,
    IdentityKind,
    Note,
    Tag,
)
from siyu.customers.schemas import CustomerFilters
from siyu.events.models import Event
from siyu.tenancy.principal import Principal

# How far the planner probes a filter before deciding which index drives a tag+stage list (see list_query).
SELECTIVITY_PROBE = 5000


def followed_by_operator(operator_id: int) -> ColumnElement[bool]:
    """True for customers with an active follow relation to an account the operator runs."""
    return exists(
        select(literal(1))
        .select_from(FollowRelation)
        .join(Account, Account.id == FollowRelation.account_id)
        .where(
            FollowRelation.customer_id == Customer.id,
            FollowRelation.status == FollowStatus.active,
            Account.operator_id == operator_id,
        )
    )


def visible_customers(principal: Principal) -> Select[Customer]:
    """The one scoping helper: the principal's organization, live (not merged-away, not erased) profiles, and for
    operators only customers actively followed by one of their accounts."""
    stmt = select(Customer).where(
        Customer.org_id == principal.org_id, Customer.merged_into_id.is_(None), Customer.erased_at.is_(None)
    )
    if not principal.sees_whole_org:
        stmt = stmt.where(followed_by_operator(principal.user_id))
    return stmt


def has_tag(tag_id: int) -> ColumnElement[bool]:
    """True for customers carrying the tag (served by the customer_tags primary key)."""
    # An alias, so the EXISTS stays correlated to customers even when customer_tags drives the outer query.
    ct = aliased(CustomerTag)
    return exists(
        select(literal(1)).select_from(ct).where(ct.customer_id == Customer.id, ct.tag_id == tag_id)
    ).correlate(Customer)


def followed_by_account(account_id: int) -> ColumnElement[bool]:
    """True for customers with an active follow relation to the account."""
    return exists(
        select(literal(1))
        .select_from(FollowRelation)
        .where(
            FollowRelation.account_id == account_id,
            FollowRelation.customer_id == Customer.id,
            FollowRelation.status == FollowStatus.active,
        )
    )


def _probe(db: Session, stmt: Select[int]) -> int:
    """Rows of ``stmt`` up to SELECTIVITY_PROBE: a bounded, index-only look at a filter's size."""
    return int(db.scalar(select(func.count()).select_from(stmt.limit(SELECTIVITY_PROBE).subquery())) or 0)


def tag_probe(db: Session, tag_id: int) -> int:
    """How many customers carry the tag, counted up to SELECTIVITY_PROBE."""
    return _probe(db, select(CustomerTag.customer_id).where(CustomerTag.tag_id == tag_id))


def stage_probe(db: Session, org_id: int, stage: str) -> int:
    """How many customers of the organization are in the stage, counted up to SELECTIVITY_PROBE."""
    return _probe(db, select(Customer.id).where(Customer.org_id == org_id, Customer.stage == stage))


def _filter_conditions(
    filters: CustomerFilters, skip_tag: int | None, dialect: str
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if filters.stage is not None:
        conds.append(Customer.stage == filters.stage)
    if filters.source is not None:
        conds.append(Customer.source == filters.source)
    if filters.name:
        conds.append(search.contains_text(dialect, filters.name, remark=False))
    if filters.text:
        conds.append(search.contains_text(dialect, filters.text))
    if filters.mobile:
        if len(filters.mobile) == 11:
            conds.append(Customer.mobile == filters.mobile)
        else:
            conds.append(Customer.mobile_last4 == filters.mobile)
    if filters.account_id is not None:
        conds.append(followed_by_account(filters.account_id))
    conds.extend(has_tag(t) for t in dict.fromkeys(filters.tag_ids) if t != skip_tag)
    return conds


def operator_probe(db: Session, principal: Principal) -> int:
    """How many active follow relations the operator's accounts have, counted up to SELECTIVITY_PROBE."""
    return _probe(
        db,
        select(FollowRelation.customer_id)
        .join(Account, Account.id == FollowRelation.account_id)
        .where(
            Account.org_id == principal.org_id,
            Account.operator_id == principal.user_id,
            FollowRelation.status == FollowStatus.active,
        ),
    )


Driver = Literal["tag", "stage", "operator", "id"]


def choose_driver(db: Session, principal: Principal, filters: CustomerFilters) -> tuple[Driver, int | None]:
    """Which index walks the list: the smallest of the operator's follows, the rarest tag and the stage,
    judged by bounded probes (never a full count). Returns the driver and, for "tag", the leading tag."""
    candidates: list[tuple[int, Driver, int | None]] = []
    if not principal.sees_whole_org:
        candidates.append((operator_probe(db, principal), "operator", None))
    for tag_id in dict.fromkeys(filters.tag_ids):
        candidates.append((tag_probe(db, tag_id), "tag", tag_id))
    if filters.stage is not None and candidates:
        candidates.append((stage_probe(db, principal.org_id, filters.stage), "stage", None))
    if not candidates:
        return ("stage" if filters.stage is not None else "id"), None
    size, driver, tag = min(candidates, key=lambda c: c[0])
    # A walk over a big set still finds a page quickly when the other filters are not rare; prefer
    # the tag index then, as it already orders by customer id.
    if size >= SELECTIVITY_PROBE and filters.tag_ids and driver != "tag":
        return "tag", min((c for c in candidates if c[1] == "tag"), key=lambda c: c[0])[2]
    return driver, tag


def list_query(
    db: Session,
    principal: Principal,
    filters: CustomerFilters,
    cursor: int | None,
    limit: int,
    driver: tuple[Driver, int | None] | None = None,
) -> Select[Customer]:
    """Customers matching ``filters`` newest id first, ``limit`` + 1 rows after ``cursor`` (keyset).

    The walk is driven by the most selective of: the tag's (tag_id, customer_id) index backwards
    (other filters checked per row, other tags by EXISTS on the customer_tags primary key); customers by
    (org, stage, id) backwards with the tag checked by EXISTS; or, for an operator with few contacts,
    their follow relations (a small set sorted in memory). Bounded probes pick the driver (see
    choose_driver), so a rare tag in a big stage and a rare stage under a big tag both read only a few
    thousand index entries per page. No page ever counts the whole result set.
    """
    kind, lead_tag = driver or choose_driver(db, principal, filters)
    stmt = visible_customers(principal)
    key: InstrumentedAttribute[int] = Customer.id
    if kind == "tag" and lead_tag is not None:
        stmt = stmt.join(
            CustomerTag, and_(CustomerTag.customer_id == Customer.id, CustomerTag.tag_id == lead_tag)
        )
        # Ordering by the join column lets SQLite walk ix_customer_tags_tag_customer backwards.
        key = CustomerTag.customer_id
    elif kind == "operator":
        mine = (
            select(FollowRelation.customer_id)
            .join(Account, Account.id == FollowRelation.account_id)
            .where(
                Account.org_id == principal.org_id,
                Account.operator_id == principal.user_id,
                FollowRelation.status == FollowStatus.active,
            )
        )
        stmt = stmt.where(Customer.id.in_(mine))
    else:
        lead_tag = None
    if cursor is not None:
        stmt = stmt.where(key < cursor)
    conds = _filter_conditions(filters, lead_tag, db.get_bind().dialect.name)
    if conds:
        stmt = stmt.where(*conds)
    return stmt.order_by(key.desc()).limit(limit + 1)


def count_query(
    principal: Principal, filters: CustomerFilters, dialect: str, limit: int | None = None
) -> Select[int]:
    """A COUNT of the matching customers: all of them (the count endpoint), or at most ``limit``, which
    stops reading after that many rows however many match."""
    inner = (
        visible_customers(principal)
        .where(*_filter_conditions(filters, None, dialect))
        .with_only_columns(Customer.id)
    )
    if limit is not None:
        inner = inner.limit(limit)
    return select(func.count()).select_from(inner.subquery())


# Built once: the callback worker looks identities up several times per event, and building a select
# costs more than running it on SQLite. Expanding bindparams keep one cached statement for any list size.
_IDENTITY_HOLDER = select(CustomerIdentity).where(
    CustomerIdentity.org_id == bindparam("org_id"),
    CustomerIdentity.kind == bindparam("kind"),
    CustomerIdentity.value == bindparam("value"),
)
_IDENTITY_HOLDERS = select(CustomerIdentity.kind, CustomerIdentity.value, CustomerIdentity.customer_id).where(
    CustomerIdentity.org_id == bindparam("org_id"),
    CustomerIdentity.kind.in_(bindparam("kinds", expanding=True)),
    CustomerIdentity.value.in_(bindparam("values", expanding=True)),
)


def identity_holder(db: Session, org_id: int, kind: IdentityKind, value: str) -> CustomerIdentity | None:
    """The identity row for (kind, value) in the organization, if any profile holds it."""
    return db.scalar(_IDENTITY_HOLDER, {"org_id": org_id, "kind": kind, "value": value})


def identity_holders(
    db: Session, org_id: int, identities: Sequence[tuple[IdentityKind, str]]
) -> dict[tuple[IdentityKind, str], int]:
    """The customer id holding each of the (kind, value) pairs that some profile holds, in one query."""
    if not identities:
        return {}
    wanted = set(identities)
    rows = db.execute(
        _IDENTITY_HOLDERS,
        {
            "org_id": org_id,
            "kinds": sorted({k for k, _ in wanted}),
            "values": sorted({v for _, v in wanted}),
        },
    )
    # kind IN (...) AND value IN (...) is a cross product: keep only the pairs asked for.
    return {(IdentityKind(k), v): int(c) for k, v, c in rows if (IdentityKind(k), v) in wanted}


def identities_of(db: Session, customer_id: int) -> Sequence[CustomerIdentity]:
    """A customer's identities, oldest first."""
    return db.scalars(
        select(CustomerIdentity)
        .where(CustomerIdentity.customer_id == customer_id)
        .order_by(CustomerIdentity.id)
    ).all()


def tags_of(db: Session, customer_id: int) -> Sequence[Tag]:
    """The tags on a customer, in group then tag order."""
    return db.scalars(
        select(Tag)
        .join(CustomerTag, CustomerTag.tag_id == Tag.id)
        .where(CustomerTag.customer_id == customer_id)
        .order_by(Tag.group_id, Tag.sort_order, Tag.id)
    ).all()


def follows_of(db: Session, customer_id: int) -> Sequence[FollowRelation]:
    """A customer's follow relations, earliest first."""
    return db.scalars(
        select(FollowRelation)
        .where(FollowRelation.customer_id == customer_id)
        .order_by(FollowRelation.since, FollowRelation.id)
    ).all()


def _before(
    col_at: InstrumentedAttribute[datetime],
    col_id: InstrumentedAttribute[int],
    rank: int,
    at: datetime,
    kind_rank: int,
    row_id: int,
) -> ColumnElement[bool]:
    # Keyset on (time desc, kind rank desc, id desc): strictly older, or same instant and earlier in that order.
    if rank < kind_rank:
        same_instant: ColumnElement[bool] = literal(True)
    elif rank > kind_rank:
        same_instant = literal(False)
    else:
        same_instant = col_id < row_id
    return or_(col_at < at, and_(col_at == at, same_instant))


TIMELINE_RANK = {"note": 0, "order": 1, "event": 2}


def timeline_rows(
    db: Session, customer_id: int, before: tuple[datetime, str, int] | None, limit: int
) -> list[tuple[datetime, str, int, object]]:
    """Up to ``limit`` + 1 events, notes and orders of a customer, newest first, after a keyset cursor."""
    sources: list[
        tuple[
            str,
            type[Event | Note | Order],
            InstrumentedAttribute[datetime],
            InstrumentedAttribute[int],
            InstrumentedAttribute[int],
        ]
    ] = [
        ("event", Event, Event.occurred_at, Event.id, Event.customer_id),
        ("note", Note, Note.created_at, Note.id, Note.customer_id),
        ("order", Order, Order.paid_at, Order.id, Order.customer_id),
    ]
    rows: list[tuple[datetime, str, int, object]] = []
    for kind, model, col_at, col_id, col_customer in sources:
        stmt = select(model).where(col_customer == customer_id)
        if before is not None:
            stmt = stmt.where(_before(col_at, col_id, TIMELINE_RANK[kind], *_cursor_parts(before)))
        stmt = stmt.order_by(col_at.desc(), col_id.desc()).limit(limit + 1)
        for obj in db.scalars(stmt):
            rows.append((getattr(obj, col_at.key), kind, getattr(obj, col_id.key), obj))
    rows.sort(key=lambda r: (r[0], TIMELINE_RANK[r[1]], r[2]), reverse=True)
    return rows[: limit + 1]


def _cursor_parts(before: tuple[datetime, str, int]) -> tuple[datetime, int, int]:
    at, kind, row_id = before
    return at, TIMELINE_RANK[kind], row_id
