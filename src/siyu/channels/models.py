"""Channel codes (渠道活码), the account pools they route over, adds they bring, account alerts and
each customer's first/last-touch source."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId

# WeCom's contact_way `state` is at most 30 characters.
STATE_MAX = 30


class RoutingRule(enum.StrEnum):
    """How a pool picks among its free accounts."""

    round_robin = "round_robin"
    least_loaded = "least_loaded"
    schedule = "schedule"  # only members inside their working hours, least loaded first
    region = "region"  # members serving the customer's region first, least loaded first


class CodeCarrier(enum.StrEnum):
    """Who issues the QR code: WeCom's contact_way, or the in-process sandbox in the demo."""

    wecom = "wecom"
    sandbox = "sandbox"


class CodeStatus(enum.StrEnum):
    """Whether a code still brings customers."""

    active = "active"
    archived = "archived"


class AlertKind(enum.StrEnum):
    """Why an account needs attention."""

    near_cap = "near_cap"
    near_daily_cap = "near_daily_cap"
    deletion_spike = "deletion_spike"
    deleted_by_staff = "deleted_by_staff"
    low_health = "low_health"


class RoutingPool(Base):
    """A set of accounts new customers are spread over, with the rule and warm-up schedule."""

    __tablename__ = "routing_pools"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(60))
    rule: Mapped[RoutingRule] = mapped_column(
        Enum(RoutingRule, native_enum=False, length=20), default=RoutingRule.least_loaded
    )
    # Adds per account per local day once warmed up; the warm-up list caps week 1, 2, ... of an account's life.
    daily_cap: Mapped[int] = mapped_column(default=200)
    warmup: Mapped[list[Any]] = mapped_column(default=lambda: [20, 40, 80])
    # Bumped on every change so cached in-memory routers know to reload.
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolMember(Base):
    """One account in a pool; backups take customers only when no primary member is free."""

    __tablename__ = "pool_members"
    __table_args__ = (UniqueConstraint("pool_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("routing_pools.id", ondelete="CASCADE"), index=True)
    # Removing an account removes its membership; the pool (and every code on it) keeps routing.
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    is_backup: Mapped[bool] = mapped_column(default=False)
    regions: Mapped[list[Any]] = mapped_column(default=list)
    # {"0": [9, 18], ...}: local weekday (Monday 0) -> [start hour, end hour); empty means always.
    hours: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ChannelCode(Base):
    """One QR code per source; its `state` comes back on every customer it brings."""

    __tablename__ = "channel_codes"
    __table_args__ = (
        UniqueConstraint("org_id", "state"),
        CheckConstraint("cost_fen >= 0", name="cost_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    state: Mapped[str] = mapped_column(String(STATE_MAX))
    channel: Mapped[str] = mapped_column(String(60))  # douyin, taobao_parcel, live, flyer, store, campaign...
    campaign: Mapped[str] = mapped_column(String(120), default="")
    content_item: Mapped[str] = mapped_column(String(200), default="")
    pool_id: Mapped[int] = mapped_column(ForeignKey("routing_pools.id", ondelete="RESTRICT"), index=True)
    carrier: Mapped[CodeCarrier] = mapped_column(Enum(CodeCarrier, native_enum=False, length=20))
    config_id: Mapped[str] = mapped_column(String(128), default="")
    qr_url: Mapped[str] = mapped_column(String(500), default="")
    tag_ids: Mapped[list[Any]] = mapped_column(default=list)
    remark_template: Mapped[str] = mapped_column(String(200), default="")
    welcome_message: Mapped[str] = mapped_column(Text, default="")
    # Used for cost per add when no channel_costs row names this code's state.
    cost_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[CodeStatus] = mapped_column(
        Enum(CodeStatus, native_enum=False, length=20), default=CodeStatus.active
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelAdd(Base):
    """A customer added through a code, to an account, at a time (one row per code, customer, account)."""

    __tablename__ = "channel_adds"
    __table_args__ = (
        UniqueConstraint("code_id", "customer_id", "account_id"),
        Index("ix_channel_adds_org_code_at", "org_id", "code_id", "added_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    code_id: Mapped[int] = mapped_column(ForeignKey("channel_codes.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    added_at: Mapped[datetime]


class AccountDayLoad(Base):
    """Per account and local day: adds counted against the daily cap, and reservations not yet added.

    The routing reservation is one conditional UPDATE on this row, so two concurrent adds can never
    both take the last free place (the row lock serialises them on PostgreSQL, the write lock on SQLite).
    """

    __tablename__ = "account_day_loads"
    __table_args__ = (UniqueConstraint("account_id", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    day: Mapped[date]
    adds: Mapped[int] = mapped_column(default=0)
    pending: Mapped[int] = mapped_column(default=0)


class AccountAlert(Base):
    """Something about an account an admin should look at; one per account, kind and local day."""

    __tablename__ = "account_alerts"
    __table_args__ = (
        UniqueConstraint("org_id", "account_id", "kind", "day"),
        Index("ix_account_alerts_org_open", "org_id", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[AlertKind] = mapped_column(Enum(AlertKind, native_enum=False, length=30))
    day: Mapped[date]
    message: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]


class TouchKind(enum.StrEnum):
    """First touch never changes once set; last touch moves with every new add."""

    first = "first"
    last = "last"


class CustomerTouch(Base):
    """A customer's first- or last-touch source: code, channel, campaign and content item."""

    __tablename__ = "customer_touches"
    __table_args__ = (UniqueConstraint("customer_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[TouchKind] = mapped_column(Enum(TouchKind, native_enum=False, length=10))
    code_id: Mapped[int | None] = mapped_column(ForeignKey("channel_codes.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(60))
    campaign: Mapped[str] = mapped_column(String(120), default="")
    content_item: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime]
