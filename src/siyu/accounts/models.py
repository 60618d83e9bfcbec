"""Carrier accounts: the WeCom members, personal WeChat accounts and official accounts a brand operates;
the hand-overs of a leaving member's customers (transfers)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId

# A personal WeChat account holds at most 5,000 friends; operators keep 2,000-3,000 (DOMAIN.md).
PERSONAL_WECHAT_HARD_CAP = 5000
DEFAULT_SOFT_CAP = 2500


class AccountKind(enum.StrEnum):
    """Which carrier the account is."""

    wecom_member = "wecom_member"
    personal_wechat = "personal_wechat"
    official_account = "official_account"


class AccountStatus(enum.StrEnum):
    """Whether new customers may be routed to the account."""

    active = "active"
    paused = "paused"
    resigned = "resigned"
    blocked = "blocked"


class Account(Base):
    """One carrier account, with the operator who runs it and its capacity."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("org_id", "kind", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[AccountKind] = mapped_column(Enum(AccountKind, native_enum=False, length=30))
    external_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(120))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    friend_count: Mapped[int] = mapped_column(default=0)
    soft_cap: Mapped[int] = mapped_column(default=DEFAULT_SOFT_CAP)
    hard_cap: Mapped[int] = mapped_column(default=PERSONAL_WECHAT_HARD_CAP)
    status: Mapped[AccountStatus] = mapped_column(
        Enum(AccountStatus, native_enum=False, length=20), default=AccountStatus.active
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
