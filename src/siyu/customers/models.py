"""The customer hub: profiles, identities, follow relations, tags, notes and merge audits."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Computed, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId


class Stage(enum.StrEnum):
    """Lifecycle stage, in the order a customer normally moves through them."""

    new = "new"
    contacted = "contacted"
    retained = "retained"
    engaged = "engaged"
    converted = "converted"
    repeat = "repeat"
    #: No account is a contact of the customer any more (every follow ended).
    lost = "lost"


class Gender(enum.StrEnum):
    """As reported by the carrier (WeCom reports 0 unknown, 1 male, 2 female)."""

    unknown = "unknown"
    male = "male"
    female = "female"


class IdentityKind(enum.StrEnum):
    """Identifiers that name the same person across platforms; a shared one merges profiles."""

    mobile = "mobile"
    wecom_external_userid = "wecom_external_userid"
    unionid = "unionid"
    openid = "openid"
    douyin_open_id = "douyin_open_id"
    taobao_buyer_nick = "taobao_buyer_nick"


class FollowStatus(enum.StrEnum):
    """Whether the friendship between account and customer still stands, and who ended it."""

    active = "active"
    deleted_by_customer = "deleted_by_customer"
    deleted_by_staff = "deleted_by_staff"


class Customer(Base):
    """One person as the brand knows them. A merged-away profile keeps a pointer to its survivor."""

    __tablename__ = "customers"
    __table_args__ = (
        Index("ix_customers_org_stage_id", "org_id", "stage", "id"),
        Index("ix_customers_org_source_id", "org_id", "source", "id"),
        Index("ix_customers_org_mobile", "org_id", "mobile"),
        Index("ix_customers_org_name", "org_id", "name"),
        Index("ix_customers_org_created_at", "org_id", "created_at"),
        # The analytics projection finds changed profiles (edits, merges) by updated_at.
        Index("ix_customers_updated_at", "updated_at"),
        # The unfiltered list walks this backwards (newest first) instead of sorting the organization.
        Index("ix_customers_org_id", "org_id", "id"),
        # "Last 4 digits" search, an equality on an indexed column instead of a suffix scan.
        Index("ix_customers_org_mobile_last4", "org_id", "mobile_last4", "id"),
        # When CLV was computed last (the CLV page), read from the index's end.
        Index("ix_customers_org_clv_updated_at", "org_id", "clv_updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120), default="")
    mobile: Mapped[str | None] = mapped_column(String(11))
    # Derived by the database from ``mobile`` (no writer can forget it); same SQL on SQLite and PostgreSQL.
    mobile_last4: Mapped[str | None] = mapped_column(
        String(4), Computed("substr(mobile, length(mobile) - 3)")
    )
    gender: Mapped[Gender] = mapped_column(Enum(Gender, native_enum=False, length=10), default=Gender.unknown)
    region: Mapped[str | None] = mapped_column(String(60))
    stage: Mapped[Stage] = mapped_column(Enum(Stage, native_enum=False, length=20), default=Stage.new)
    # The stage the lifecycle rules derived last (customers/stages.py); NULL: as ``stage``. A stage set
    # by hand holds until the rules derive a different one.
    stage_by_rules: Mapped[Stage | None] = mapped_column(Enum(Stage, native_enum=False, length=20))
    source: Mapped[str | None] = mapped_column(String(60))
    source_detail: Mapped[str | None] = mapped_column(String(200))
    intent: Mapped[str | None] = mapped_column(String(60))
    remark: Mapped[str] = mapped_column(String(200), default="")
    remark_is_manual: Mapped[bool] = mapped_column(default=False)
    consent_marketing: Mapped[bool] = mapped_column(default=False)
    consent_analytics: Mapped[bool] = mapped_column(default=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Written by the CLV job (siyu.analytics.clv_job); NULL until a customer has an order and a fit ran.
    clv_fen: Mapped[int | None]
    p_alive: Mapped[float | None]
    expected_purchases_365d: Mapped[float | None]
    clv_updated_at: Mapped[datetime | None]
    # Set when the person's data was erased on request (PIPL): the row stays, de-identified, so that
    # orders and events keep their customer for the books; it is hidden from every list and page.
    erased_at: Mapped[datetime | None]


class CustomerIdentity(Base):
    """An identifier of a customer on some platform; unique per organization, which drives merges."""

    __tablename__ = "customer_identities"
    __table_args__ = (UniqueConstraint("org_id", "kind", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key to organizations: the customer's key already ties the row to a live organization
    # (and its deletion cascades through customers); a second check per row cost the sync ~3 us a row.
    org_id: Mapped[int] = mapped_column(BigId)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[IdentityKind] = mapped_column(Enum(IdentityKind, native_enum=False, length=40))
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowRelation(Base):
    """Which carrier account has this customer as a contact, since when, and through which source."""

    __tablename__ = "follow_relations"
    __table_args__ = (
        UniqueConstraint("org_id", "customer_id", "account_id"),
        Index("ix_follow_relations_account_customer", "account_id", "customer_id"),
        # Account health counts the week's adds and ends per account: index-only ranges, not a scan.
        Index("ix_follow_relations_org_since", "org_id", "since", "account_id"),
        Index("ix_follow_relations_org_ended_at", "org_id", "ended_at", "account_id", "status"),
        # Per account, as account health counts them: a range each, no sort of every account's rows.
        Index("ix_follow_relations_org_account_since", "org_id", "account_id", "since"),
        Index("ix_follow_relations_org_account_status_ended", "org_id", "account_id", "status", "ended_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(BigId)  # no foreign key: see CustomerIdentity.org_id
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    since: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str | None] = mapped_column(String(60))
    state: Mapped[str | None] = mapped_column(String(30))
    status: Mapped[FollowStatus] = mapped_column(
        Enum(FollowStatus, native_enum=False, length=30), default=FollowStatus.active
    )
    ended_at: Mapped[datetime | None]


class TagGroup(Base):
    """A group of tags, like a WeCom corporate tag group (e.g. "Intent", "Pain point").

    ``strategy_id``: the carrier's rule group (WeCom 规则组) when the group mirrors rule-group tags, which
    WeCom keeps apart from its corp tag library; None for every other group."""

    __tablename__ = "tag_groups"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(60))
    external_id: Mapped[str | None] = mapped_column(String(64))
    sort_order: Mapped[int] = mapped_column(default=0)
    strategy_id: Mapped[int | None]


class Tag(Base):
    """A tag inside a group; WeCom corporate tags map onto these by external_id."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("org_id", "group_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("tag_groups.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    external_id: Mapped[str | None] = mapped_column(String(64))
    sort_order: Mapped[int] = mapped_column(default=0)


class CustomerTag(Base):
    """A tag on a customer. The (tag_id, customer_id) index serves "customers with tag X"."""

    __tablename__ = "customer_tags"
    __table_args__ = (Index("ix_customer_tags_tag_customer", "tag_id", "customer_id"),)

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigId)  # no foreign key: see CustomerIdentity.org_id
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Note(Base):
    """A free-text note an operator keeps for later private chats."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MergeAudit(Base):
    """Record of one profile merged into another: who, why, and what moved."""

    __tablename__ = "merge_audits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    merged_id: Mapped[int] = mapped_column(BigId)
    reason: Mapped[str] = mapped_column(String(200))
    moved: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentScope(enum.StrEnum):
    """What a consent covers; each scope drives one flag on the profile."""

    marketing = "marketing"
    analytics = "analytics"


class ConsentSource(enum.StrEnum):
    """How the person gave or withdrew consent."""

    form = "form"
    chat = "chat"
    phone = "phone"
    in_person = "in_person"
    import_ = "import"
    unspecified = "unspecified"


class ConsentRecord(Base):
    """One consent given or withdrawn, with when and how: the latest per scope sets the profile's flag."""

    __tablename__ = "consent_records"
    __table_args__ = (Index("ix_consent_records_customer_scope_at", "customer_id", "scope", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(BigId)  # no foreign key: see CustomerIdentity.org_id
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    scope: Mapped[ConsentScope] = mapped_column(Enum(ConsentScope, native_enum=False, length=20))
    granted: Mapped[bool]
    source: Mapped[ConsentSource] = mapped_column(Enum(ConsentSource, native_enum=False, length=20))
    at: Mapped[datetime]
    note: Mapped[str] = mapped_column(String(200), default="")
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
