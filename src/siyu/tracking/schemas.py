"""API shapes of the event log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from siyu.customers.models import IdentityKind

MAX_BATCH = 1000
# A clock a little ahead is normal; hours ahead is nearly always local time sent as UTC.
MAX_FUTURE = timedelta(hours=1)
EVENT_TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:\-]*$"


class IdentityRefIn(BaseModel):
    """A customer named by one of their platform identifiers; unknown ones create the customer."""

    model_config = ConfigDict(extra="forbid")

    kind: IdentityKind
    value: str = Field(min_length=1, max_length=128)


class EventIn(BaseModel):
    """One event. Name the customer by ``customer_id`` or by ``identity``, not both."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        min_length=1,
        max_length=60,
        pattern=EVENT_TYPE_PATTERN,
        description="What happened, e.g. message.received, order.paid, live.viewed.",
    )
    customer_id: int | None = Field(default=None, ge=1)
    identity: IdentityRefIn | None = None
    account_id: int | None = Field(default=None, ge=1, description="The carrier account involved, if any.")
    occurred_at: AwareDatetime = Field(
        description="When it happened, with a UTC offset; naive times and times over an hour ahead are refused."
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    source: str | None = Field(default=None, max_length=60)
    idempotency_key: str = Field(
        min_length=1,
        max_length=128,
        description="Unique per organization; sending the same key again is a no-op.",
    )


class EventBatchIn(BaseModel):
    """Up to 1,000 events; the whole batch is validated before any is stored."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


BATCH_ADAPTER: TypeAdapter[EventBatchIn] = TypeAdapter(EventBatchIn)


class IngestResult(BaseModel):
    """How many events were stored and how many were repeats of a key already stored (or in the batch)."""

    inserted: int
    duplicates: int


class EventOut(BaseModel):
    """A stored event."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    type: str
    customer_id: int
    account_id: int | None
    occurred_at: datetime
    properties: dict[str, Any]
    source: str | None
    idempotency_key: str
    received_at: datetime
