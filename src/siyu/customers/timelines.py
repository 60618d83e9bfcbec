"""A customer's timeline: events, notes and orders merged by time, newest first, keyset paginated by an
opaque cursor; free text is masked for roles that see masked mobiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from siyu.customers import repository as repo
from siyu.customers.access import get_customer
from siyu.customers.listing import MAX_PAGE
from siyu.customers.remarks import masked_remark
from siyu.customers.schemas import TimelineItem, TimelinePage
from siyu.kit.clock import ensure_utc
from siyu.kit.errors import Invalid
from siyu.tenancy.principal import Principal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_timeline_cursor(at: datetime, kind: str, row_id: int) -> str:
    """An opaque ?before= value pointing just after one timeline entry."""
    micros = (ensure_utc(at) - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{kind}.{row_id}"


def decode_timeline_cursor(value: str) -> tuple[datetime, str, int]:
    """Parse a ?before= value, or 422 naming ``before``."""
    try:
        micros, kind, row_id = value.split(".")
        if kind not in repo.TIMELINE_RANK:
            raise ValueError(kind)
        return _EPOCH + timedelta(microseconds=int(micros)), kind, int(row_id)
    except ValueError:
        raise Invalid("before is not a timeline cursor from a previous page", field="before") from None


def _timeline_item(kind: str, obj: Any, principal: Principal) -> TimelineItem:
    # Notes and remark events carry free text: for roles that see masked numbers, mobiles inside are masked.
    shown = (lambda text: text) if principal.sees_full_mobile else masked_remark
    if kind == "event":
        properties = {k: shown(v) if isinstance(v, str) else v for k, v in (obj.properties or {}).items()}
        return TimelineItem(
            kind="event",
            id=obj.id,
            at=obj.occurred_at,
            type=obj.type,
            account_id=obj.account_id,
            data={"properties": properties, "source": obj.source},
        )
    if kind == "note":
        return TimelineItem(
            kind="note",
            id=obj.id,
            at=obj.created_at,
            type="note",
            data={"body": shown(obj.body), "author_id": obj.author_id},
        )
    return TimelineItem(
        kind="order",
        id=obj.id,
        at=obj.paid_at,
        type="order",
        account_id=obj.account_id,
        data={
            "platform": obj.platform,
            "external_id": obj.external_id,
            "amount_fen": obj.amount_fen,
            "refunded_fen": obj.refunded_fen,
        },
    )


def timeline(
    db: Session, principal: Principal, customer_id: int, before: str | None = None, limit: int = 50
) -> TimelinePage:
    """A visible customer's events, notes and orders merged by time, newest first, keyset paginated by
    the opaque ``before`` cursor of the previous page."""
    customer = get_customer(db, principal, customer_id)
    limit = max(1, min(limit, MAX_PAGE))
    cursor = decode_timeline_cursor(before) if before else None
    rows = repo.timeline_rows(db, customer.id, cursor, limit)
    items = [_timeline_item(kind, obj, principal) for _at, kind, _id, obj in rows[:limit]]
    next_before = None
    if len(rows) > limit:
        at, kind, row_id, _obj = rows[limit - 1]
        next_before = encode_timeline_cursor(at, kind, row_id)
    return TimelinePage(items=items, next_before=next_before)
