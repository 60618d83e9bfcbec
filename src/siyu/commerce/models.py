"""Orders from any platform, in integer fen, linked to customers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId


class Order(Base):
    """One paid order; (platform, external_id) is unique so re-imports add nothing."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("org_id", "platform", "external_id"),
        Index("ix_orders_customer_paid_at", "customer_id", "paid_at"),
        Index("ix_orders_org_paid_at", "org_id", "paid_at"),
        # The order list (newest first, keyset on id) walks this backwards instead of sorting.
        Index("ix_orders_org_id", "org_id", "id"),
        # Refunded orders only: the projection compares their total on every refresh without a scan.
        Index(
            "ix_orders_refunded",
            "id",
            "refunded_fen",
            sqlite_where=text("refunded_fen <> 0"),
            postgresql_where=text("refunded_fen <> 0"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    platform: Mapped[str] = mapped_column(String(30))
    external_id: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int]
    refunded_fen: Mapped[int] = mapped_column(default=0)
    paid_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrderItem(Base):
    """A line of an order; cost is optional and feeds gross margin."""

    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(default=1)
    unit_price_fen: Mapped[int]
    unit_cost_fen: Mapped[int | None]
