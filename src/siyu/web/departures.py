"""Console page for an employee's departure: pick the leaving member, see what they hold, choose the
receiver, confirm, then follow each customer's hand-over in a status table (admins and owners only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from siyu.accounts import departures
from siyu.accounts.models import Account, AccountKind, TransferKind
from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.kit.errors import DomainError, Forbidden
from siyu.tenancy.deps import DbSession
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.errors import error_text, wecom_error_text
from siyu.web.templating import PageContext, render
from siyu.wecom.credentials import client_for, load_plain

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)


def _admin(ctx: PageContext) -> int:
    if ctx.principal is None or not ctx.principal.can_administer:
        raise Forbidden("customer hand-overs are for owners and admins", field="role")
    return ctx.principal.org_id


def _page(
    db: DbSession,
    ctx: PageContext,
    org_id: int,
    account_id: int | None,
    *,
    error: str = "",
    notice: str = "",
    status_code: int = 200,
) -> Response:
    members = list(
        db.scalars(
            select(Account)
            .where(Account.org_id == org_id, Account.kind == AccountKind.wecom_member)
            .order_by(Account.name)
        )
    )
    leaving = next((m for m in members if m.id == account_id), None)
    summary = departures.departure_summary(db, org_id, leaving.id) if leaving else None
    rows = departures.list_transfers(db, org_id, from_account_id=leaving.id) if leaving else []
    names = {m.id: m.name for m in members}
    return render(
        ctx,
        "departures/departure.html",
        status_code=status_code,
        active="departure",
        members=members,
        leaving=leaving,
        summary=summary,
        rows=rows,
        names=names,
        error=error,
        notice=notice,
    )


@router.get("/wecom/departure")
def departure_page(db: DbSession, ctx: Console, account_id: int | None = None) -> Response:
    """Choose the leaving member; with one chosen, their customers/groups and hand-over status."""
    return _page(db, ctx, _admin(ctx), account_id)


@router.post("/wecom/departure")
def departure_submit(
    db: DbSession,
    ctx: Console,
    from_account_id: Annotated[int, Form()],
    to_account_id: Annotated[int, Form()],
    kind: Annotated[TransferKind, Form()] = TransferKind.in_service,
    message: Annotated[str, Form(max_length=200)] = "",
    groups: Annotated[bool, Form()] = False,
) -> Response:
    """Start the hand-over of every customer of the leaving member."""
    org_id = _admin(ctx)
    try:
        client = client_for(load_plain(db, org_id, str(ctx.request.app.state.settings.resolved_secret_key())))
        result = departures.request_transfer(
            db,
            org_id,
            client,
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            kind=kind,
            message=message,
            actor_id=ctx.principal.user_id if ctx.principal else None,
        )
        moved = (
            departures.transfer_groups(
                db, org_id, client, from_account_id=from_account_id, to_account_id=to_account_id, kind=kind
            )
            if groups
            else None
        )
    except DomainError as exc:
        db.rollback()
        return _page(
            db, ctx, org_id, from_account_id, error=error_text(ctx, exc), status_code=exc.status_code
        )
    except (WeComError, WeComInputError) as exc:  # a WeCom refusal is explained on the page, not as a 500
        db.rollback()
        return _page(db, ctx, org_id, from_account_id, error=wecom_error_text(ctx, exc), status_code=422)
    problems = [o.detail for o in result.left_out[:5]]
    if moved is not None:
        problems += [f"{f['chat_id']}: {f['detail']}" for f in moved.failed[:5]]
    if problems:
        db.commit()
        return _page(db, ctx, org_id, from_account_id, notice="; ".join(problems))
    return RedirectResponse(f"/wecom/departure?account_id={from_account_id}", status_code=303)
