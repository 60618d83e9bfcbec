"""Console pages (Jinja2 + HTMX): login, language, dashboard and accounts; customer pages live in
``customer_pages`` and are included here, so the app only mounts this one router."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from siyu.analytics import service as analytics
from siyu.kit.errors import NotFound
from siyu.tenancy import service as identity
from siyu.tenancy.deps import SESSION_COOKIE, DbSession, session_principal
from siyu.web import i18n, queries, today
from siyu.web.analytics_pages import router as analytics_router
from siyu.web.analytics_rfm_cells import router as rfm_cells_router
from siyu.web.auth import Console, ConsoleRoute, anonymous_context, safe_next, set_session_cookie
from siyu.web.campaigns import router as mass_messages_router
from siyu.web.channels import router as channel_pages_router
from siyu.web.customer_pages import router as customer_router
from siyu.web.departures import router as departure_router
from siyu.web.leads import router as leads_router
from siyu.web.privacy_pages import router as privacy_router
from siyu.web.settings import router as settings_router
from siyu.web.sidebar import router as sidebar_router
from siyu.web.templating import PageContext, render
from siyu.web.wecom import router as wecom_settings_router

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

# Before login there is no session to hold a CSRF token, so the login form uses a double-submit cookie:
# a cross-site page cannot read it, so it cannot log a victim into the attacker's account.
LOGIN_CSRF_COOKIE = "siyu_login_csrf"
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600

# Load (and thereby validate) every catalog at import, i.e. when the app starts, not on the first request.
i18n.load_translations()


def _login_page(
    ctx: PageContext, next_url: str, *, error: str | None = None, email: str = "", status_code: int = 200
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        ctx,
        "login.html",
        status_code=status_code,
        error=error,
        email=email,
        next_url=next_url,
        login_csrf=token,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/login",
        secure=ctx.request.app.state.settings.secure_cookies,
        max_age=3600,
    )
    return response


@router.get("/login")
def login_form(request: Request, db: DbSession, next: str | None = None) -> Response:
    """The login form; someone already logged in goes straight on."""
    target = safe_next(next)
    if session_principal(request, db) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_page(anonymous_context(request), target)


def login_throttle_keys(email: str, address: str) -> tuple[str, str]:
    """The counters a login attempt counts against: its (email, address) pair, and the address alone.

    Per pair, so that someone guessing from elsewhere cannot lock the owner out of their own account; per
    address with a higher ceiling, so that one client cannot spray guesses over many accounts."""
    return f"login:{email.strip().lower()}|{address}", f"ip:{address}"


@router.post("/login")
def login(
    request: Request,
    db: DbSession,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check email and password; on success start a session and set the HttpOnly session cookie."""
    ctx = anonymous_context(request)
    target = safe_next(next)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not csrf_token or not secrets.compare_digest(expected, csrf_token):
        return _login_page(
            ctx,
            target,
            email=email,
            status_code=403,
            error=ctx.gettext("The form has expired. Please log in again."),
        )
    settings = request.app.state.settings
    attempts = request.app.state.login_attempts
    pair, address = login_throttle_keys(email, request.client.host if request.client else "-")
    # Record the attempt before checking the password, in one atomic increment per key: checking first
    # and counting after let 40 concurrent guesses all pass a limit of 10 before any was counted.
    if (
        attempts.hit(pair) > settings.login_max_failures
        or attempts.hit(address) > settings.login_max_failures_per_address
    ):
        minutes = max(1, settings.login_window_seconds // 60)
        return _login_page(
            ctx,
            target,
            email=email,
            status_code=429,
            error=ctx.gettext("Too many failed logins. Try again in %(minutes)s minutes.")
            % {"minutes": minutes},
        )
    user = identity.authenticate(db, email, password) if email and password else None
    if user is None:
        # One message for unknown email and wrong password, so the form does not reveal which accounts exist.
        return _login_page(
            ctx, target, email=email, status_code=401, error=ctx.gettext("Wrong email or password.")
        )
    # A success is no failure: colleagues behind one office address must not use up its ceiling.
    attempts.reset(pair)
    attempts.release(address)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        identity.end_session(db, old)
    session = identity.start_session(db, user, settings.session_ttl_hours)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, settings, session.cookie_value)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, db: DbSession, ctx: Console) -> Response:
    """End the session (CSRF-checked, so another site cannot log the user out)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        identity.end_session(db, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str | None = None) -> Response:
    """Remember the chosen language in a cookie and go back to the page the switcher was on."""
    if code not in i18n.SUPPORTED_LOCALES:
        raise NotFound(f"unsupported language {code!r}")
    target = safe_next(next, default="")
    if not target:
        referer = request.headers.get("referer", "")
        base = str(request.base_url)
        target = safe_next("/" + referer[len(base) :] if referer.startswith(base) else None)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        i18n.LANG_COOKIE,
        code,
        max_age=LANG_COOKIE_MAX_AGE,
        samesite="lax",
        path="/",
        secure=request.app.state.settings.secure_cookies,
    )
    return response


@router.get("/")
def dashboard(db: DbSession, ctx: Console) -> Response:
    """Headline counts and the customers-added-per-day chart, scoped to what the user may see."""
    assert ctx.principal is not None
    if ctx.principal.sees_whole_org:
        # The whole organization: counted on the analytics projection (milliseconds at a million customers).
        with analytics.projection_of_app(ctx.request.app.state).locked() as engine:
            head = queries.headline(db, ctx.principal, tz=ctx.timezone, projection=engine)
            series = queries.added_per_day(db, ctx.principal, tz=ctx.timezone, projection=engine)
    else:
        head = queries.headline(db, ctx.principal, tz=ctx.timezone)
        series = queries.added_per_day(db, ctx.principal, tz=ctx.timezone)

    def source_name(code: str) -> str:
        return ctx.gettext("Other") if code == queries.OTHER_SOURCES else ctx.label("source", code)

    chart = {
        "days": series.days,
        "series": [{"name": source_name(s), "data": series.counts[s]} for s in series.sources],
        "totals": series.totals,
        "total_name": ctx.gettext("Total"),
        "empty": ctx.gettext("No customers added in this period."),
    }
    return render(
        ctx,
        "dashboard.html",
        head=head,
        chart=chart,
        chart_days=queries.CHART_DAYS,
        today=today.today(db, ctx.principal, tz=ctx.timezone),
        active="dashboard",
    )


@router.get("/accounts")
def accounts(db: DbSession, ctx: Console) -> Response:
    """Carrier accounts with their operators and capacity bars."""
    assert ctx.principal is not None
    return render(ctx, "accounts.html", rows=queries.account_rows(db, ctx.principal), active="accounts")


router.include_router(privacy_router)
router.include_router(customer_router)
router.include_router(leads_router)
router.include_router(rfm_cells_router)
router.include_router(analytics_router)
router.include_router(channel_pages_router)
router.include_router(departure_router)
router.include_router(mass_messages_router)
router.include_router(wecom_settings_router)
router.include_router(settings_router)
router.include_router(sidebar_router)
