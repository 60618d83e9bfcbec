"""Campaign API: mass messages to customers or customer groups (caps, preview, submit, results).

All of it is for admins and owners: a mass message reaches across operators' books. The messages go out
through WeCom with the organization's stored credentials; a missing configuration answers 404. The URLs
stay under /api/v1/wecom, where clients already call them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from siyu.audit import service as audit
from siyu.audit.service import AuditAction
from siyu.campaigns import group_messages, submission, tasks
from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassCapPolicy, MassChatType, MassMessageStatus
from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.kit.errors import Conflict, Invalid
from siyu.tenancy.deps import AdminPrincipal, DbSession
from siyu.wecom.credentials import client_for, load_plain

router = APIRouter(prefix="/api/v1/wecom", tags=["wecom-operations"])


def _client(request: Request, db: Session, org_id: int) -> WeComClient:
    return client_for(load_plain(db, org_id, str(request.app.state.settings.resolved_secret_key())))


def _carrier_error(exc: WeComError | WeComInputError) -> Invalid:
    if isinstance(exc, WeComInputError):
        return Invalid(str(exc), field=exc.field)
    return Invalid(str(exc), field="wecom")


class CapPolicyIn(BaseModel):
    """The per-customer mass-message cap."""

    model_config = ConfigDict(extra="forbid")
    mass_cap_policy: MassCapPolicy


class MassMessageIn(BaseModel):
    """A mass message to chosen customers."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(default="", max_length=4000)
    customer_ids: list[int] = Field(min_length=1, max_length=campaigns.MAX_RECIPIENTS)
    attachments: list[dict[str, Any]] = Field(default_factory=list, max_length=9)
    marketing: bool = Field(
        default=True,
        description="A marketing message reaches only customers who consented to marketing; "
        "set false for service notices.",
    )


