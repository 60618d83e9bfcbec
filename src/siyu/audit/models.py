"""The audit log: one row per admin action (exports, erasures, role and credential changes, bulk sends)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from siyu.kit.clock import utcnow
from siyu.kit.db import Base, BigId


class AuditEntry(Base):
    """Who did what to which target, when. Never updated (a database trigger refuses updates); rows go only
    by the retention job. It holds ids and masked values only, so an erasure leaves nothing personal here."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_org_id_id", "org_id", "id"),
        Index("ix_audit_log_org_action_id", "org_id", "action", "id"),
        Index("ix_audit_log_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # No foreign key: the row must outlive (and never be rewritten by) changes to the user.
    actor_id: Mapped[int | None] = mapped_column(BigId)
    actor_name: Mapped[str] = mapped_column(String(120), default="")
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str] = mapped_column(String(40), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
