"""Console settings: the Douyin connection — the open-platform app whose webhook brings comments in (its
client key and secret), the enterprise account replies are sent as (open_id and access token), and the
webhook URL to paste into the Douyin open platform. Like the WeCom settings, secrets are stored encrypted,
never shown again, and an empty secret field keeps the stored value."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Response

from siyu.leads import service as leads
from siyu.leads.models import DouyinApp
from siyu.leads.schemas import DouyinAppIn
from siyu.tenancy.deps import DbSession
from siyu.tenancy.models import Organization
from siyu.web.auth import Console, ConsoleRoute, admin_org_id
from siyu.web.forms import FormErrors, Refused, submit
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)
#: Stands in for a secret left empty while validating the rest of the form with the API's schema.
_KEPT = "kept"


def _page(
    db: DbSession,
    ctx: PageContext,
    *,
    values: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> Response:
    org_id = admin_org_id(ctx)
    org = db.get(Organization, org_id)
    assert org is not None
    app: DouyinApp | None = leads.douyin_app(db, org_id)
    if values is None:
        values = {
            "client_key": app.client_key if app else "",
            "account_open_id": app.account_open_id if app else "",
            "api_base_url": app.api_base_url if app else "https://open.douyin.com",
        }
    return render(
        ctx,
        "settings/douyin.html",
        status_code=status_code,
        active="settings",
        section="douyin",
        app=app,
        values=values,
        errors=errors or FormErrors(),
        saved=saved,
        webhook_url=str(ctx.request.base_url).rstrip("/") + f"/hooks/douyin/{org.slug}",
    )


@router.get("/settings/douyin")
def douyin_page(db: DbSession, ctx: Console) -> Response:
    """The Douyin connection form and the webhook URL."""
    return _page(db, ctx)


@router.post("/settings/douyin")
def save_douyin(
    db: DbSession,
    ctx: Console,
    client_key: Annotated[str, Form()] = "",
    client_secret: Annotated[str, Form()] = "",
    account_open_id: Annotated[str, Form()] = "",
    access_token: Annotated[str, Form()] = "",
    api_base_url: Annotated[str, Form()] = "",
    remove_token: Annotated[str, Form()] = "",
) -> Response:
    """Store the app (DouyinAppIn and ``leads.service.configure_douyin``, as the API's PUT)."""
    org_id = admin_org_id(ctx)
    values = {"client_key": client_key, "account_open_id": account_open_id, "api_base_url": api_base_url}
    messages = {
        "client_secret": ctx.gettext("Fill this in: Douyin signs every webhook with it."),
        "api_base_url": ctx.gettext("Enter an address starting with http:// or https://."),
    }
    principal = ctx.principal
    secret_key = ctx.request.app.state.settings.resolved_secret_key()

    def save() -> None:
        data = DouyinAppIn(
            client_key=client_key.strip(),
            client_secret=client_secret.strip() or _KEPT,
            account_open_id=account_open_id.strip(),
            access_token=access_token.strip(),
            api_base_url=api_base_url.strip(),
        )
        token: str | None = "" if remove_token == "on" else (data.access_token or None)
        leads.configure_douyin(
            db,
            org_id,
            secret_key,
            client_key=data.client_key,
            client_secret=client_secret.strip() or None,
            account_open_id=data.account_open_id,
            access_token=token,
            api_base_url=data.api_base_url,
            actor=principal,
        )

    refused = submit(db, ctx, save, messages)
    if isinstance(refused, Refused):
        return _page(db, ctx, values=values, errors=refused.errors, status_code=refused.status_code)
    return _page(db, ctx, saved=True)
