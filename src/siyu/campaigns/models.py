"""Campaign tables: mass messages and their send records (one row per customer for messages to customers,
one row per group for messages to customer groups), and the per-organization cap policy."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy import true as sql_true
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId


class MassCapPolicy(enum.StrEnum):
    """How many mass messages one customer may receive: per calendar month, week or day (Asia/Shanghai)."""

    month_days = "month_days"  # as many a month as the month has days (WeCom's current rule)
    week_7 = "week_7"
    day_1 = "day_1"


class WeComOrgSettings(Base):
    """Per-organization WeCom operation settings; its row also serialises cap reservations per org."""

    __tablename__ = "wecom_org_settings"

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    mass_cap_policy: Mapped[MassCapPolicy] = mapped_column(
        Enum(MassCapPolicy, native_enum=False, length=20), default=MassCapPolicy.month_days
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MassMessageStatus(enum.StrEnum):
    """Lifecycle of a mass message: drafted; reserved and being submitted by the worker; submitted (every
    batch answered); failed (no recipient could be submitted); or cancelled by an admin (cancelling until
    the worker has settled the batch it may have been calling)."""

    draft = "draft"
    submitting = "submitting"
    submitted = "submitted"
    failed = "failed"
    cancelling = "cancelling"
    cancelled = "cancelled"


class MassChatType(enum.StrEnum):
    """Who a mass message goes to: customers one by one (WeCom chat_type single) or customer groups."""

    single = "single"
    group = "group"


class MassMessage(Base):
    """A mass message to chosen customers (through each customer's member) or to chosen customer groups
    (through each group's owner; `group_ids` instead of `customer_ids`)."""

    __tablename__ = "wecom_mass_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    customer_ids: Mapped[list[Any]] = mapped_column(default=list)
    chat_type: Mapped[MassChatType] = mapped_column(
        Enum(MassChatType, native_enum=False, length=10), default=MassChatType.single, server_default="single"
    )
    group_ids: Mapped[list[Any]] = mapped_column(default=list, server_default=sql_text("'[]'"))
    status: Mapped[MassMessageStatus] = mapped_column(
        Enum(MassMessageStatus, native_enum=False, length=20), default=MassMessageStatus.draft
    )
    left_out: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A marketing message only reaches customers who consented to marketing (Customer.consent_marketing).
    marketing: Mapped[bool] = mapped_column(default=True, server_default=sql_true())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]


class SendStatus(enum.StrEnum):
    """One recipient's send: reserved before the call, then submitted / sent / failed / not_friend, or
    cancelled before its batch reached WeCom."""

    reserved = "reserved"
    submitted = "submitted"
    sent = "sent"
    failed = "failed"
    not_friend = "not_friend"
    unsent = "unsent"
    cancelled = "cancelled"


class BatchState(enum.StrEnum):
    """Where one add_msg_template call stands. `calling` is committed BEFORE the call is made, so a batch
    found `calling` by a later run may or may not have reached WeCom: that run looks for its task."""

    planned = "planned"
    calling = "calling"
    submitted = "submitted"
    refused = "refused"  # WeCom refused the whole call (e.g. the sender left): its recipients failed
    cancelled = "cancelled"


class MassBatch(Base):
    """One sender's share of a mass message sent as one WeCom task (at most `per_task` recipients): the
    record of the call, written before the call is made, and of the task WeCom answered with."""

    __tablename__ = "wecom_mass_batches"
    __table_args__ = (
        # A WeCom task belongs to one batch: crash recovery can never give one task to two messages.
        UniqueConstraint("org_id", "msgid"),
        Index("ix_wecom_mass_batches_message_seq", "message_id", "seq"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("wecom_mass_messages.id", ondelete="CASCADE"))
    seq: Mapped[int]
    sender: Mapped[str] = mapped_column(String(64))  # the member's WeCom userid
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    recipients: Mapped[int]
    state: Mapped[BatchState] = mapped_column(
        Enum(BatchState, native_enum=False, length=20), default=BatchState.planned
    )
    msgid: Mapped[str | None] = mapped_column(String(64))
    called_at: Mapped[datetime | None]  # when the (last) call was started
    settled_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(300), default="")  # in words, for the console


class _SendRecord:
    """The columns a send record has whether it goes to a customer or to a customer group: who sends it, where
    it stands, WeCom's task id and when it was reserved and delivered."""

    # sort_order -1: mixin columns otherwise follow the class's own, and the keys belong first in the table.
    id: Mapped[int] = mapped_column(BigId, primary_key=True, sort_order=-1)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), sort_order=-1)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("wecom_mass_messages.id", ondelete="CASCADE"), sort_order=-1
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    status: Mapped[SendStatus] = mapped_column(
        Enum(SendStatus, native_enum=False, length=20), default=SendStatus.reserved
    )
    msgid: Mapped[str] = mapped_column(String(64), default="")
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("wecom_mass_batches.id", ondelete="SET NULL"), index=True
    )
    reserved_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(String(300), default="")


class MassSend(_SendRecord, Base):
    """One customer's part of a mass message, written BEFORE WeCom is called: never sent twice."""

    __tablename__ = "wecom_mass_sends"
    __table_args__ = (
        UniqueConstraint("message_id", "customer_id"),
        Index("ix_wecom_mass_sends_org_customer_reserved", "org_id", "customer_id", "reserved_at"),
    )

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    external_userid: Mapped[str] = mapped_column(String(128))


class MassGroupSend(_SendRecord, Base):
    """One customer group's part of a group mass message, written BEFORE WeCom is called: never sent twice.

    WeCom caps what a group receives like a customer ("每位客户/每个客户群"), so these rows count
    against the organization's cap policy per group, as MassSend rows do per customer."""

    __tablename__ = "wecom_mass_group_sends"
    __table_args__ = (
        UniqueConstraint("message_id", "group_id"),
        Index("ix_wecom_mass_group_sends_org_group_reserved", "org_id", "group_id", "reserved_at"),
    )

    group_id: Mapped[int] = mapped_column(ForeignKey("customer_groups.id", ondelete="CASCADE"))
    chat_id: Mapped[str] = mapped_column(String(64))
