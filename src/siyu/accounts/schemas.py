"""API shapes for carrier accounts."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from siyu.accounts.models import AccountKind, AccountStatus


class AccountIn(BaseModel):
    """A carrier account to register."""

    kind: AccountKind
    external_id: str = Field(min_length=1, max_length=128, description="WeCom userid, WeChat id or AppID.")
    name: str = Field(min_length=1, max_length=120)
    operator_id: int | None = None
    soft_cap: int | None = Field(default=None, ge=1, le=100_000)
    hard_cap: int | None = Field(default=None, ge=1, le=100_000)
    status: AccountStatus = AccountStatus.active


class AccountPatch(BaseModel):
    """Fields an admin may change on an account; omitted fields stay."""

    name: str | None = Field(default=None, min_length=1, max_length=120)
    operator_id: int | None = None
    soft_cap: int | None = Field(default=None, ge=1, le=100_000)
    hard_cap: int | None = Field(default=None, ge=1, le=100_000)
    status: AccountStatus | None = None
    friend_count: int | None = Field(default=None, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _caps_in_order(self) -> AccountPatch:
        if self.soft_cap is not None and self.hard_cap is not None and self.soft_cap > self.hard_cap:
            raise ValueError("soft_cap must not exceed hard_cap")
        return self


class AccountOut(BaseModel):
    """A carrier account with its capacity."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: AccountKind
    external_id: str
    name: str
    operator_id: int | None
    friend_count: int
    soft_cap: int
    hard_cap: int
    status: AccountStatus
    created_at: datetime

    @property
    def load(self) -> float:
        """Share of the soft cap in use."""
        return self.friend_count / self.soft_cap if self.soft_cap else 0.0
