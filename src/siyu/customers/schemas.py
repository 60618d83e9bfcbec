"""API shapes for the customer hub; every input is validated so bad input is a 422 naming the field."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    FollowStatus,
    Gender,
    IdentityKind,
    Stage,
)
from siyu.customers.remarks import WECOM_REMARK_MAX, is_masked_mobile, masked_remark
from siyu.kit.phone import mask_mobile, normalize_mobile
from siyu.tenancy.principal import Principal


def _mobile_or_none(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return normalize_mobile(value)


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    #: A patch may send back the masked mobile a client was shown: the service keeps the stored digits
    #: when it is theirs, masked, and refuses it otherwise. A new profile never takes a masked one.
    _masked_ok: ClassVar[bool] = False

    @field_validator("mobile", check_fields=False)
    @classmethod
    def _valid_mobile(cls, value: str | None) -> str | None:
        # normalize_mobile raises Invalid; re-raise as ValueError so pydantic names the field.
        from siyu.kit.errors import Invalid

        if value is not None and is_masked_mobile(value):
            if cls._masked_ok:
                return value.strip()
            raise ValueError(f"{value.strip()} is a masked mobile number: send the full 11 digits")
        try:
            return _mobile_or_none(value)
        except Invalid as exc:
            raise ValueError(exc.message) from None


class CustomerIn(_Profile):
    """A customer profile to create; a mobile also becomes an identity (and may merge profiles)."""

    name: str = Field(default="", max_length=120)
    mobile: str | None = Field(
        default=None, max_length=20, description="Mainland mobile; +86 and separators accepted."
    )
    gender: Gender = Gender.unknown
    region: str | None = Field(default=None, max_length=60)
    stage: Stage = Stage.new
    source: str | None = Field(
        default=None, max_length=60, description="Acquisition source code, e.g. douyin_comment."
    )
    source_detail: str | None = Field(default=None, max_length=200)
    intent: str | None = Field(default=None, max_length=60)
    remark: str | None = Field(
        default=None,
        max_length=WECOM_REMARK_MAX,
        description="Set to write the remark by hand; omitted means composed as Name+Source+Intent+Mobile.",
    )
    consent_marketing: bool = False
    consent_analytics: bool = True


class CustomerPatch(_Profile):
    """Fields to change; omitted fields stay. Setting remark makes it manual until reset. A masked mobile
    (in ``mobile`` or inside ``remark``) stands for the stored number it masks; any other is refused."""

    _masked_ok: ClassVar[bool] = True

    name: str | None = Field(default=None, max_length=120)
    mobile: str | None = Field(default=None, max_length=20)
    gender: Gender | None = None
    region: str | None = Field(default=None, max_length=60)
    stage: Stage | None = None
    #: Required with a new stage: a stage set by hand says why (it is in the stage_changed event).
    stage_reason: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=60)
    source_detail: str | None = Field(default=None, max_length=200)
    intent: str | None = Field(default=None, max_length=60)
    remark: str | None = Field(default=None, max_length=WECOM_REMARK_MAX)
    consent_marketing: bool | None = None
    consent_analytics: bool | None = None


class CustomerOut(BaseModel):
    """A customer as the caller may see it (mobiles masked for operators)."""

    id: int
    name: str
    mobile: str | None
    gender: Gender
    region: str | None
    stage: Stage
    source: str | None
    source_detail: str | None
    intent: str | None
    remark: str
    remark_is_manual: bool
    consent_marketing: bool
    consent_analytics: bool
    created_at: datetime
    updated_at: datetime
    resolved_from: int | None = Field(
        default=None,
        description="Set when the id asked for (or the profile just created) was merged into this one.",
    )

    @classmethod
    def build(
        cls, customer: Customer, principal: Principal | None, *, resolved_from: int | None = None
    ) -> CustomerOut:
        """The view of ``customer`` for ``principal`` (None means full access, e.g. internal callers)."""
        full = principal is None or principal.sees_full_mobile
        return cls(
            id=customer.id,
            name=customer.name,
            mobile=customer.mobile if full else mask_mobile(customer.mobile),
            gender=customer.gender,
            region=customer.region,
            stage=customer.stage,
            source=customer.source,
            source_detail=customer.source_detail,
            intent=customer.intent,
            remark=customer.remark if full else masked_remark(customer.remark),
            remark_is_manual=customer.remark_is_manual,
            consent_marketing=customer.consent_marketing,
            consent_analytics=customer.consent_analytics,
            created_at=customer.created_at,
            updated_at=customer.updated_at,
            resolved_from=resolved_from,
        )


class CustomerFilters(BaseModel):
    """List filters; all given filters must hold (tags: the customer has every one)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=120, description="Substring of the name.")
    text: str | None = Field(
        default=None, min_length=1, max_length=120, description="Substring of the name or the remark."
    )
    mobile: str | None = Field(
        default=None,
        pattern=r"^(\d{4}|1[3-9]\d{9})$",
        description="The full 11-digit mobile or its last 4 digits.",
    )
    tag_ids: list[int] = Field(default_factory=list, max_length=20)
    stage: Stage | None = None
    source: str | None = Field(default=None, min_length=1, max_length=60)
    account_id: int | None = Field(
        default=None, ge=1, description="Customers actively followed by this account."
    )


