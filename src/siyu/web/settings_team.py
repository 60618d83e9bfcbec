"""Console settings: the team — add a user (an operator, usually) with a first password, change a role,
deactivate or reactivate someone; and each user's own API tokens (shown once when created, revocable)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Response
from pydantic import ValidationError

from siyu.tenancy import service as identity
from siyu.tenancy.deps import DbSession
from siyu.tenancy.models import Role
from siyu.tenancy.schemas import TokenIn, UserIn, UserPatch
from siyu.web.auth import Console, ConsoleRoute, admin_org_id
from siyu.web.forms import FormErrors, Refused, from_validation, submit
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)


def _user_messages(ctx: PageContext) -> dict[str, str]:
    return {
        "email": ctx.gettext("Enter a valid email address, such as name@example.com."),
        "email:Conflict": ctx.gettext("Someone already logs in with this email."),
        "role": ctx.gettext("Choose one of the options."),
        "role:Forbidden": ctx.gettext("Only an owner can make someone an owner."),
        "role:Conflict": ctx.gettext("The organization needs at least one active owner."),
        "is_active:Invalid": ctx.gettext("You cannot deactivate yourself."),
        "is_active:Forbidden": ctx.gettext("Only an owner can deactivate an owner."),
        "is_active:Conflict": ctx.gettext("The organization needs at least one active owner."),
    }


def _users_page(
    db: DbSession,
    ctx: PageContext,
    *,
    values: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    row_errors: dict[int, str] | None = None,
    added: str = "",
    saved: bool = False,
    status_code: int = 200,
) -> Response:
    org_id = admin_org_id(ctx)
    assert ctx.principal is not None
    roles = [r for r in Role if r != Role.owner or ctx.principal.role == Role.owner]
    return render(
        ctx,
        "settings/users.html",
        status_code=status_code,
        active="settings",
        section="users",
        users=identity.list_users(db, org_id),
        roles=roles,
        values=values or {"role": Role.operator.value},
        errors=errors or FormErrors(),
        row_errors=row_errors or {},
        added=added,
        saved=saved,
    )


@router.get("/settings/users")
def users_page(db: DbSession, ctx: Console) -> Response:
    """The organization's users with their roles, and the form to add one."""
    return _users_page(db, ctx)


@router.post("/settings/users")
def add_user(
    db: DbSession,
    ctx: Console,
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "operator",
) -> Response:
    """Add a user with a first password they log in with (UserIn and ``tenancy.service.add_user``)."""
    admin_org_id(ctx)
    assert ctx.principal is not None
    values = {"email": email, "name": name, "role": role}  # the password is never echoed back
    messages = _user_messages(ctx)
    principal = ctx.principal

    def add() -> UserIn:
        data = UserIn(email=email, name=name, password=password, role=role)
        identity.add_user(db, principal, data.email, data.name, data.password, data.role)
        return data

    added = submit(db, ctx, add, messages)
    if isinstance(added, Refused):
        return _users_page(db, ctx, values=values, errors=added.errors, status_code=added.status_code)
    return _users_page(db, ctx, added=added.name or added.email)


@router.post("/settings/users/{user_id}")
def update_user(
    user_id: int,
    db: DbSession,
    ctx: Console,
    role: Annotated[str | None, Form()] = None,
    is_active: Annotated[str | None, Form()] = None,
) -> Response:
    """Change one user's role, or deactivate/reactivate them (UserPatch, as the API's PATCH /users/{id})."""
    admin_org_id(ctx)
    assert ctx.principal is not None
    messages = _user_messages(ctx)
    principal = ctx.principal

    def change() -> None:
        patch = UserPatch.model_validate(
            {"role": role, "is_active": None if is_active is None else is_active == "true"}
        )
        if patch.role is not None:
            identity.change_role(db, principal, user_id, patch.role)
        if patch.is_active is not None:
            identity.set_active(db, principal, user_id, patch.is_active)

    refused = submit(db, ctx, change, messages)
    if isinstance(refused, Refused):
        message = next(iter(refused.errors.values()))
        return _users_page(db, ctx, row_errors={user_id: message}, status_code=refused.status_code)
    return _users_page(db, ctx, saved=True)


# --- API tokens -------------------------------------------------------------------------------------


def _tokens_page(
    db: DbSession,
    ctx: PageContext,
    *,
    issued: str = "",
    values: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    revoked: bool = False,
    status_code: int = 200,
) -> Response:
    assert ctx.principal is not None
    return render(
        ctx,
        "settings/tokens.html",
        status_code=status_code,
        active="settings",
        section="tokens",
        tokens=identity.list_api_tokens(db, ctx.principal),
        issued=issued,
        values=values or {},
        errors=errors or FormErrors(),
        revoked=revoked,
    )


@router.get("/settings/tokens")
def tokens_page(db: DbSession, ctx: Console) -> Response:
    """The reader's API tokens (never their secret) and the form to create one."""
    return _tokens_page(db, ctx)


@router.post("/settings/tokens")
def create_token(db: DbSession, ctx: Console, name: Annotated[str, Form()] = "") -> Response:
    """Issue a token (TokenIn, as the API): its plaintext is in this answer only."""
    assert ctx.principal is not None
    try:
        data = TokenIn(name=name)
    except ValidationError as exc:
        errors = from_validation(ctx, exc)
        return _tokens_page(db, ctx, values={"name": name}, errors=errors, status_code=422)
    user = identity.get_user(db, ctx.principal.org_id, ctx.principal.user_id)
    issued = identity.issue_api_token(db, user, data.name, actor=ctx.principal)
    return _tokens_page(db, ctx, issued=issued.plaintext)


@router.post("/settings/tokens/{token_id}/revoke")
def revoke_token(token_id: int, db: DbSession, ctx: Console) -> Response:
    """Revoke one of the reader's tokens; programs using it are refused from now on."""
    assert ctx.principal is not None
    identity.revoke_api_token(db, ctx.principal, token_id)
    return _tokens_page(db, ctx, revoked=True)
