"""The append-only customer event log that timelines and analytics read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId


class Event(Base):
    """Something that happened to a customer. Never updated; merges re-point customer_id only."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        # Analytics projects by id watermark; timelines and time-range scans use these two.
        Index("ix_events_org_occurred_at", "org_id", "occurred_at"),
        Index("ix_events_customer_occurred_at", "customer_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(60))
    occurred_at: Mapped[datetime]
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(String(60))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
