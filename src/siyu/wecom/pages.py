"""Console page: WeCom settings — enter credentials, test the connection, copy the callback URL.

Every visible string lives in the template (``web/templates/wecom/settings.html``) so the catalogs
cover it; the test-connection message is the adapter's plain-language explanation of WeCom's errcode.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response
from pydantic import ValidationError

from siyu.identity.models import Organization
from siyu.kit.deps import DbSession
from siyu.kit.errors import DomainError, Forbidden
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.templating import PageContext, render
from siyu.wecom import credentials
from siyu.wecom.endpoints import callback_path
from siyu.wecom.schemas import ConnectionTest, CredentialsIn

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)


def _admin(ctx: PageContext) -> int:
    assert ctx.principal is not None
    if not ctx.principal.can_administer:
        raise Forbidden("only owners and admins manage WeCom settings")
    return ctx.principal.org_id


def _page(db: DbSession, ctx: PageContext, *, error: str | None = None, error_field: str | None = None,
          test: ConnectionTest | None = None, saved: bool = False, status_code: int = 200) -> Response:
    org_id = _admin(ctx)
    org = db.get(Organization, org_id)
    assert org is not None
    row = credentials.get_credentials(db, org_id)
    base = str(ctx.request.base_url).rstrip("/")
    return render(ctx, "wecom/settings.html", status_code=status_code, active="wecom", row=row,
                  callback_url=base + callback_path(org.slug), error=error, error_field=error_field,
                  test=test, saved=saved)


@router.get("/wecom/settings")
def settings_page(db: DbSession, ctx: Console) -> Response:
    """The WeCom settings form."""
    return _page(db, ctx)


@router.post("/wecom/settings")
def save_settings(
    db: DbSession, ctx: Console,
    corp_id: Annotated[str, Form()] = "", secret: Annotated[str, Form()] = "", token: Annotated[str, Form()] = "",
    encoding_aes_key: Annotated[str, Form()] = "", base_url: Annotated[str, Form()] = "",
    welcome_text: Annotated[str, Form()] = "",
) -> Response:
    """Store the credentials; empty secret fields keep the stored values."""
    org_id = _admin(ctx)
    try:
        data = CredentialsIn(corp_id=corp_id, secret=secret or None, token=token or None,
                             encoding_aes_key=encoding_aes_key or None, base_url=base_url or None,  # type: ignore[arg-type]
                             welcome_text=welcome_text)
        credentials.save_credentials(db, org_id, data, ctx.request.app.state.settings.resolved_secret_key())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "corp_id"
        return _page(db, ctx, error=f"{field}: {first['msg']}", error_field=field, status_code=422)
    except DomainError as exc:
        db.rollback()
        return _page(db, ctx, error=exc.message, error_field=exc.field, status_code=exc.status_code)
    return _page(db, ctx, saved=True)


@router.post("/wecom/settings/test")
def test_settings(db: DbSession, ctx: Console) -> Response:
    """Call gettoken with the stored credentials and show the outcome in words."""
    org_id = _admin(ctx)
    try:
        result = credentials.check_connection(db, org_id, ctx.request.app.state.settings.resolved_secret_key())
    except DomainError as exc:
        return _page(db, ctx, error=exc.message, error_field=exc.field, status_code=exc.status_code)
    return _page(db, ctx, test=result)
