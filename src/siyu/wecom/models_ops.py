"""WeCom operations tables: last sync report, customer transfers."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId


class WeComSyncRun(Base):
    """The last reconciliation of one organization with WeCom and what it changed (one row per org)."""

    __tablename__ = "wecom_sync_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running, succeeded, failed
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(Text, default="")
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TransferKind(enum.StrEnum):
    """In-service handover (the customer may refuse within 24 h) or a resigned member's customers."""

    in_service = "in_service"
    resigned = "resigned"


class TransferStatus(enum.StrEnum):
    """Where one customer's handover stands; waiting until WeCom reports a final state.

    refused: the customer declined within the 24 hours (WeCom status 3); taker_full: the receiving
    member had reached their customer limit (status 4); failed: WeCom refused the request on the spot
    (a per-customer errcode) or has no record of it (status 5); expired: no outcome within 72 hours.
    In every case but succeeded the customer stays with the leaving member."""

    waiting = "waiting"
    succeeded = "succeeded"
    refused = "refused"
    taker_full = "taker_full"
    failed = "failed"
    expired = "expired"


class CustomerTransfer(Base):
    """One customer handed from one WeCom member to another (the 90-day rule counts these rows)."""

    __tablename__ = "wecom_customer_transfers"
    __table_args__ = (
        Index("ix_wecom_customer_transfers_org_customer_requested", "org_id", "customer_id", "requested_at"),
        Index("ix_wecom_customer_transfers_org_status", "org_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    external_userid: Mapped[str] = mapped_column(String(128))
    from_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    to_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[TransferKind] = mapped_column(Enum(TransferKind, native_enum=False, length=20))
    status: Mapped[TransferStatus] = mapped_column(
        Enum(TransferStatus, native_enum=False, length=20), default=TransferStatus.waiting
    )
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    handover_at: Mapped[datetime | None]
    errcode: Mapped[int] = mapped_column(default=0)
    detail: Mapped[str] = mapped_column(String(300), default="")
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