class IdentityIn(BaseModel):
    """An identifier to attach; if another profile holds it, the two profiles merge."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: IdentityKind
    value: str = Field(min_length=1, max_length=128)


class IdentityOut(BaseModel):
    """An identifier of a customer (mobile values masked for operators)."""

    id: int
    kind: IdentityKind
    value: str
    created_at: datetime

    @classmethod
    def build(cls, identity: CustomerIdentity, principal: Principal | None) -> IdentityOut:
        """The view of ``identity`` for ``principal``."""
        full = principal is None or principal.sees_full_mobile
        value = identity.value
        if identity.kind == IdentityKind.mobile and not full:
            value = mask_mobile(value) or ""
        return cls(id=identity.id, kind=identity.kind, value=value, created_at=identity.created_at)


class MergeIn(BaseModel):
    """Merge ``merged_id`` into ``survivor_id`` by hand (admins)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    survivor_id: int = Field(ge=1)
    merged_id: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=200)


class MergeAuditOut(BaseModel):
    """What one merge moved."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    survivor_id: int
    merged_id: int
    reason: str
    moved: dict[str, Any]
    actor_id: int | None
    created_at: datetime


class FollowIn(BaseModel):
    """Record that an account has the customer as a contact (idempotent; re-activates a deleted one)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    account_id: int = Field(ge=1)
    since: AwareDatetime | None = Field(default=None, description="When they became contacts; default now.")
    source: str | None = Field(default=None, max_length=60)
    state: str | None = Field(
        default=None, max_length=30, description="WeCom 'state' of the contact-me code."
    )


class FollowOut(BaseModel):
    """A follow relation between a carrier account and the customer."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    since: datetime
    source: str | None
    state: str | None
    status: FollowStatus
    ended_at: datetime | None


class TagGroupIn(BaseModel):
    """A tag group to create, optionally with its first tags."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=60)
    sort_order: int = Field(default=0, ge=0, le=1_000_000)
    external_id: str | None = Field(default=None, max_length=64)
    tags: list[str] = Field(default_factory=list, max_length=200)

    @field_validator("tags")
    @classmethod
    def _tag_names(cls, value: list[str]) -> list[str]:
        names = [v.strip() for v in value]
        if any(not n or len(n) > 60 for n in names):
            raise ValueError("tag names must be 1-60 characters")
        if len(set(names)) != len(names):
            raise ValueError("tag names must be unique within a group")
        return names


class TagGroupPatch(BaseModel):
    """Changes to a tag group."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=60)
    sort_order: int | None = Field(default=None, ge=0, le=1_000_000)


class TagIn(BaseModel):
    """A tag to create inside a group."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    group_id: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=60)
    sort_order: int = Field(default=0, ge=0, le=1_000_000)
    external_id: str | None = Field(default=None, max_length=64)


class TagPatch(BaseModel):
    """Changes to a tag (rename, reorder, move to another group)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=60)
    sort_order: int | None = Field(default=None, ge=0, le=1_000_000)
    group_id: int | None = Field(default=None, ge=1)


class TagOut(BaseModel):
    """A tag."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    group_id: int
    name: str
    sort_order: int
    external_id: str | None


class TagGroupOut(BaseModel):
    """A tag group with its tags."""

    id: int
    name: str
    sort_order: int
    external_id: str | None
    tags: list[TagOut]


class TagIdsIn(BaseModel):
    """A set of tag ids (replaces the customer's tags with PUT)."""

    model_config = ConfigDict(extra="forbid")

    tag_ids: list[int] = Field(max_length=500)


class NoteIn(BaseModel):
    """A note about the customer."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    body: str = Field(min_length=1, max_length=5000)


class NoteOut(BaseModel):
    """A note, newest first in lists."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: int
    author_id: int | None
    body: str
    created_at: datetime

    @classmethod
    def build(cls, note: Any, principal: Principal | None) -> NoteOut:
        """The view of ``note`` for ``principal``: mobiles inside the text masked for roles that see
        masked numbers (the remark's rule), so a note cannot reveal what the profile hides."""
        full = principal is None or principal.sees_full_mobile
        return cls(
            id=note.id,
            customer_id=note.customer_id,
            author_id=note.author_id,
            body=note.body if full else masked_remark(note.body),
            created_at=note.created_at,
        )


class TimelineItem(BaseModel):
    """One entry of a customer's timeline: an event, a note or an order."""

    kind: Literal["event", "note", "order"]
    id: int
    at: datetime
    type: str = Field(description="Event type; 'note' or 'order' for those kinds.")
    account_id: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TimelinePage(BaseModel):
    """A page of the timeline, newest first; pass next_before as ?before= for older entries."""

    items: list[TimelineItem]
    next_before: str | None = None


class CountOut(BaseModel):
    """How many customers match (computed on request, never on every page)."""

    count: int
