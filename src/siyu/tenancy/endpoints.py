"""REST endpoints: who am I, users (admins) and API tokens."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from siyu.audit import service as audit
from siyu.audit.service import AuditAction
from siyu.kit.errors import Forbidden, NotFound
from siyu.tenancy import service
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession
from siyu.tenancy.models import ApiToken, Organization, Role, User
from siyu.tenancy.schemas import IssuedTokenOut, MeOut, RoleIn, TokenIn, TokenOut, UserIn, UserOut

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
    return list(db.scalars(select(User).where(User.org_id == principal.org_id).order_by(User.id)))


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, db: DbSession, principal: AdminPrincipal) -> User:
    """Add a user to the caller's organization; only an owner may create another owner."""
    if body.role == Role.owner and principal.role != Role.owner:
        raise Forbidden("only an owner can create an owner", field="role")
    user = service.create_user(db, principal.org_id, body.email, body.name, body.password, body.role)
    audit.record(
        db,
        principal.org_id,
        AuditAction.user_created,
        actor=principal,
        target_type="user",
        target_id=user.id,
        role=user.role.value,
    )
    return user


@router.patch("/users/{user_id}", response_model=UserOut)
def change_role(user_id: int, body: RoleIn, db: DbSession, principal: AdminPrincipal) -> User:
    """Give a user of the organization another role (admins; owners for anything touching an owner)."""
    user, previous = service.change_role(db, principal, user_id, body.role)
    if previous != user.role:
        audit.record(
            db,
            principal.org_id,
            AuditAction.user_role_changed,
            actor=principal,
            target_type="user",
            target_id=user.id,
            previous=previous.value,
            role=user.role.value,
        )
    return user


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(db: DbSession, principal: CurrentPrincipal) -> list[ApiToken]:
    """The caller's own API tokens."""
    stmt = select(ApiToken).where(ApiToken.org_id == principal.org_id, ApiToken.user_id == principal.user_id)
    return list(db.scalars(stmt.order_by(ApiToken.id)))


@router.post("/tokens", response_model=IssuedTokenOut, status_code=201)
def create_token(body: TokenIn, db: DbSession, principal: CurrentPrincipal) -> IssuedTokenOut:
    """Issue an API token for the caller; the plaintext is in this response only."""
    user = db.get(User, principal.user_id)
    if user is None:
        raise NotFound("user not found")
    issued = service.issue_api_token(db, user, body.name)
    audit.record(
        db,
        principal.org_id,
        AuditAction.api_token_created,
        actor=principal,
        target_type="api_token",
        target_id=issued.token.id,
        prefix=issued.token.prefix,
    )
    return IssuedTokenOut.model_validate(
        {**TokenOut.model_validate(issued.token).model_dump(), "token": issued.plaintext}
    )


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, db: DbSession, principal: CurrentPrincipal) -> None:
    """Revoke one of the caller's organization's tokens (admins: any; others: their own)."""
    token = db.get(ApiToken, token_id)
    if token is None or token.org_id != principal.org_id:
        raise NotFound("api token not found")
    if token.user_id != principal.user_id and not principal.can_administer:
        raise NotFound("api token not found")
    service.revoke_api_token(db, principal, token_id)
    audit.record(
        db,
        principal.org_id,
        AuditAction.api_token_revoked,
        actor=principal,
        target_type="api_token",
        target_id=token_id,
        owner_id=token.user_id,
    )
