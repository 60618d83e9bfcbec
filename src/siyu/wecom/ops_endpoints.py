"""WeCom operations API: reconciliation, mass messages to customers or customer groups (caps, preview,
submit, results), transfers (with their outcomes: succeeded, refused, taker_full, failed, expired).

All of it is for admins and owners: a mass message or a hand-over reaches across operators' books.
WeCom is called with the organization's stored credentials; a missing configuration answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.kit.deps import AdminPrincipal, DbSession
from siyu.kit.errors import Invalid, NotFound
from siyu.wecom import massmsg, massmsg_groups, tasks_sync, transfers
from siyu.wecom.credentials import client_for, load_plain
from siyu.wecom.models_ops import MassCapPolicy, MassChatType, TransferKind
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


# --- mass messages ---------------------------------------------------------------------------------


class CapPolicyIn(BaseModel):
    """The per-customer mass-message cap."""

    model_config = ConfigDict(extra="forbid")
    mass_cap_policy: MassCapPolicy


class MassMessageIn(BaseModel):
    """A mass message to chosen customers."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(default="", max_length=4000)
    customer_ids: list[int] = Field(min_length=1, max_length=massmsg.MAX_RECIPIENTS)
    attachments: list[dict[str, Any]] = Field(default_factory=list, max_length=9)


class GroupMassMessageIn(BaseModel):
    """A mass message to customer groups: the listed groups, or every active group one member owns."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(default="", max_length=4000)
    group_ids: list[int] | None = Field(default=None, min_length=1, max_length=massmsg_groups.MAX_GROUPS)
    owner_account_id: int | None = Field(
        default=None, description="Send to every active group this member owns."
    )
    attachments: list[dict[str, Any]] = Field(default_factory=list, max_length=9)


class ExcludedOut(BaseModel):
    """A customer left out, and why."""

    customer_id: int
    reason: str
    detail: str


class ExcludedGroupOut(BaseModel):
    """A customer group left out of a group message, and why."""

    group_id: int
    reason: str
    detail: str


class MassMessageOut(BaseModel):
    """A stored mass message (to customers, or to groups: chat_type "group" with group_ids)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    text: str
    status: str
    chat_type: str
    customer_ids: list[int]
    group_ids: list[int]
    created_at: datetime
    submitted_at: datetime | None


class PreviewOut(BaseModel):
    """Who a message would reach (customers or groups, per sender member) and who is left out and why."""

    chat_type: str
    recipients: int
    cap: int
    per_sender: dict[str, int]
    left_out: list[ExcludedOut | ExcludedGroupOut]


@router.get("/mass-messages/settings")
def get_cap(db: DbSession, principal: AdminPrincipal) -> dict[str, str]:
    """The organization's mass-message cap policy."""
    return {"mass_cap_policy": massmsg.org_settings(db, principal.org_id).mass_cap_policy.value}


@router.put("/mass-messages/settings")
def put_cap(body: CapPolicyIn, db: DbSession, principal: AdminPrincipal) -> dict[str, str]:
    """Choose month_days (default), week_7 or day_1."""
    return {
        "mass_cap_policy": massmsg.set_cap_policy(
            db, principal.org_id, body.mass_cap_policy
        ).mass_cap_policy.value
    }


@router.post("/mass-messages", response_model=MassMessageOut, status_code=201)
def create_mass_message(body: MassMessageIn, db: DbSession, principal: AdminPrincipal) -> Any:
    """Store a mass message draft."""
    return massmsg.create_message(
        db,
        principal.org_id,
        text=body.text,
        customer_ids=body.customer_ids,
        attachments=body.attachments,
        actor_id=principal.user_id,
    )


@router.post("/mass-messages/groups", response_model=MassMessageOut, status_code=201)
def create_group_mass_message(body: GroupMassMessageIn, db: DbSession, principal: AdminPrincipal) -> Any:
    """Store a draft to customer groups (group_ids, or owner_account_id for all of a member's groups)."""
    return massmsg_groups.create_group_message(
        db,
        principal.org_id,
        text=body.text,
        group_ids=body.group_ids,
        owner_account_id=body.owner_account_id,
        attachments=body.attachments,
        actor_id=principal.user_id,
    )


@router.get("/mass-messages/{message_id}/preview", response_model=PreviewOut)
def preview_mass_message(message_id: int, db: DbSession, principal: AdminPrincipal) -> PreviewOut:
    """Who (customers or groups) would get the message through which member, and who is left out and why."""
    msg = massmsg.get_message(db, principal.org_id, message_id)
    p = massmsg.preview(db, principal.org_id, msg)
    shape = ExcludedGroupOut if msg.chat_type == MassChatType.group else ExcludedOut
    return PreviewOut(
        chat_type=msg.chat_type.value,
        recipients=p.recipients,
        cap=p.cap,
        per_sender={k: len(v) for k, v in p.by_sender.items()},
        left_out=[shape(**o.__dict__) for o in p.left_out],
    )


@router.post("/mass-messages/{message_id}/submit")
def submit_mass_message(
    message_id: int, request: Request, db: DbSession, principal: AdminPrincipal
) -> dict[str, Any]:
    """Reserve the sends under the cap and submit one WeCom task per sender member."""
    factory = request.app.state.sessionmaker
    massmsg.get_message(db, principal.org_id, message_id)
    client = _client(request, db, principal.org_id)
    db.commit()  # submit() runs its own transactions; this request's must not hold the write lock
    try:
        result = massmsg.submit(factory, principal.org_id, message_id, client)
    except (WeComError, WeComInputError) as exc:
        raise _carrier_error(exc) from exc
    return {
        "message_id": result.message_id,
        "reserved": result.reserved,
        "submitted": result.submitted,
        "recovered": result.recovered,
        "failed": result.failed,
        "msgids": result.msgids,
        "left_out": [o.__dict__ for o in result.left_out],
    }


@router.get("/mass-messages/{message_id}/results")
def mass_message_results(
    message_id: int,
    request: Request,
    db: DbSession,
    principal: AdminPrincipal,
    refresh: bool = Query(default=False, description="Read delivery back from WeCom first."),
) -> dict[str, Any]:
    """Counts per send status (reserved, submitted, sent, not_friend, failed, unsent); per group for groups."""
    msg = massmsg.get_message(db, principal.org_id, message_id)
    if refresh:
        try:
            counts = massmsg.refresh_results(
                db, principal.org_id, msg.id, _client(request, db, principal.org_id)
            )
        except WeComError as exc:
            raise _carrier_error(exc) from exc
    else:
        counts = massmsg.send_counts(db, msg.id)
    out: dict[str, Any] = {
        "message_id": msg.id,
        "chat_type": msg.chat_type.value,
        "status": msg.status.value,
        "counts": counts,
        "left_out": msg.left_out,
    }
    if msg.chat_type == MassChatType.group:
        out["groups"] = [
            dict(g, sent_at=g["sent_at"].isoformat() if g["sent_at"] else None)
            for g in massmsg_groups.group_sends(db, principal.org_id, msg.id)
        ]
    return out


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
