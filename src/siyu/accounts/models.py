"""Carrier accounts: the WeCom members, personal WeChat accounts and official accounts a brand operates."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String, UniqueConstraint
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
