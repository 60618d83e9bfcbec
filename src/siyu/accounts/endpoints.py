"""REST endpoints for carrier accounts, and for departures: hand a leaving member's customers to another member
(transfers, with their outcomes: succeeded, refused, taker_full, failed, expired).

Departures are for admins and owners: a hand-over reaches across operators' books. WeCom is called with the
organization's stored credentials; a missing configuration answers 404. Their URLs stay under /api/v1/wecom,
where clients already call them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from siyu.accounts import departures, service
from siyu.accounts.models import Account, AccountKind, AccountStatus, TransferKind
from siyu.accounts.schemas import AccountIn, AccountOut, AccountPatch
from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.kit.errors import Invalid
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession
from siyu.wecom.credentials import client_for, load_plain

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])
departures_router = APIRouter(prefix="/api/v1/wecom", tags=["wecom-operations"])


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


# --- departures ------------------------------------------------------------------------------------


def _client(request: Request, db: Session, org_id: int) -> WeComClient:
    return client_for(load_plain(db, org_id, str(request.app.state.settings.resolved_secret_key())))


def _carrier_error(exc: WeComError | WeComInputError) -> Invalid:
    if isinstance(exc, WeComInputError):
        return Invalid(str(exc), field=exc.field)
    return Invalid(str(exc), field="wecom")


class TransferIn(BaseModel):
    """Hand a member's customers (all, or the listed ones) to another member."""

    model_config = ConfigDict(extra="forbid")
    from_account_id: int
    to_account_id: int
    customer_ids: list[int] | None = None
    kind: TransferKind = TransferKind.in_service
    message: str = Field(default="", max_length=200)
    include_groups: bool = Field(
        default=False, description="Also give the member's customer groups to the receiver."
    )


class TransferOut(BaseModel):
    """One customer's hand-over."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    customer_id: int
    external_userid: str
    from_account_id: int
    to_account_id: int
    kind: str
    status: str
    requested_at: datetime
    handover_at: datetime | None
    errcode: int
    detail: str


@departures_router.get("/departures/{account_id}")
def departure(account_id: int, db: DbSession, principal: AdminPrincipal) -> dict[str, int]:
    """How many customers and groups a leaving member has."""
    return departures.departure_summary(db, principal.org_id, account_id)


@departures_router.post("/transfers", status_code=201)
def create_transfer(
    body: TransferIn, request: Request, db: DbSession, principal: AdminPrincipal
) -> dict[str, Any]:
    """Start the hand-over; a third transfer of a customer in 90 days is refused (409 or left_out)."""
    client = _client(request, db, principal.org_id)
    try:
        result = departures.request_transfer(
            db,
            principal.org_id,
            client,
            from_account_id=body.from_account_id,
            to_account_id=body.to_account_id,
            customer_ids=body.customer_ids,
            kind=body.kind,
            message=body.message,
            actor_id=principal.user_id,
        )
        groups = (
            departures.transfer_groups(
                db,
                principal.org_id,
                client,
                from_account_id=body.from_account_id,
                to_account_id=body.to_account_id,
                kind=body.kind,
            )
            if body.include_groups
            else departures.GroupTransferResult()
        )
    except (WeComError, WeComInputError) as exc:
        raise _carrier_error(exc) from exc
    return {
        "groups": {"moved": groups.moved, "failed": groups.failed},
        "requested": [TransferOut.model_validate(r).model_dump(mode="json") for r in result.requested],
        "failed": [TransferOut.model_validate(r).model_dump(mode="json") for r in result.failed],
        "left_out": [o.__dict__ for o in result.left_out],
    }


@departures_router.get("/transfers", response_model=list[TransferOut])
def list_transfers(db: DbSession, principal: AdminPrincipal, from_account_id: int | None = None) -> Any:
    """Recent hand-overs, newest first."""
    return departures.list_transfers(db, principal.org_id, from_account_id=from_account_id)


@departures_router.post("/transfers/poll")
def poll(request: Request, db: DbSession, principal: AdminPrincipal) -> dict[str, int]:
    """Ask WeCom where waiting hand-overs stand now."""
    try:
        return departures.poll_transfers(db, principal.org_id, _client(request, db, principal.org_id))
    except WeComError as exc:
        raise _carrier_error(exc) from exc
