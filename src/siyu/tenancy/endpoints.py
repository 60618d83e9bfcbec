"""REST endpoints: who am I, users (admins) and API tokens."""

from __future__ import annotations

from fastapi import APIRouter

from siyu.kit.errors import NotFound
from siyu.tenancy import service
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession
from siyu.tenancy.models import ApiToken, Organization, User
from siyu.tenancy.schemas import IssuedTokenOut, MeOut, TokenIn, TokenOut, UserIn, UserOut, UserPatch

router = APIRouter(prefix="/api/v1", tags=["identity"])


@router.get("/me", response_model=MeOut)
def me(db: DbSession, principal: CurrentPrincipal) -> MeOut:
    """The caller's user, organization and role."""
    org = db.get(Organization, principal.org_id)
    assert org is not None
    return MeOut(
        user_id=principal.user_id, org_id=org.id, org_name=org.name, name=principal.name, role=principal.role
    )


@router.get("/users", response_model=list[UserOut])
def list_users(db: DbSession, principal: AdminPrincipal) -> list[User]:
    """Users of the caller's organization."""
    return service.list_users(db, principal.org_id)


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, db: DbSession, principal: AdminPrincipal) -> User:
    """Add a user to the caller's organization; only an owner may create another owner."""
    return service.add_user(db, principal, body.email, body.name, body.password, body.role)


@router.patch("/users/{user_id}", response_model=UserOut)
def update_user(user_id: int, body: UserPatch, db: DbSession, principal: AdminPrincipal) -> User:
    """Change a user's role or deactivate (reactivate) them; only an owner makes or unmakes an owner, and the
    organization keeps an active owner."""
    user = None
    if body.role is not None:
        user = service.change_role(db, principal, user_id, body.role)
    if body.is_active is not None:
        user = service.set_active(db, principal, user_id, body.is_active)
    return user if user is not None else service.get_user(db, principal.org_id, user_id)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(db: DbSession, principal: CurrentPrincipal) -> list[ApiToken]:
    """The caller's own API tokens."""
    return service.list_api_tokens(db, principal)


@router.post("/tokens", response_model=IssuedTokenOut, status_code=201)
def create_token(body: TokenIn, db: DbSession, principal: CurrentPrincipal) -> IssuedTokenOut:
    """Issue an API token for the caller; the plaintext is in this response only."""
    user = db.get(User, principal.user_id)
    if user is None:
        raise NotFound("user not found")
    issued = service.issue_api_token(db, user, body.name, actor=principal)
    return IssuedTokenOut.model_validate(
        {**TokenOut.model_validate(issued.token).model_dump(), "token": issued.plaintext}
    )


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, db: DbSession, principal: CurrentPrincipal) -> None:
    """Revoke one of the caller's organization's tokens (admins: any; others: their own)."""
    service.revoke_api_token(db, principal, token_id)
