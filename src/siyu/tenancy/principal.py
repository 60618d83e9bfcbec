"""Who is asking: the principal every query is scoped by."""

from __future__ import annotations

from dataclasses import dataclass

from siyu.tenancy.models import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: their organization, user and role."""

    org_id: int
    user_id: int
    role: Role
    name: str = ""
    locale: str | None = None

    @property
    def sees_whole_org(self) -> bool:
        """Owners and admins see every customer; operators only those their accounts follow."""
        return self.role in (Role.owner, Role.admin)

    @property
    def sees_full_mobile(self) -> bool:
        """Operators get masked mobile numbers (138****1234); admins and owners see them whole."""
        return self.role in (Role.owner, Role.admin)

    @property
    def can_administer(self) -> bool:
        """May manage users, accounts, tokens and settings."""
        return self.role in (Role.owner, Role.admin)
