"""The customer hub's side of the event log: one call per state change, in the writer's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from siyu.customers.models import Customer
from siyu.events.bus import DomainEvent, emit
from siyu.events.vocabulary import EventType
from siyu.kit.clock import utcnow


def record(
    db: Session,
    org_id: int,
    customer_id: int,
    type_: EventType,
    *,
    at: datetime | None = None,
    origin: str = "",
    account_id: int | None = None,
    source: str | None = None,
    key: str = "",
    backfill: bool = False,
    **properties: Any,
) -> bool:
    """Append one event about a customer (``origin`` goes into its properties); False if ``key`` was
    already stored."""
    if origin:
        properties["origin"] = origin
    if account_id is not None:
        properties.setdefault("account_id", account_id)
    return emit(
        db,
        DomainEvent(
            org_id=org_id,
            customer_id=customer_id,
            type=type_,
            occurred_at=at or utcnow(),
            properties=properties,
            account_id=account_id,
            source=source,
            key=key,
            backfill=backfill,
        ),
    )


def note_remark(
    db: Session, customer: Customer, before: str, *, origin: str = "", at: datetime | None = None
) -> None:
    """Record remark_changed when ``customer``'s remark differs from ``before``."""
    if customer.remark == before:
        return
    record(
        db,
        customer.org_id,
        customer.id,
        EventType.remark_changed,
        at=at,
        origin=origin,
        remark=customer.remark,
        previous=before,
        manual=customer.remark_is_manual,
    )
