"""Personal-data pages: a customer's data export (readable HTML and JSON, downloadable), erasure with a
typed confirmation, consent records on the customer page, and the audit log with the retention settings.
Export, erasure and the audit log are for owners and admins; every read and write goes through the
privacy, customers and audit services with the principal."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from siyu.audit import service as audit
from siyu.audit.service import AuditAction, AuditFilters
from siyu.customers import access, consent
from siyu.customers.models import ConsentScope, ConsentSource
from siyu.kit.errors import DomainError, Forbidden, NotFound
from siyu.privacy import service as privacy
from siyu.tenancy.deps import DbSession
from siyu.tenancy.principal import Principal
from siyu.web import queries
from siyu.web.auth import Console, ConsoleRoute, is_htmx
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)
AUDIT_PAGE = 50


def _admin(ctx: PageContext) -> Principal:
    assert ctx.principal is not None
    if not ctx.principal.can_administer:
        raise Forbidden("only owners and admins handle personal-data requests and read the audit log")
    return ctx.principal


def _principal(ctx: PageContext) -> Principal:
    assert ctx.principal is not None
    return ctx.principal


# --- export -----------------------------------------------------------------------------------------


@router.get("/customers/{customer_id}/export")
def export_page(customer_id: int, db: DbSession, ctx: Console, download: int = 0) -> Response:
    """Everything held on the customer as a readable page; ``?download=1`` saves it as a file."""
    data = privacy.export_customer(db, _admin(ctx), customer_id)
    response = render(ctx, "privacy/export.html", data=data, json_url=f"/customers/{customer_id}/export.json")
    if download:
        name = f"customer-{data['profile']['id']}.html"
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@router.get("/customers/{customer_id}/export.json")
def export_json(customer_id: int, db: DbSession, ctx: Console) -> Response:
    """The same export as a JSON file."""
    data = privacy.export_customer(db, _admin(ctx), customer_id)
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="customer-{data["profile"]["id"]}.json"',
            "Cache-Control": "no-store",
        },
    )


# --- erasure ----------------------------------------------------------------------------------------


@router.get("/customers/{customer_id}/erase")
def erase_page(customer_id: int, db: DbSession, ctx: Console) -> Response:
    """The erasure form: what goes, what stays, and the id to type."""
    principal = _admin(ctx)
    customer = access.get_customer(db, principal, customer_id)
    return render(ctx, "privacy/erase.html", active="customers", customer=customer, error=None)


@router.post("/customers/{customer_id}/erase")
def erase(customer_id: int, db: DbSession, ctx: Console, confirm: Annotated[str, Form()] = "") -> Response:
    """Erase the customer when the typed id matches; then show the audit entry it left."""
    principal = _admin(ctx)
    customer = access.get_customer(db, principal, customer_id)
    try:
        erasure, _audit_id = privacy.erase_customer(db, principal, customer.id, confirm, origin="console")
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        db.rollback()
        error = ctx.gettext("Type the customer number exactly as shown to confirm.")
        return render(
            ctx, "privacy/erase.html", status_code=422, active="customers", customer=customer, error=error
        )
    query = urlencode({"target_type": "customer", "target_id": erasure.customer_id})
    return RedirectResponse(f"/audit?{query}", status_code=303)


# --- consent ----------------------------------------------------------------------------------------


def consent_view(db: DbSession, ctx: PageContext, customer_id: int) -> dict[str, Any]:
    """What the customer page's consent section shows."""
    principal = _principal(ctx)
    records = consent.list_consents(db, principal, customer_id)
    return {
        "consents": records,
        "consent_authors": queries.user_names(
            db, principal.org_id, {r.recorded_by for r in records if r.recorded_by}
        ),
        "consent_scopes": list(ConsentScope),
        "consent_sources": list(ConsentSource),
    }


@router.post("/customers/{customer_id}/consents")
def add_consent(
    customer_id: int,
    request: Request,
    db: DbSession,
    ctx: Console,
    scope: Annotated[str, Form()] = "marketing",
    granted: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    note: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Record a consent given or withdrawn and show the consent section again."""
    principal = _principal(ctx)
    customer = access.get_customer(db, principal, customer_id)
    error: str | None = None
    try:
        consent.add_consent_as(
            db,
            principal,
            customer.id,
            ConsentScope(scope),
            granted == "yes",
            ConsentSource(source),
            note=note,
            origin="console",
        )
    except ValueError:
        error = ctx.gettext("Choose how the consent was given.")
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        db.rollback()
        error = exc.message
    if not is_htmx(request) and error is None:
        return RedirectResponse(f"/customers/{customer.id}", status_code=303)
    customer = access.get_customer(db, principal, customer.id)
    return render(
        ctx,
        "privacy/_consents.html",
        status_code=200 if error is None else 422,
        customer=customer,
        consent_error=error,
        **consent_view(db, ctx, customer.id),
    )


# --- audit log and retention ------------------------------------------------------------------------


def _parse_date(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/audit")
def audit_page(
    db: DbSession,
    ctx: Console,
    action: str = "",
    actor_id: str = "",
    target_type: str = "",
    target_id: str = "",
    cursor: int | None = None,
    saved: int = 0,
) -> Response:
    """The audit log, newest first, filterable by action, person and target; and the retention settings."""
    principal = _admin(ctx)
    form = {"action": action, "actor_id": actor_id, "target_type": target_type, "target_id": target_id}
    filters = AuditFilters(
        action=AuditAction(action) if action in AuditAction.__members__ else None,
        actor_id=int(actor_id) if actor_id.isdigit() else None,
        target_type=target_type.strip() or None,
        target_id=target_id.strip() or None,
    )
    rows, next_cursor = audit.list_entries(db, principal.org_id, filters, cursor, AUDIT_PAGE)
    query = {k: v for k, v in form.items() if v}
    return render(
        ctx,
        "privacy/audit.html",
        active="audit",
        rows=rows,
        form=form,
        actions=list(AuditAction),
        users=queries.user_names(db, principal.org_id, None),
        next_url="/audit?" + urlencode({**query, "cursor": next_cursor}) if next_cursor else None,
        retention=privacy.get_retention(db, principal, ctx.request.app.state.settings),
        saved=bool(saved),
        error=None,
    )


@router.post("/audit/retention")
def save_retention(
    db: DbSession,
    ctx: Console,
    webhook_days: Annotated[str, Form()] = "",
    audit_days: Annotated[str, Form()] = "",
) -> Response:
    """Change how long raw webhook payloads and audit entries are kept."""
    principal = _admin(ctx)
    settings = ctx.request.app.state.settings
    try:
        privacy.set_retention(db, principal, settings, int(webhook_days), int(audit_days))
    except (ValueError, DomainError) as exc:
        db.rollback()
        message = exc.message if isinstance(exc, DomainError) else ctx.gettext("Enter whole numbers of days.")
        return render(
            ctx,
            "privacy/audit.html",
            status_code=422,
            active="audit",
            rows=[],
            form={"action": "", "actor_id": "", "target_type": "", "target_id": ""},
            actions=list(AuditAction),
            users=queries.user_names(db, principal.org_id, None),
            next_url=None,
            retention=privacy.get_retention(db, principal, settings),
            saved=False,
            error=message,
        )
    return RedirectResponse("/audit?saved=1", status_code=303)
