"""WeCom operations API: reconciliation and transfers (with their outcomes: succeeded, refused, taker_full,
failed, expired).

All of it is for admins and owners: a hand-over reaches across operators' books.
WeCom is called with the organization's stored credentials; a missing configuration answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.kit.deps import AdminPrincipal, DbSession
from siyu.kit.errors import Invalid, NotFound
from siyu.wecom import tasks_sync, transfers
from siyu.wecom.credentials import client_for, load_plain
from siyu.wecom.models_ops import TransferKind
from siyu.wecom.sync import last_run

router = APIRouter(prefix="/api/v1/wecom", tags=["wecom-operations"])


def _client(request: Request, db: Session, org_id: int) -> WeComClient:
    return client_for(load_plain(db, org_id, str(request.app.state.settings.resolved_secret_key())))


def _carrier_error(exc: WeComError | WeComInputError) -> Invalid:
    if isinstance(exc, WeComInputError):
        return Invalid(str(exc), field=exc.field)
    return Invalid(str(exc), field="wecom")


# --- reconciliation --------------------------------------------------------------------------------


class SyncRunOut(BaseModel):
    """The last reconciliation: status, times, error and the report."""

    model_config = ConfigDict(from_attributes=True)

    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str
    report: dict[str, Any]


@router.get("/sync/last", response_model=SyncRunOut)
def get_last_sync(db: DbSession, principal: AdminPrincipal) -> Any:
    """The organization's last reconciliation with WeCom and what it changed."""
    run = last_run(db, principal.org_id)
    if run is None:
        raise NotFound("no WeCom sync has run yet for this organization", field="sync")
    return run


@router.post("/sync", status_code=202)
def start_sync(request: Request, db: DbSession, principal: AdminPrincipal) -> dict[str, Any]:
    """Enqueue a full reconciliation (runs inline when the worker is in immediate mode)."""
    tasks_sync.start_sync(db, principal.org_id, str(request.app.state.settings.resolved_secret_key()))
    return {"enqueued": True}


# --- transfers -------------------------------------------------------------------------------------


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


@router.get("/departures/{account_id}")
def departure(account_id: int, db: DbSession, principal: AdminPrincipal) -> dict[str, int]:
    """How many customers and groups a leaving member has."""
    return transfers.departure_summary(db, principal.org_id, account_id)


@router.post("/transfers", status_code=201)
def create_transfer(
    body: TransferIn, request: Request, db: DbSession, principal: AdminPrincipal
) -> dict[str, Any]:
    """Start the hand-over; a third transfer of a customer in 90 days is refused (409 or left_out)."""
    client = _client(request, db, principal.org_id)
    try:
        result = transfers.request_transfer(
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
            transfers.transfer_groups(
                db,
                principal.org_id,
                client,
                from_account_id=body.from_account_id,
                to_account_id=body.to_account_id,
                kind=body.kind,
            )
            if body.include_groups
            else transfers.GroupTransferResult()
        )
    except (WeComError, WeComInputError) as exc:
        raise _carrier_error(exc) from exc
    return {
        "groups": {"moved": groups.moved, "failed": groups.failed},
        "requested": [TransferOut.model_validate(r).model_dump(mode="json") for r in result.requested],
        "failed": [TransferOut.model_validate(r).model_dump(mode="json") for r in result.failed],
        "left_out": [o.__dict__ for o in result.left_out],
    }


@router.get("/transfers", response_model=list[TransferOut])
def list_transfers(db: DbSession, principal: AdminPrincipal, from_account_id: int | None = None) -> Any:
    """Recent hand-overs, newest first."""
    return transfers.list_transfers(db, principal.org_id, from_account_id=from_account_id)


@router.post("/transfers/poll")
def poll(request: Request, db: DbSession, principal: AdminPrincipal) -> dict[str, int]:
    """Ask WeCom where waiting hand-overs stand now."""
    try:
        return transfers.poll_transfers(db, principal.org_id, _client(request, db, principal.org_id))
    except WeComError as exc:
        raise _carrier_error(exc) from exc
