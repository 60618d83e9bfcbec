"""Console page for WeCom mass messages (admins and owners): send to customers or to customer groups, then
follow each message's delivery, read back from WeCom on demand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from siyu.accounts.models import Account, AccountKind
from siyu.audit import service as audit
from siyu.audit.service import AuditAction
from siyu.campaigns import group_messages, submission, tasks
from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassChatType, MassMessage, MassMessageStatus
from siyu.groups.models import CustomerGroup, GroupStatus
from siyu.integrations.wecom.errors import WeComError
from siyu.kit.errors import DomainError, Forbidden
from siyu.tenancy.deps import DbSession
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.errors import error_text, wecom_error_text
from siyu.web.templating import PageContext, render
from siyu.wecom.credentials import client_for, load_plain

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)
ACTIVE = (MassMessageStatus.submitting, MassMessageStatus.cancelling)


def _admin(ctx: PageContext) -> int:
    if ctx.principal is None or not ctx.principal.can_administer:
        raise Forbidden("mass messages are for owners and admins", field="role")
    return ctx.principal.org_id


def _page(
    db: DbSession,
    ctx: PageContext,
    org_id: int,
    *,
    message_id: int | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    members = list(
        db.scalars(
            select(Account)
            .where(Account.org_id == org_id, Account.kind == AccountKind.wecom_member)
            .order_by(Account.name)
        )
    )
    groups = list(
        db.scalars(
            select(CustomerGroup)
            .where(CustomerGroup.org_id == org_id, CustomerGroup.status == GroupStatus.active)
            .order_by(CustomerGroup.name, CustomerGroup.id)
            .limit(500)
        )
    )
    messages = list(
        db.scalars(
            select(MassMessage).where(MassMessage.org_id == org_id).order_by(MassMessage.id.desc()).limit(20)
        )
    )
    counts = {m.id: campaigns.send_counts(db, m.id) for m in messages}
    shown = next((m for m in messages if m.id == message_id), None)
    if shown is None and message_id is not None:
        shown = campaigns.get_message(db, org_id, message_id)
        counts[shown.id] = campaigns.send_counts(db, shown.id)
    sends = (
        group_messages.group_sends(db, org_id, shown.id)
        if shown and shown.chat_type == MassChatType.group
        else []
    )
    factory = ctx.request.app.state.sessionmaker
    batches = submission.progress(db, shown.id) if shown else []
    failures = campaigns.customer_failures(db, org_id, shown.id) if shown else []
    running = bool(shown and shown.status in ACTIVE and submission.is_running(factory, shown.id))
    return render(
        ctx,
        "campaigns/mass_messages.html",
        status_code=status_code,
        active="mass",
        members=members,
        groups=groups,
        messages=messages,
        counts=counts,
        shown=shown,
        sends=sends,
        batches=batches,
        failures=failures,
        running=running,
        active_statuses=[s.value for s in ACTIVE],
        error=error,
    )


def _client(db: DbSession, ctx: PageContext, org_id: int):  # type: ignore[no-untyped-def]
    return client_for(load_plain(db, org_id, str(ctx.request.app.state.settings.resolved_secret_key())))


@router.get("/wecom/mass-messages")
def mass_messages_page(db: DbSession, ctx: Console, message_id: int | None = None) -> Response:
    """Recent mass messages with their delivery, and the forms to send to customers or to groups."""
    return _page(db, ctx, _admin(ctx), message_id=message_id)


def _submit(db: DbSession, ctx: PageContext, org_id: int, message_id: int) -> Response:
    """Reserve under the cap here; the worker makes the WeCom calls (the page shows its progress)."""
    try:
        _client(db, ctx, org_id)  # no WeCom configuration: say so before reserving anything
        msg = campaigns.get_message(db, org_id, message_id)
        audit.record(
            db,
            org_id,
            AuditAction.mass_message_submitted,
            actor=ctx.principal,
            target_type="mass_message",
            target_id=msg.id,
            chat_type=msg.chat_type.value,
            recipients=len(msg.group_ids or msg.customer_ids or []),
        )
        db.commit()  # the reservation runs its own transaction; this request's must not hold the write lock
        campaigns.start_submission(ctx.request.app.state.sessionmaker, org_id, message_id)
    except DomainError as exc:
        db.rollback()
        return _page(
            db, ctx, org_id, message_id=message_id, error=error_text(ctx, exc), status_code=exc.status_code
        )
    tasks.submit_mass_message(org_id, message_id)
    return _shown(message_id)


def _shown(message_id: int) -> Response:
    return RedirectResponse(f"/wecom/mass-messages?message_id={message_id}", status_code=303)


@router.post("/wecom/mass-messages/groups")
def send_to_groups(
    db: DbSession,
    ctx: Console,
    text: Annotated[str, Form(max_length=4000)],
    owner_account_id: Annotated[str, Form()] = "",
    group_ids: Annotated[list[int] | None, Form()] = None,
) -> Response:
    """Create and submit a message to the chosen groups, or to every active group of the chosen member."""
    org_id = _admin(ctx)
    try:
        owner = int(owner_account_id) if owner_account_id.strip() else None
        msg = group_messages.create_group_message(
            db,
            org_id,
            text=text,
            group_ids=None if owner is not None else (group_ids or []),
            owner_account_id=owner,
            actor_id=ctx.principal.user_id if ctx.principal else None,
        )
    except DomainError as exc:
        db.rollback()
        return _page(db, ctx, org_id, error=error_text(ctx, exc), status_code=exc.status_code)
    return _submit(db, ctx, org_id, msg.id)


@router.post("/wecom/mass-messages/customers")
def send_to_customers(
    db: DbSession,
    ctx: Console,
    text: Annotated[str, Form(max_length=4000)],
    customer_ids: Annotated[str, Form(max_length=200_000)] = "",
    marketing: Annotated[str, Form()] = "",
) -> Response:
    """Create and submit a message to the listed customer ids (comma, space or line separated)."""
    org_id = _admin(ctx)
    try:
        ids = [int(t) for t in customer_ids.replace(",", " ").split()]
    except ValueError:
        error = ctx.gettext("Customer ids are whole numbers, separated by commas or spaces.")
        return _page(db, ctx, org_id, error=error, status_code=422)
    try:
        msg = campaigns.create_message(
            db,
            org_id,
            text=text,
            customer_ids=ids,
            actor_id=ctx.principal.user_id if ctx.principal else None,
            marketing=bool(marketing),
        )
    except DomainError as exc:
        db.rollback()
        return _page(db, ctx, org_id, error=error_text(ctx, exc), status_code=exc.status_code)
    return _submit(db, ctx, org_id, msg.id)


@router.post("/wecom/mass-messages/{message_id}/refresh")
def refresh(db: DbSession, ctx: Console, message_id: int) -> Response:
    """Read the message's delivery back from WeCom."""
    org_id = _admin(ctx)
    try:
        campaigns.refresh_results(
            db, org_id, campaigns.get_message(db, org_id, message_id).id, _client(db, ctx, org_id)
        )
    except DomainError as exc:
        db.rollback()
        return _page(db, ctx, org_id, error=error_text(ctx, exc), status_code=exc.status_code)
    except WeComError as exc:
        db.rollback()
        return _page(
            db, ctx, org_id, message_id=message_id, error=wecom_error_text(ctx, exc), status_code=422
        )
    return RedirectResponse(f"/wecom/mass-messages?message_id={message_id}", status_code=303)


@router.post("/wecom/mass-messages/{message_id}/resume")
def resume(db: DbSession, ctx: Console, message_id: int) -> Response:
    """Ask the worker to go on with a message whose submission stopped."""
    org_id = _admin(ctx)
    msg = campaigns.get_message(db, org_id, message_id)
    if msg.status not in (MassMessageStatus.submitting, MassMessageStatus.cancelling):
        error = ctx.gettext("Only a message being sent can be resumed.")
        return _page(db, ctx, org_id, message_id=message_id, error=error, status_code=409)
    db.commit()
    tasks.submit_mass_message(org_id, message_id)
    return _shown(message_id)


@router.post("/wecom/mass-messages/{message_id}/cancel")
def cancel(db: DbSession, ctx: Console, message_id: int) -> Response:
    """Stop a message being submitted: what has not reached WeCom yet is not sent."""
    org_id = _admin(ctx)
    try:
        submission.request_cancel(db, org_id, message_id)
    except DomainError as exc:
        db.rollback()
        return _page(db, ctx, org_id, message_id=message_id, error=exc.message, status_code=exc.status_code)
    db.commit()
    tasks.submit_mass_message(org_id, message_id)
    return _shown(message_id)
