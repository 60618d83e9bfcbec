"""API shapes for channel codes, routing pools, account health, alerts and acquisition reports."""

from __future__ import annotations

import string
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from siyu.channels.models import STATE_MAX, AlertKind, CodeCarrier, CodeStatus, RoutingRule
from siyu.channels.routing import hours_mask


class MemberIn(BaseModel):
    """One account in a pool."""

    account_id: int = Field(ge=1)
    is_backup: bool = False
    regions: list[str] = Field(default_factory=list, max_length=50)
    hours: dict[str, list[int]] = Field(
        default_factory=dict,
        description='Local working hours, e.g. {"0": [9, 18]} for Monday 9-18; empty = always.',
    )

    @field_validator("hours")
    @classmethod
    def _hours_valid(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        hours_mask(value)  # raises ValueError naming the bad weekday
        return value


class PoolIn(BaseModel):
    """A routing pool to create."""

    name: str = Field(min_length=1, max_length=60)
    rule: RoutingRule = RoutingRule.least_loaded
    daily_cap: int = Field(default=200, ge=1, le=10_000)
    warmup: list[int] = Field(
        default_factory=lambda: [20, 40, 80],
        max_length=52,
        description="Daily add cap in week 1, 2, ... of a new account's life.",
    )
    members: list[MemberIn] = Field(default_factory=list, max_length=10_000)

    @field_validator("warmup")
    @classmethod
    def _warmup_positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("every warm-up cap must be at least 1")
        return value


class PoolPatch(BaseModel):
    """Pool fields to change; omitted ones stay. `members` replaces the whole membership."""

    name: str | None = Field(default=None, min_length=1, max_length=60)
    rule: RoutingRule | None = None
    daily_cap: int | None = Field(default=None, ge=1, le=10_000)
    warmup: list[int] | None = Field(default=None, max_length=52)
    members: list[MemberIn] | None = Field(default=None, max_length=10_000)


class MemberOut(BaseModel):
    """A pool member as stored."""

    model_config = ConfigDict(from_attributes=True)

    account_id: int
    is_backup: bool
    regions: list[str]
    hours: dict[str, Any]


class PoolOut(BaseModel):
    """A routing pool with its members."""

    id: int
    name: str
    rule: RoutingRule
    daily_cap: int
    warmup: list[int]
    members: list[MemberOut]


REMARK_FIELDS = ("name", "channel", "campaign", "code", "intent", "mobile_last4")


def check_remark_template(template: str) -> str:
    """A remark template may use only {name}, {channel}, {campaign}, {code}, {intent}, {mobile_last4}."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"remark_template is malformed: {exc}") from exc
    unknown = [n for n in names if n not in REMARK_FIELDS]
    if unknown:
        raise ValueError(
            f"remark_template may use only {', '.join('{' + f + '}' for f in REMARK_FIELDS)}; "
            f"got {{{unknown[0]}}}"
        )
    return template


class CodeIn(BaseModel):
    """A channel code to create for one source."""

    name: str = Field(min_length=1, max_length=120)
    state: str = Field(
        min_length=1,
        max_length=STATE_MAX,
        pattern=r"^[A-Za-z0-9_\-.]+$",
        description="Comes back on every customer the code brings (WeCom allows 30 characters).",
    )
    channel: str = Field(
        min_length=1, max_length=60, description="douyin, taobao_parcel, live, flyer, store..."
    )
    campaign: str = Field(default="", max_length=120)
    content_item: str = Field(default="", max_length=200)
    pool_id: int = Field(ge=1)
    carrier: CodeCarrier = CodeCarrier.sandbox
    tag_ids: list[int] = Field(default_factory=list, max_length=50)
    remark_template: str = Field(default="", max_length=200)
    welcome_message: str = Field(default="", max_length=4000)
    cost_fen: int = Field(default=0, ge=0)

    @field_validator("remark_template")
    @classmethod
    def _remark_ok(cls, value: str) -> str:
        return check_remark_template(value)


class CodePatch(BaseModel):
    """Code fields to change; the state and carrier are fixed once issued."""

    name: str | None = Field(default=None, min_length=1, max_length=120)
    campaign: str | None = Field(default=None, max_length=120)
    content_item: str | None = Field(default=None, max_length=200)
    pool_id: int | None = Field(default=None, ge=1)
    tag_ids: list[int] | None = Field(default=None, max_length=50)
    remark_template: str | None = Field(default=None, max_length=200)
    welcome_message: str | None = Field(default=None, max_length=4000)
    cost_fen: int | None = Field(default=None, ge=0)
    status: CodeStatus | None = None

    @field_validator("remark_template")
    @classmethod
    def _remark_ok(cls, value: str | None) -> str | None:
        return value if value is None else check_remark_template(value)


class CodeOut(BaseModel):
    """A channel code as stored."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    state: str
    channel: str
    campaign: str
    content_item: str
    pool_id: int
    carrier: CodeCarrier
    config_id: str
    qr_url: str
    tag_ids: list[int]
    remark_template: str
    welcome_message: str
    cost_fen: int
    status: CodeStatus
    created_at: datetime


class RouteIn(BaseModel):
    """A new contact to route through a pool."""

    region: str | None = Field(default=None, max_length=60)


class RouteOut(BaseModel):
    """The account chosen for a new contact (its place is reserved for today)."""

    account_id: int
    pool_id: int
    backup: bool


class HealthOut(BaseModel):
    """One account's health over the window."""

    account_id: int
    name: str
    status: str
    friend_count: int
    soft_cap: int
    hard_cap: int
    adds: int
    adds_today: int
    daily_cap: int | None
    deleted_by_customer: int
    deleted_by_staff: int
    complaints: int
    deletion_rate: float
    score: int


class AlertOut(BaseModel):
    """An account alert."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    kind: AlertKind
    day: date
    message: str
    created_at: datetime
    resolved_at: datetime | None


class DailyAddsOut(BaseModel):
    """Adds through one code on one local day."""

    code_id: int
    day: date
    adds: int


class CodeReportOut(BaseModel):
    """A code's adds, cost per add and conversion of adds to a first order over the range."""

    code_id: int
    name: str
    state: str
    channel: str
    adds: int
    cost_fen: int
    cost_per_add_fen: int | None
    first_orders: int
    conversion: float | None


class TouchOut(BaseModel):
    """A customer's first- or last-touch source."""

    model_config = ConfigDict(from_attributes=True)

    kind: str
    code_id: int | None
    channel: str
    campaign: str
    content_item: str
    at: datetime
