"""API shapes of orders (money in integer fen, times timezone-aware)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from siyu.tracking.schemas import IdentityRefIn

PLATFORM_PATTERN = r"^[a-z][a-z0-9_]*$"


class OrderItemIn(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(extra="forbid")

    sku: str | None = Field(default=None, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    unit_price_fen: int = Field(ge=0)
    unit_cost_fen: int | None = Field(default=None, ge=0)


class OrderIn(BaseModel):
    """A paid order from a platform. Name the buyer by ``customer_id`` or by ``identity``."""

    model_config = ConfigDict(extra="forbid")

    platform: str = Field(
        min_length=1,
        max_length=30,
        pattern=PLATFORM_PATTERN,
        description="taobao, jd, douyin, youzan, offline...",
    )
    external_id: str = Field(min_length=1, max_length=64, description="The platform's order number.")
    customer_id: int | None = Field(default=None, ge=1)
    identity: IdentityRefIn | None = None
    account_id: int | None = Field(default=None, ge=1)
    amount_fen: int = Field(ge=0, description="What the buyer paid, in fen (1 yuan = 100 fen).")
    refunded_fen: int = Field(default=0, ge=0)
    paid_at: AwareDatetime
    items: list[OrderItemIn] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> OrderIn:
        if (self.customer_id is None) == (self.identity is None):
            raise ValueError("name the buyer by customer_id or by identity (exactly one)")
        if self.refunded_fen > self.amount_fen:
            raise ValueError("refunded_fen cannot exceed amount_fen")
        return self


class OrderItemOut(BaseModel):
    """A stored order line."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    sku: str | None
    name: str
    quantity: int
    unit_price_fen: int
    unit_cost_fen: int | None


class OrderOut(BaseModel):
    """A stored order with its lines."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    platform: str
    external_id: str
    customer_id: int
    account_id: int | None
    amount_fen: int
    refunded_fen: int
    paid_at: datetime
    created_at: datetime
    items: list[OrderItemOut] = Field(default_factory=list)
