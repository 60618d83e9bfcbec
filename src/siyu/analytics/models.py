"""Operational tables of the analytics domain: marketing cost per channel and period (for ROI).

The projection's own state (watermarks) lives in the DuckDB file next to the rows it describes, so
that both advance in one DuckDB transaction; see :mod:`siyu.analytics.projection`.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId


class CostDimension(enum.StrEnum):
    """What a cost is attributed to: a customer's acquisition source, or the channel code that brought them."""

    source = "source"
    channel = "channel"


class ChannelCost(Base):
    """Money spent on one acquisition channel over a period of local dates (both ends inclusive)."""

    __tablename__ = "channel_costs"
    __table_args__ = (
        Index("ix_channel_costs_org_channel_start", "org_id", "channel", "period_start"),
        CheckConstraint("period_end >= period_start", name="period_order"),
        CheckConstraint("cost_fen >= 0", name="cost_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    dimension: Mapped[CostDimension] = mapped_column(
        Enum(CostDimension, native_enum=False, length=20), default=CostDimension.source
    )
    channel: Mapped[str] = mapped_column(String(60))
    period_start: Mapped[date]
    period_end: Mapped[date]
    cost_fen: Mapped[int]
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
