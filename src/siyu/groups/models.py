"""Customer groups (WeCom external group chats) and their members, staff or customers."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId

#: A WeCom customer group holds at most 500 members (DOMAIN.md).
MAX_GROUP_MEMBERS = 500


class GroupStatus(enum.StrEnum):
    """Whether the group still exists on the carrier."""

    active = "active"
    dismissed = "dismissed"


class MemberKind(enum.StrEnum):
    """A group member is one of the brand's staff (a WeCom member) or a customer."""

    staff = "staff"
    customer = "customer"


class CustomerGroup(Base):
    """A WeCom external group chat owned by one of the organization's accounts."""

    __tablename__ = "customer_groups"
    __table_args__ = (UniqueConstraint("org_id", "chat_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    chat_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120), default="")
    owner_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    owner_userid: Mapped[str] = mapped_column(String(64), default="")
    notice: Mapped[str] = mapped_column(Text, default="")
    member_count: Mapped[int] = mapped_column(default=0)
    member_version: Mapped[str] = mapped_column(String(40), default="")
    status: Mapped[GroupStatus] = mapped_column(
        Enum(GroupStatus, native_enum=False, length=20), default=GroupStatus.active
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    dismissed_at: Mapped[datetime | None]


class GroupMember(Base):
    """One person's membership of a group: when and how they joined, and when they left."""

    __tablename__ = "group_members"
    __table_args__ = (
        UniqueConstraint("group_id", "member_userid"),
        Index("ix_group_members_customer_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(ForeignKey("customer_groups.id", ondelete="CASCADE"))
    member_userid: Mapped[str] = mapped_column(String(128))
    kind: Mapped[MemberKind] = mapped_column(Enum(MemberKind, native_enum=False, length=20))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 1 invited directly, 2 invited by link, 3 QR code (a carrier's other codes are mapped to these)
    join_scene: Mapped[int | None]
    quit_at: Mapped[datetime | None]
    quit_scene: Mapped[int | None]
