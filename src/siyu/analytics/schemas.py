"""API shapes of the analytics endpoints (money in integer fen, times timezone-aware UTC)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from siyu.analytics.funnels import MAX_STEPS
from siyu.analytics.models import CostDimension
from siyu.analytics.retention import MAX_PERIODS, Period

Breakdown = str | int | None

EARLIEST = date(1970, 1, 1)
LATEST = date(2200, 1, 1)


def check_range(value: date | datetime | None) -> date | datetime | None:
    """Refuse dates outside 1970..2200: the analytic tables hold microsecond timestamps since 1970."""
    if value is None:
        return None
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST <= day < LATEST:
        raise ValueError(f"must be between {EARLIEST} and {LATEST}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(check_range)]
Day = Annotated[date, AfterValidator(check_range)]


class StepIn(BaseModel):
    """A funnel or retention step: an event type and optional equality filters on string properties."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(min_length=1, max_length=60)
    properties: dict[str, str] = Field(default_factory=dict)


class FunnelIn(BaseModel):
    """An ordered funnel over the organization's events."""

    model_config = ConfigDict(extra="forbid")

    steps: list[StepIn] = Field(min_length=1, max_length=MAX_STEPS)
    modes: list[str] = Field(
        default_factory=list, description="strict_order, strict_deduplication, strict_increase"
    )
    window_seconds: int = Field(default=14 * 86_400, ge=1, le=366 * 86_400)
    date_from: Instant | None = None
    date_to: Instant | None = None
    breakdown: str | None = Field(
        default=None, description="source, channel, stage, account_id or operator_id"
    )


class FunnelStepOut(BaseModel):
    """Customers reaching one step, conversions and the median time from the previous step."""

    step: int
    event_type: str
    count: int
    conversion_from_start: float | None
    conversion_from_previous: float | None
    median_seconds_from_previous: float | None


class FunnelResultOut(BaseModel):
    """One funnel, overall or for one breakdown value."""

    breakdown_value: Breakdown
    steps: list[FunnelStepOut]


class RetentionIn(BaseModel):
    """A retention table: cohorts by a start event, returns by another."""

    model_config = ConfigDict(extra="forbid")

    start: StepIn
    returning: StepIn
    period: Period = Period.week
    periods: int = Field(default=8, ge=0, le=MAX_PERIODS)
    first_time: bool = True
    on_or_after: bool = False
    date_from: Instant | None = None
    date_to: Instant | None = None
    breakdown: str | None = None
    utc_offset_minutes: int = Field(default=480, ge=-840, le=840)


class RetentionCohortOut(BaseModel):
    """One cohort: first day, breakdown value, size, retained counts and rates for periods 0..N."""

    cohort_start: date
    breakdown_value: Breakdown
    size: int
    retained: list[int]
    rates: list[float]


class CommerceRowOut(BaseModel):
    """Commerce figures of one group value (see siyu.analytics.commerce for definitions)."""

    group: Breakdown
    customers: int
    buyers: int
    repeat_buyers: int
    first_order_conversion: float | None
    repurchase_rate: float | None
    orders: int
    revenue_fen: int
    refunded_fen: int
    net_revenue_fen: int
    aov_fen: int | None
    refund_rate: float | None
    cost_known_orders: int
    cost_fen: int
    gross_margin_fen: int | None
    gross_margin_rate: float | None


class RFMReportOut(BaseModel):
    """Buyers per RFM segment and per (R, FM) cell: grid[r - 1][fm - 1]."""

    as_of: datetime
    buyers: int
    segments: dict[str, int]
    grid: list[list[int]]


class CLVBinOut(BaseModel):
    """Customers whose CLV lies in [lower_fen, upper_fen)."""

    lower_fen: int
    upper_fen: int
    customers: int


class CLVDistributionOut(BaseModel):
    """The distribution of predicted CLV over customers that have one."""

    customers: int
    total_clv_fen: int
    mean_clv_fen: int | None
    mean_p_alive: float | None
    bins: list[CLVBinOut]


class ChannelROIOut(BaseModel):
    """One channel's cost, acquired customers, revenue to date, predicted CLV and ROI."""

    channel: str | None
    cost_fen: int
    customers: int
    cost_per_customer_fen: int | None
    revenue_fen: int
    predicted_clv_fen: int
    roi: float | None
    predicted_roi: float | None


#: The largest cost one ledger row holds (¥21,474,836.47): its column is a 32-bit INTEGER.
MAX_COST_FEN = 2**31 - 1


class ChannelCostIn(BaseModel):
    """A cost for one channel over a period of local dates (both inclusive)."""

    model_config = ConfigDict(extra="forbid")

    dimension: CostDimension = CostDimension.source
    channel: str = Field(min_length=1, max_length=60)
    period_start: Day
    period_end: Day
    # The column is a 32-bit INTEGER: PostgreSQL refused more with a 500 (found by the fuzz on PostgreSQL).
    cost_fen: int = Field(ge=0, le=MAX_COST_FEN)
    note: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _period_order(self) -> ChannelCostIn:
        if self.period_end < self.period_start:
            raise ValueError("period_end must not be before period_start")
        return self


class ChannelCostPatch(BaseModel):
    """Fields of a channel cost to change; omitted fields stay."""

    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(default=None, min_length=1, max_length=60)
    period_start: Day | None = None
    period_end: Day | None = None
    cost_fen: int | None = Field(default=None, ge=0, le=MAX_COST_FEN)
    note: str | None = Field(default=None, max_length=200)


class ChannelCostOut(BaseModel):
    """A stored channel cost."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    dimension: CostDimension
    channel: str
    period_start: date
    period_end: date
    cost_fen: int
    note: str
    created_at: datetime
    updated_at: datetime


class RefreshOut(BaseModel):
    """What a projection refresh did."""

    events: int
    orders: int
    customers: int
    merged: int
    refunds_resynced: int
    seconds: float
