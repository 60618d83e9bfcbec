"""The append-only customer event log that timelines and analytics read, and the outbox beside it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ForeignKey, Index, String, Text, UniqueConstraint, literal, text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId

#: The types read over a time range: today's counts on the dashboard (follows started and ended, messages
#: sent, orders paid), account health's week of complaints, the channels' month of follows started. Only
#: their events enter the (org_id, type, occurred_at) index (migration 0018): every other event, most of
#: what an ingestion client sends, is inserted without paying for it.
TIMED_TYPES = ("complaint", "follow_ended", "follow_started", "message_sent", "order_paid")
# OR-ed equalities, not IN: SQLite uses a partial index only when a term of the query's WHERE is one of the
# index predicate's OR terms (PostgreSQL proves either form).
_TIMED_PREDICATE = text(" OR ".join(f"type = '{t}'" for t in TIMED_TYPES))


class Event(Base):
    """Something that happened to a customer. Never updated; merges re-point customer_id only."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        # Analytics projects by id watermark; timelines and time-range scans use these two.
        Index("ix_events_org_occurred_at", "org_id", "occurred_at"),
        Index("ix_events_customer_occurred_at", "customer_id", "occurred_at"),
        # The event list (newest first, keyset on id) walks these backwards instead of sorting the log.
        Index("ix_events_org_id", "org_id", "id"),
        Index("ix_events_org_type_id", "org_id", "type", "id"),
        # One type over a time range (a week's complaints, a month's follows) reads only those events.
        Index(
            "ix_events_timed_type_occurred_at",
            "org_id",
            "type",
            "occurred_at",
            sqlite_where=_TIMED_PREDICATE,
            postgresql_where=_TIMED_PREDICATE,
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key to organizations (migration 0007): customer_id ties the row to a live organization,
    # and the check locked the organization's row for every event inserted.
    org_id: Mapped[int] = mapped_column(BigId)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(60))
    occurred_at: Mapped[datetime]
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(String(60))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A past fact recorded late (a first sync's history), dated when it happened: not today's news.
    backfill: Mapped[bool] = mapped_column(default=False)


def of_timed_type(type_: str) -> ColumnElement[bool]:
    """``events.type = type_`` for a read over a time range, in the form the partial index matches.

    The type is written into the SQL, not bound: a plan made for any type (PostgreSQL's generic plan of a
    prepared statement) cannot use an index that holds only some types."""
    if type_ not in TIMED_TYPES:
        raise ValueError(f"{type_!r} is not in TIMED_TYPES: its events are not indexed by time")
    return Event.type == literal(type_, literal_execute=True)


class OutboxItem(Base):
    """Work an event asked for outside the database (a call to WeCom), drained by the worker.

    Written in the same transaction as the event, so work is never lost nor done for a change that
    rolled back. (handler, dedupe_key) makes a re-emitted event queue nothing new.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("handler", "dedupe_key"),
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_org_handler_status", "org_id", "handler", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    handler: Mapped[str] = mapped_column(String(60))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(60))
    customer_id: Mapped[int | None] = mapped_column(BigId)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending (waiting or leased until next_attempt_at), done, failed (gave up after MAX_ATTEMPTS errors)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
