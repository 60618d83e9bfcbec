"""FastAPI dependencies: one transaction per request, and the authenticated principal."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from siyu.kit.db import transaction
from siyu.kit.errors import DomainError, Forbidden
from siyu.tenancy import service as identity
from siyu.tenancy.principal import Principal

SESSION_COOKIE = "siyu_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Unauthenticated(DomainError):
    """No valid token or session."""

    status_code = 401


def get_db(request: Request) -> Iterator[Session]:
    """A session whose work is committed when the handler returns, before the response is sent."""
    with transaction(request.app.state.sessionmaker) as session:
        yield session


# scope="function" closes the transaction before the response goes out, so a failed commit is never a 200.
DbSession = Annotated[Session, Depends(get_db, scope="function")]


def session_principal(request: Request, db: Session) -> tuple[Principal, str] | None:
    """The principal and CSRF token of the request's console session cookie, if any."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    return identity.resolve_session(db, cookie)


async def _csrf_from_request(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def check_csrf(expected: str, given: str | None) -> None:
    """Refuse a cookie-authenticated unsafe request whose CSRF token is missing or wrong."""
    if not given or not secrets.compare_digest(expected, given):
        raise Forbidden("missing or invalid CSRF token", field=CSRF_FIELD)


async def get_principal(request: Request, db: DbSession) -> Principal:
    """Authenticate by bearer token (API clients) or session cookie plus CSRF token (the console)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        principal = identity.principal_from_token(db, auth[7:].strip())
        if principal is None:
            raise Unauthenticated("invalid or revoked API token")
        return principal
    found = session_principal(request, db)
    if found is None:
        raise Unauthenticated("log in or send an API token as 'Authorization: Bearer <token>'")
    principal, csrf = found
    if request.method not in SAFE_METHODS:
        check_csrf(csrf, await _csrf_from_request(request))
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal, scope="function")]


def require_admin(principal: CurrentPrincipal) -> Principal:
    """Only owners and admins pass."""
    if not principal.can_administer:
        raise Forbidden("this needs an admin or owner role")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin, scope="function")]
