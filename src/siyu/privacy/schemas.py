"""API shapes of the personal-data use cases: consents, erasure, retention, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from siyu.customers.models import ConsentScope, ConsentSource


class ConsentIn(BaseModel):
    """A consent given or withdrawn, and how."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    scope: ConsentScope = ConsentScope.marketing
    granted: bool
    source: ConsentSource
    at: AwareDatetime | None = Field(default=None, description="When it was given; default now.")
    note: str = Field(default="", max_length=200)


class ConsentOut(BaseModel):
    """A stored consent record."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: int
    scope: ConsentScope
    granted: bool
    source: ConsentSource
    at: datetime
    note: str
    recorded_by: int | None
    recorded_at: datetime


class EraseIn(BaseModel):
    """Erasing needs the customer's id typed again, so that no click erases the wrong person."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    confirm: str = Field(min_length=1, max_length=40, description="The customer's id, typed again.")


class ErasureOut(BaseModel):
    """What an erasure did."""

    customer_id: int
    merged_ids: list[int]
    counts: dict[str, int]
    audit_id: int


class RetentionIn(BaseModel):
    """How long raw webhook payloads and audit entries are kept, in days."""

    model_config = ConfigDict(extra="forbid")

    webhook_days: int = Field(ge=1, le=365)
    audit_days: int = Field(ge=180, le=3650)


class RetentionOut(BaseModel):
    """The organization's retention, in days."""

    webhook_days: int
    audit_days: int


class AuditEntryOut(BaseModel):
    """One audit log entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    actor_id: int | None
    actor_name: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, Any]
    created_at: datetime
