"""WeCom tables: encrypted credentials per organization, the callback inbox, welcome-message sends and the
last reconciliation report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"


class WeComCredential(Base):
    """One organization's WeCom app: corp id in clear, secret / callback token / EncodingAESKey encrypted."""

    __tablename__ = "wecom_credentials"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), unique=True)
    corp_id: Mapped[str] = mapped_column(String(64))
    # Fernet tokens (base64 text); see credentials.py for the key derivation.
    secret_enc: Mapped[str] = mapped_column(Text)
    token_enc: Mapped[str] = mapped_column(Text)
    aes_key_enc: Mapped[str] = mapped_column(Text)
    base_url: Mapped[str] = mapped_column(String(200), default=DEFAULT_BASE_URL)
    welcome_text: Mapped[str] = mapped_column(Text, default="")
    #: The AgentId of the self-built app whose page is the chat sidebar ("" until entered).
    agent_id: Mapped[str] = mapped_column(String(20), default="", server_default="")
    # Write tags and remarks changed in siyu back to WeCom (customers/writeback.py); on unless turned off.
    writeback_enabled: Mapped[bool] = mapped_column(default=True)
    last_test_at: Mapped[datetime | None]
    last_test_ok: Mapped[bool | None]
    last_test_message: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


#: Rows still to apply, the only ones the drain reads: small indexes however long the table grows.
_WAITING = text("processed_at IS NULL")


class InboxItem(Base):
    """A verified inbound webhook, stored before it is processed; (org, source, external_key) dedupes retries.

    ``partition_key`` names what the event is about (one contact, one group chat, the tag library): rows of
    one key are applied in id order, rows of different keys in parallel (see ``siyu.wecom.tasks``)."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("org_id", "source", "external_key"),
        Index("ix_inbox_source_processed_at_id", "source", "processed_at", "id"),
        Index(
            "ix_inbox_waiting_partition_key_id",
            "partition_key",
            "id",
            postgresql_where=_WAITING,
            sqlite_where=_WAITING,
        ),
        # The drain's reads of the waiting rows in id order (on the index above, an ORDER BY id sorts).
        Index("ix_inbox_waiting_source_id", "source", "id", postgresql_where=_WAITING, sqlite_where=_WAITING),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(20))
    external_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(80), default="")
    partition_key: Mapped[str] = mapped_column(String(160), default="", server_default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)


class WelcomeSend(Base):
    """A welcome message reserved (row written before the API call) per WelcomeCode: never sent twice."""

    __tablename__ = "wecom_welcome_sends"
    __table_args__ = (UniqueConstraint("org_id", "welcome_code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    welcome_code: Mapped[str] = mapped_column(String(128))
    external_userid: Mapped[str] = mapped_column(String(128))
    userid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="reserved")  # reserved, sent, expired, failed
    error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
