"""Console pages of the lead inbox: the live list (HTMX polling), reply, dismiss and intent correction."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from siyu.kit.clock import utcnow
from siyu.kit.errors import DomainError
from siyu.leads import service
from siyu.leads.intent_rules import INTENTS
from siyu.leads.sla import open_lead_count, sla_figures
from siyu.tenancy.deps import DbSession
from siyu.tenancy.principal import Principal
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.errors import error_text
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

STATUSES = ("open", "replied", "dismissed", "all")
POLL_SECONDS = 2
SLA_DAYS = 7


def _principal(ctx: PageContext) -> Principal:
    assert ctx.principal is not None  # Console only yields logged-in contexts
    return ctx.principal


def _status(value: str) -> str:
    return value if value in STATUSES else "open"


def _active_codes(db: DbSession, org_id: int) -> list[tuple[int, str]]:
    from siyu.channels import service as channels
    from siyu.channels.models import CodeStatus

    return [(c.id, c.name) for c in channels.list_codes(db, org_id, status=CodeStatus.active) if c.qr_url][
        :200
    ]


def _inbox(
    db: DbSession,
    ctx: PageContext,
    status: str,
    *,
    error: str | None = None,
    failed: str = "",
    flash: str = "",
) -> Response:
    # ``flash`` and ``failed`` are codes the template turns into translated sentences.
    principal = _principal(ctx)
    rows = service.list_inbox(db, principal, status, limit=200)
    now = utcnow()
    items = [
        {
            "lead": row.lead,
            "comment": row.comment,
            "seconds_left": int((row.lead.reply_due_at - now).total_seconds()),
            "suggestion": service.suggested_reply(db, principal.org_id, row.lead, row.comment),
        }
        for row in rows
    ]
    return render(
        ctx,
        "leads/_inbox.html",
        items=items,
        status=status,
        intents=INTENTS,
        error=error,
        codes=_active_codes(db, principal.org_id),
        failed=failed,
        flash=flash,
        open_count=open_lead_count(db, principal.org_id),
        poll=POLL_SECONDS,
    )


@router.get("/leads")
def leads_page(db: DbSession, ctx: Console, status: str = "open") -> Response:
    """The lead inbox with SLA figures of the last week."""
    principal = _principal(ctx)
    now = utcnow()
    figures = sla_figures(db, principal.org_id, now - timedelta(days=SLA_DAYS), now, now=now)
    return render(
        ctx,
        "leads/inbox.html",
        status=_status(status),
        statuses=STATUSES,
        sla=figures,
        sla_days=SLA_DAYS,
        poll=POLL_SECONDS,
        active="leads",
    )


@router.get("/leads/inbox")
def leads_inbox(db: DbSession, ctx: Console, status: str = "open") -> Response:
    """The inbox fragment the page polls."""
    return _inbox(db, ctx, _status(status))


@router.post("/leads/{lead_id}/reply")
def reply_page(
    lead_id: int,
    request: Request,
    db: DbSession,
    ctx: Console,
    text: Annotated[str, Form()] = "",
    code_url: Annotated[str, Form()] = "",
    code_id: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "open",
) -> Response:
    """Reply on the platform with the channel code and re-render the inbox."""
    principal = _principal(ctx)
    replier = service.douyin_replier(db, principal.org_id, request.app.state.settings.resolved_secret_key())
    try:
        service.reply_to_lead(
            db,
            principal,
            lead_id,
            replier=replier,
            text=text.strip() or None,
            code_url=code_url.strip() or None,
            code_id=int(code_id) if code_id.strip().isdigit() and not code_url.strip() else None,
            origin="console",
        )
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        db.rollback()
        return _inbox(db, ctx, _status(status), error=error_text(ctx, exc), failed="reply")
    finally:
        close = getattr(replier, "close", None)
        if close is not None:
            close()
    return _inbox(db, ctx, _status(status), flash="replied")


@router.post("/leads/{lead_id}/dismiss")
def dismiss_page(
    lead_id: int, db: DbSession, ctx: Console, status: Annotated[str, Form()] = "open"
) -> Response:
    """Dismiss an open lead and re-render the inbox."""
    try:
        service.dismiss_lead(db, _principal(ctx), lead_id)
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        return _inbox(db, ctx, _status(status), error=error_text(ctx, exc))
    return _inbox(db, ctx, _status(status))


@router.post("/leads/comments/{comment_id}/intent")
def correct_page(
    comment_id: int,
    request: Request,
    db: DbSession,
    ctx: Console,
    intent: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "open",
) -> Response:
    """Store an intent correction and re-render the inbox."""
    try:
        service.correct_intent(
            db,
            _principal(ctx),
            comment_id,
            intent,
            reply_seconds=request.app.state.settings.lead_reply_seconds,
        )
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        return _inbox(db, ctx, _status(status), error=error_text(ctx, exc))
    return _inbox(db, ctx, _status(status), flash="corrected")
