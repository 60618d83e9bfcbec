"""API shapes for users, tokens and the caller."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from siyu.tenancy.models import Role


class MeOut(BaseModel):
    """The authenticated caller."""

    user_id: int
    org_id: int
    org_name: str
    name: str
    role: Role


class UserIn(BaseModel):
    """A new console user."""

    email: str = Field(min_length=3, max_length=254)
    name: str = Field(min_length=1, max_length=120)
    password: str = Field(min_length=8, max_length=200)
    role: Role = Role.operator


class UserPatch(BaseModel):
    """A user's new role, or their deactivation (is_active=false) or reactivation; omitted fields stay."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    is_active: bool | None = None


class UserOut(BaseModel):
    """A console user as listed to admins."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime


class TokenIn(BaseModel):
    """A new API token's label."""

    name: str = Field(min_length=1, max_length=120)


class TokenOut(BaseModel):
    """An API token without its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedTokenOut(TokenOut):
    """A token just created: the only time its plaintext is shown."""

    token: str


class RoleIn(BaseModel):
    """A user's new role."""

    model_config = ConfigDict(extra="forbid")

    role: Role
