"""The audit log API: admins read it, filtered; nobody writes or changes it through the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from siyu.audit import service
from siyu.audit.service import AuditAction, AuditFilters
from siyu.kit.pagination import Page
from siyu.privacy.schemas import AuditEntryOut
from siyu.tenancy.deps import AdminPrincipal, DbSession

router = APIRouter(prefix="/api/v1", tags=["audit"])
MAX_ID = 2**63 - 1


@router.get("/audit", response_model=Page[AuditEntryOut])
def list_audit(
    db: DbSession,
    principal: AdminPrincipal,
    action: AuditAction | None = None,
    actor_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    target_type: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    target_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> Page[AuditEntryOut]:
    """The organization's audit entries, newest first, keyset paginated (admins)."""
    filters = AuditFilters(action, actor_id, target_type, target_id, since, until)
    rows, next_cursor = service.list_entries(db, principal.org_id, filters, cursor, limit)
    return Page[AuditEntryOut](items=[AuditEntryOut.model_validate(r) for r in rows], next_cursor=next_cursor)
