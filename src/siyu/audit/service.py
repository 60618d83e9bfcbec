"""Recording and reading the audit log. ``record`` is the one way any domain writes an entry; it flushes in
the caller's transaction, so an action that rolls back leaves no entry and one that commits always has one.

Entries hold ids and masked values only: never a customer's name, full mobile or platform ids, so that
erasing a person leaves nothing of them here and the log can be kept for years.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.audit.models import AuditEntry
from siyu.kit.bulk import delete_in_batches
from siyu.kit.clock import utcnow
from siyu.tenancy.principal import Principal

MAX_PAGE = 200


class AuditAction(enum.StrEnum):
    """Every action the audit log records."""

    customer_exported = "customer_exported"
    customer_erased = "customer_erased"
    mobile_lookup = "mobile_lookup"
    user_created = "user_created"
    user_role_changed = "user_role_changed"
    api_token_created = "api_token_created"
    api_token_revoked = "api_token_revoked"
    wecom_credentials_saved = "wecom_credentials_saved"
    douyin_app_saved = "douyin_app_saved"
    mass_message_submitted = "mass_message_submitted"
    retention_changed = "retention_changed"


def record(
    db: Session,
    org_id: int,
    action: AuditAction,
    *,
    actor: Principal | None = None,
    target_type: str = "",
    target_id: int | str | None = None,
    **details: Any,
) -> AuditEntry:
    """Append one entry (flushes, never commits). ``actor`` None: the system itself (a job)."""
    entry = AuditEntry(
        org_id=org_id,
        actor_id=actor.user_id if actor else None,
        actor_name=actor.name if actor else "",
        action=AuditAction(action).value,
        target_type=target_type,
        target_id="" if target_id is None else str(target_id),
        details=details,
        created_at=utcnow(),
    )
    db.add(entry)
    db.flush()
    return entry


@dataclass(frozen=True)
class AuditFilters:
    """Filters of the audit log; all given ones must hold."""

    action: AuditAction | None = None
    actor_id: int | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_entries(
    db: Session, org_id: int, filters: AuditFilters | None = None, cursor: int | None = None, limit: int = 50
) -> tuple[list[AuditEntry], int | None]:
    """One keyset page of an organization's entries, newest first: (rows, next_cursor). Callers check
    that the reader may administer the organization."""
    filters = filters or AuditFilters()
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(AuditEntry).where(AuditEntry.org_id == org_id)
    if filters.action is not None:
        stmt = stmt.where(AuditEntry.action == filters.action.value)
    if filters.actor_id is not None:
        stmt = stmt.where(AuditEntry.actor_id == filters.actor_id)
    if filters.target_type:
        stmt = stmt.where(AuditEntry.target_type == filters.target_type)
    if filters.target_id:
        stmt = stmt.where(AuditEntry.target_id == filters.target_id)
    if filters.since is not None:
        stmt = stmt.where(AuditEntry.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEntry.created_at < filters.until)
    if cursor is not None:
        stmt = stmt.where(AuditEntry.id < cursor)
    rows = list(db.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], rows[limit - 1].id


def prune(factory: sessionmaker[Session], keep_days: dict[int, int], batch: int = 10_000) -> int:
    """Delete each organization's entries older than its ``keep_days`` (org id -> days), ``batch`` rows per
    transaction; returns how many were deleted."""
    now = utcnow()
    deleted = 0
    for org_id, days in keep_days.items():
        cutoff = now - timedelta(days=days)
        deleted += delete_in_batches(
            factory,
            AuditEntry.__table__,
            and_(AuditEntry.org_id == org_id, AuditEntry.created_at < cutoff),
            batch,
        )
    return deleted
