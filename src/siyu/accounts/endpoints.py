"""REST endpoints for carrier accounts."""

from __future__ import annotations

from fastapi import APIRouter, Query

from siyu.accounts import service
from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.accounts.schemas import AccountIn, AccountOut, AccountPatch
from siyu.kit.deps import AdminPrincipal, CurrentPrincipal, DbSession

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])


@router.get("", response_model=list[AccountOut])
def list_accounts(
    db: DbSession,
    principal: CurrentPrincipal,
    kind: AccountKind | None = None,
    status: AccountStatus | None = None,
    operator_id: int | None = Query(default=None, ge=1),
) -> list[Account]:
    """Accounts the caller may see, filterable by kind, status and operator."""
    stmt = service.visible_accounts(principal)
    if kind is not None:
        stmt = stmt.where(Account.kind == kind)
    if status is not None:
        stmt = stmt.where(Account.status == status)
    if operator_id is not None:
        stmt = stmt.where(Account.operator_id == operator_id)
    return list(db.scalars(stmt.order_by(Account.id)))


@router.post("", response_model=AccountOut, status_code=201)
def create_account(body: AccountIn, db: DbSession, principal: AdminPrincipal) -> Account:
    """Register a carrier account (admins)."""
    return service.create_account(db, principal.org_id, body)


@router.get("/{account_id}", response_model=AccountOut)
def get_account(account_id: int, db: DbSession, principal: CurrentPrincipal) -> Account:
    """One account."""
    return service.get_account(db, principal, account_id)


@router.patch("/{account_id}", response_model=AccountOut)
def update_account(account_id: int, body: AccountPatch, db: DbSession, principal: AdminPrincipal) -> Account:
    """Change an account's name, operator, caps or status (admins)."""
    return service.update_account(db, service.get_account(db, principal, account_id), body)
