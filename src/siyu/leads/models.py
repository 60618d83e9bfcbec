"""Lead intake tables: per-org Douyin app config, the webhook inbox, comments, leads and reply templates."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId


class Platform(enum.StrEnum):
    """Where a comment was written; Douyin arrives by webhook, the others by file import."""

    douyin = "douyin"
    xiaohongshu = "xiaohongshu"
    kuaishou = "kuaishou"
    live = "live"


class LeadStatus(enum.StrEnum):
    """Where a lead stands: waiting for a reply, replied (code given), or dismissed by an operator."""

    open = "open"
    replied = "replied"
    dismissed = "dismissed"


class DouyinApp(Base):
    """An organization's Douyin open-platform app: the webhook is signed with its client secret."""

    __tablename__ = "douyin_apps"
    __table_args__ = (UniqueConstraint("org_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    client_key: Mapped[str] = mapped_column(String(64))
    # Fernet ciphertext (siyu.kit.crypto); the plaintext never reaches the database.
    client_secret_enc: Mapped[str] = mapped_column(String(400))
    # The enterprise account (open_id) whose videos' comments we answer, and its user access token.
    account_open_id: Mapped[str] = mapped_column(String(128), default="")
    access_token_enc: Mapped[str] = mapped_column(String(600), default="")
    api_base_url: Mapped[str] = mapped_column(String(200), default="https://open.douyin.com")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookReceipt(Base):
    """One accepted webhook delivery, unique by its Msg-Id so retries are recognised and ignored."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (UniqueConstraint("org_id", "platform", "msg_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(20))
    msg_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(60))
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Comment(Base):
    """A public comment under a piece of content, classified by intent; unique per platform comment id."""

    __tablename__ = "lead_comments"
    __table_args__ = (
        UniqueConstraint("org_id", "platform", "external_id"),
        Index("ix_lead_comments_org_received_at", "org_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    platform: Mapped[Platform] = mapped_column(Enum(Platform, native_enum=False, length=20))
    external_id: Mapped[str] = mapped_column(String(128))
    item_id: Mapped[str] = mapped_column(String(200), default="")
    item_title: Mapped[str] = mapped_column(String(200), default="")
    commenter_id: Mapped[str] = mapped_column(String(128), default="")
    commenter_name: Mapped[str] = mapped_column(String(120), default="")
    content: Mapped[str] = mapped_column(Text, default="")
    commented_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    intent: Mapped[str] = mapped_column(String(20))
    confidence: Mapped[float] = mapped_column(Float)
    matched_rule: Mapped[str | None] = mapped_column(String(60))
    corrected_intent: Mapped[str | None] = mapped_column(String(20))
    corrected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    corrected_at: Mapped[datetime | None]
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    origin: Mapped[str] = mapped_column(String(20), default="webhook")  # webhook | import


class Lead(Base):
    """A high-intent comment to answer before ``reply_due_at`` (the commenter is still online)."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("comment_id"),
        Index("ix_leads_org_status_due", "org_id", "status", "reply_due_at"),
        Index("ix_leads_org_created_at", "org_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    comment_id: Mapped[int] = mapped_column(ForeignKey("lead_comments.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    intent: Mapped[str] = mapped_column(String(20))
    status: Mapped[LeadStatus] = mapped_column(
        Enum(LeadStatus, native_enum=False, length=20), default=LeadStatus.open
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reply_due_at: Mapped[datetime]
    replied_at: Mapped[datetime | None]
    replied_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reply_text: Mapped[str] = mapped_column(Text, default="")
    # What the commenter got: the channel code's state (it comes back when they add an account) and URL.
    code_state: Mapped[str | None] = mapped_column(String(60), index=True)
    code_url: Mapped[str] = mapped_column(String(500), default="")
    reply_ref: Mapped[str] = mapped_column(String(128), default="")  # the platform's id of our reply
    # When the commenter added an account through the code (set by on_contact_added).
    converted_at: Mapped[datetime | None]


class ReplyTemplate(Base):
    """An organization's suggested reply for one intent; ``{code}`` is replaced by the channel code link."""

    __tablename__ = "lead_reply_templates"
    __table_args__ = (UniqueConstraint("org_id", "intent"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    intent: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
