"""Console authentication: the session dependency, CSRF checks, and the route class that turns
"not logged in", "not found" and "forbidden" into pages (a redirect, a 404 page, a 403 page) instead of JSON."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from siyu.kit.errors import Forbidden, NotFound
from siyu.kit.settings import Settings
from siyu.tenancy import service as identity
from siyu.tenancy.deps import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    DbSession,
    check_csrf,
    session_principal,
)
from siyu.web import i18n
from siyu.web.templating import PageContext, render


class LoginRequired(Exception):
    """The request has no live console session."""


def is_htmx(request: Request) -> bool:
    """True for requests htmx sends (they want a fragment, and must be redirected with HX-Redirect)."""
    return request.headers.get("HX-Request") == "true"


def safe_next(target: str | None, default: str = "/") -> str:
    """A same-site path to go back to; anything else (other hosts, //evil, schemes) becomes the default."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def _timezone(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "timezone", "Asia/Shanghai")


def anonymous_context(request: Request) -> PageContext:
    """The page context before login: language from the cookie or the browser."""
    locale = i18n.negotiate_locale(
        request.cookies.get(i18n.LANG_COOKIE), None, request.headers.get("accept-language")
    )
    return PageContext(
        request=request,
        locale=locale,
        translations=i18n.translations_for(locale),
        timezone=_timezone(request),
    )


async def _given_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        # Starlette caches the parsed form, so the handler's Form() parameters still see it.
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def console_context(request: Request, db: DbSession) -> PageContext:
    """The logged-in page context; unsafe methods must carry the session's CSRF token."""
    found = session_principal(request, db)
    if found is None:
        raise LoginRequired()
    principal, csrf = found
    if request.method not in SAFE_METHODS:
        check_csrf(csrf, await _given_csrf(request))
    locale = i18n.negotiate_locale(
        request.cookies.get(i18n.LANG_COOKIE), principal.locale, request.headers.get("accept-language")
    )
    return PageContext(
        request=request,
        locale=locale,
        translations=i18n.translations_for(locale),
        principal=principal,
        csrf_token=csrf,
        timezone=identity.org_timezone(db, principal.org_id, _timezone(request)),
    )


Console = Annotated[PageContext, Depends(console_context, scope="function")]


def login_redirect(request: Request) -> Response:
    """Send the browser to the login page, remembering where it wanted to go."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = "/login" if path == "/" else f"/login?next={quote(path, safe='')}"
    if is_htmx(request):
        # A plain redirect would be followed by the XHR and swap the login page into a fragment.
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


class ConsoleRoute(APIRoute):
    """Route class for HTML pages: errors become pages rather than the API's JSON bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so console errors render as pages."""
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except NotFound:
                ctx = anonymous_context(request)
                return render(
                    ctx,
                    "error.html",
                    status_code=404,
                    code=404,
                    title=ctx.gettext("Not found"),
                    message=ctx.gettext("This page does not exist, or you may not see it."),
                )
            except Forbidden as exc:
                ctx = anonymous_context(request)
                message = (
                    ctx.gettext("The form has expired. Reload the page and try again.")
                    if exc.field == CSRF_FIELD
                    else ctx.gettext("Your role does not allow this.")
                )
                return render(
                    ctx,
                    "error.html",
                    status_code=403,
                    code=403,
                    title=ctx.gettext("Not allowed"),
                    message=message,
                )

        return console_handler


def admin_org_id(ctx: PageContext) -> int:
    """The organization of a logged-in owner or admin; anyone else gets the 403 page."""
    assert ctx.principal is not None
    if not ctx.principal.can_administer:
        raise Forbidden("only owners and admins may do this")
    return ctx.principal.org_id


def set_session_cookie(response: Response, settings: Settings, cookie_value: str) -> None:
    """Give the browser a new console session (HttpOnly; Secure behind HTTPS)."""
    response.set_cookie(
        SESSION_COOKIE,
        cookie_value,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=settings.session_ttl_hours * 3600,
        path="/",
    )