class GroupMassMessageIn(BaseModel):
    """A mass message to customer groups: the listed groups, or every active group one member owns."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(default="", max_length=4000)
    group_ids: list[int] | None = Field(default=None, min_length=1, max_length=group_messages.MAX_GROUPS)
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
    marketing: bool
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
    return {"mass_cap_policy": campaigns.org_settings(db, principal.org_id).mass_cap_policy.value}


@router.put("/mass-messages/settings")
def put_cap(body: CapPolicyIn, db: DbSession, principal: AdminPrincipal) -> dict[str, str]:
    """Choose month_days (default), week_7 or day_1."""
    return {
        "mass_cap_policy": campaigns.set_cap_policy(
            db, principal.org_id, body.mass_cap_policy
        ).mass_cap_policy.value
    }


@router.post("/mass-messages", response_model=MassMessageOut, status_code=201)
def create_mass_message(body: MassMessageIn, db: DbSession, principal: AdminPrincipal) -> Any:
    """Store a mass message draft."""
    return campaigns.create_message(
        db,
        principal.org_id,
        text=body.text,
        customer_ids=body.customer_ids,
        attachments=body.attachments,
        actor_id=principal.user_id,
        marketing=body.marketing,
    )


@router.post("/mass-messages/groups", response_model=MassMessageOut, status_code=201)
def create_group_mass_message(body: GroupMassMessageIn, db: DbSession, principal: AdminPrincipal) -> Any:
    """Store a draft to customer groups (group_ids, or owner_account_id for all of a member's groups)."""
    return group_messages.create_group_message(
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
    msg = campaigns.get_message(db, principal.org_id, message_id)
    p = campaigns.preview(db, principal.org_id, msg)
    shape = ExcludedGroupOut if msg.chat_type == MassChatType.group else ExcludedOut
    return PreviewOut(
        chat_type=msg.chat_type.value,
        recipients=p.recipients,
        cap=p.cap,
        per_sender={k: len(v) for k, v in p.by_sender.items()},
        left_out=[shape(**o.__dict__) for o in p.left_out],
    )


def _state(db: Session, org_id: int, message_id: int) -> dict[str, Any]:
    """Where a message stands: its status, counts per send status and its WeCom task ids."""
    msg = campaigns.get_message(db, org_id, message_id)
    counts = campaigns.send_counts(db, msg.id)
    batches = submission.progress(db, msg.id)
    return {
        "message_id": msg.id,
        "status": msg.status.value,
        "reserved": sum(counts.values()),
        "submitted": counts.get("submitted", 0) + counts.get("sent", 0) + counts.get("not_friend", 0),
        "failed": counts.get("failed", 0),
        "counts": counts,
        "msgids": [b["msgid"] for b in batches if b["msgid"]],
        "batches": batches,
    }


@router.post("/mass-messages/{message_id}/submit", status_code=202)
def submit_mass_message(
    message_id: int, request: Request, db: DbSession, principal: AdminPrincipal
) -> dict[str, Any]:
    """Reserve the sends under the cap; the worker then submits one WeCom task per sender and batch.

    Answers 202 with the message's state: "submitting" until the worker is done (poll `results`)."""
    factory = request.app.state.sessionmaker
    msg = campaigns.get_message(db, principal.org_id, message_id)
    _client(request, db, principal.org_id)  # 404 before reserving anything when WeCom is not configured
    audit.record(
        db,
        principal.org_id,
        AuditAction.mass_message_submitted,
        actor=principal,
        target_type="mass_message",
        target_id=msg.id,
        chat_type=msg.chat_type.value,
        recipients=len(msg.group_ids or msg.customer_ids or []),
    )
    db.commit()  # reservation runs its own transaction; this request's must not hold the write lock
    reserved = campaigns.start_submission(factory, principal.org_id, message_id)
    tasks.submit_mass_message(principal.org_id, message_id)
    db.expire_all()
    return dict(_state(db, principal.org_id, message_id), left_out=[o.__dict__ for o in reserved.left_out])


@router.post("/mass-messages/{message_id}/resume", status_code=202)
def resume_mass_message(message_id: int, db: DbSession, principal: AdminPrincipal) -> dict[str, Any]:
    """Ask the worker to go on with a message left "submitting" or "cancelling" (harmless while one runs)."""
    msg = campaigns.get_message(db, principal.org_id, message_id)
    if msg.status not in (MassMessageStatus.submitting, MassMessageStatus.cancelling):
        raise Conflict(
            f"only a message being submitted can be resumed, not a {msg.status.value} one", field="message_id"
        )
    db.commit()
    tasks.submit_mass_message(principal.org_id, message_id)
    db.expire_all()
    return _state(db, principal.org_id, message_id)


@router.post("/mass-messages/{message_id}/cancel", status_code=202)
def cancel_mass_message(message_id: int, db: DbSession, principal: AdminPrincipal) -> dict[str, Any]:
    """Stop a message being submitted: the batches not yet sent to WeCom are cancelled by the worker."""
    submission.request_cancel(db, principal.org_id, message_id)
    db.commit()
    tasks.submit_mass_message(principal.org_id, message_id)
    db.expire_all()
    return _state(db, principal.org_id, message_id)


@router.get("/mass-messages/{message_id}/results")
def mass_message_results(
    message_id: int,
    request: Request,
    db: DbSession,
    principal: AdminPrincipal,
    refresh: bool = Query(default=False, description="Read delivery back from WeCom first."),
) -> dict[str, Any]:
    """Counts per send status (reserved, submitted, sent, not_friend, failed, unsent, cancelled), each WeCom
    batch with its outcome in words; per group for groups."""
    msg = campaigns.get_message(db, principal.org_id, message_id)
    if refresh:
        try:
            counts = campaigns.refresh_results(
                db, principal.org_id, msg.id, _client(request, db, principal.org_id)
            )
        except WeComError as exc:
            raise _carrier_error(exc) from exc
    else:
        counts = campaigns.send_counts(db, msg.id)
    out: dict[str, Any] = {
        "message_id": msg.id,
        "chat_type": msg.chat_type.value,
        "status": msg.status.value,
        "counts": counts,
        "left_out": msg.left_out,
        "batches": submission.progress(db, msg.id),
    }
    if msg.chat_type == MassChatType.group:
        out["groups"] = [
            dict(g, sent_at=g["sent_at"].isoformat() if g["sent_at"] else None)
            for g in group_messages.group_sends(db, principal.org_id, msg.id)
        ]
    return out
