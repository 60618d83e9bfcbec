"""REST endpoints of the customer hub: profiles, identities, merges, follows, tags, notes, timelines.

A customer id that was merged into another profile answers with the survivor and ``resolved_from``
set to the id asked for (no redirect: the survivor's data is what the caller wants).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from siyu.accounts.models import Account
from siyu.accounts.service import visible_accounts
from siyu.customers import (
    access,
    customer_tagging,
    follows,
    identities,
    listing,
    merge,
    notes,
    profiles,
    tagging,
    timelines,
)
from siyu.customers.models import Customer, FollowRelation, MergeAudit, Stage, Tag, TagGroup
from siyu.customers.schemas import (
    CountOut,
    CustomerFilters,
    CustomerIn,
    CustomerOut,
    CustomerPatch,
    FollowIn,
    FollowOut,
    IdentityIn,
    IdentityOut,
    MergeAuditOut,
    MergeIn,
    NoteIn,
    NoteOut,
    TagGroupIn,
    TagGroupOut,
    TagGroupPatch,
    TagIdsIn,
    TagIn,
    TagOut,
    TagPatch,
    TimelinePage,
)
from siyu.kit.errors import Invalid
from siyu.kit.pagination import Page
from siyu.privacy import service as privacy
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession
from siyu.tenancy.principal import Principal

router = APIRouter(prefix="/api/v1", tags=["customers"])

# Ids are positive and fit a signed 64-bit column; anything else is a 422 naming the parameter.
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_ID = 2**63 - 1


def _out(customer: Customer, principal: Principal, asked: int | None = None) -> CustomerOut:
    resolved = asked if asked is not None and asked != customer.id else None
    return CustomerOut.build(customer, principal, resolved_from=resolved)


def _filters(
    name: str | None,
    text: str | None,
    mobile: str | None,
    tag_ids: list[int] | None,
    stage: Stage | None,
    source: str | None,
    account_id: int | None,
) -> CustomerFilters:
    return CustomerFilters(
        name=name,
        text=text,
        mobile=mobile,
        tag_ids=tag_ids or [],
        stage=stage,
        source=source,
        account_id=account_id,
    )


NameQ = Annotated[str | None, Query(min_length=1, max_length=120, description="Substring of the name.")]
TextQ = Annotated[
    str | None, Query(min_length=1, max_length=120, description="Substring of the name or the remark.")
]
MobileQ = Annotated[
    str | None, Query(pattern=r"^(\d{4}|1[3-9]\d{9})$", description="Full mobile or last 4 digits.")
]
TagIdsQ = Annotated[list[int] | None, Query(max_length=20, description="Customers having ALL these tags.")]
SourceQ = Annotated[str | None, Query(min_length=1, max_length=60)]
AccountQ = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Actively followed by this account.")]


def _guard_lookup(request: Request, db: DbSession, principal: Principal, mobile: str | None) -> None:
    settings = request.app.state.settings
    privacy.check_mobile_lookup(
        db, principal, request.app.state.mobile_lookups, settings.mobile_lookups_per_hour, mobile
    )


# --- customers ------------------------------------------------------------------------------------


@router.get("/customers", response_model=Page[CustomerOut])
def list_customers(
    request: Request,
    db: DbSession,
    principal: CurrentPrincipal,
    name: NameQ = None,
    q: TextQ = None,
    mobile: MobileQ = None,
    tag_ids: TagIdsQ = None,
    stage: Stage | None = None,
    source: SourceQ = None,
    account_id: AccountQ = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=listing.MAX_PAGE)] = 50,
) -> Page[CustomerOut]:
    """Visible customers, newest first, keyset paginated (?cursor= from next_cursor)."""
    if tag_ids is not None and any(t < 1 for t in tag_ids):
        raise Invalid("tag ids are positive integers", field="tag_ids")
    filters = _filters(name, q, mobile, tag_ids, stage, source, account_id)
    _guard_lookup(request, db, principal, mobile)
    rows, next_cursor = listing.list_customers(db, principal, filters, cursor, limit)
    return Page[CustomerOut](items=[_out(c, principal) for c in rows], next_cursor=next_cursor)


@router.get("/customers/count", response_model=CountOut)
def count_customers(
    request: Request,
    db: DbSession,
    principal: CurrentPrincipal,
    name: NameQ = None,
    q: TextQ = None,
    mobile: MobileQ = None,
    tag_ids: TagIdsQ = None,
    stage: Stage | None = None,
    source: SourceQ = None,
    account_id: AccountQ = None,
) -> CountOut:
    """The exact number of visible customers matching the same filters as the list (on demand only)."""
    filters = _filters(name, q, mobile, tag_ids, stage, source, account_id)
    _guard_lookup(request, db, principal, mobile)
    return CountOut(count=listing.count_customers(db, principal, filters))


@router.post("/customers", response_model=CustomerOut, status_code=201)
def create_customer(
    body: CustomerIn,
    db: DbSession,
    principal: CurrentPrincipal,
    account_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Account that follows the customer; required for operators."),
    ] = None,
) -> CustomerOut:
    """Create a customer. If its mobile belongs to an existing profile the two merge and the answer is
    the older profile, with resolved_from set to the id just created."""
    customer, created_id = profiles.create_customer_as(db, principal, body, account_id=account_id)
    return _out(customer, principal, created_id)


@router.post("/customers/merge", response_model=MergeAuditOut, status_code=201)
def merge_customers(body: MergeIn, db: DbSession, principal: AdminPrincipal) -> MergeAudit:
    """Merge one profile into another by hand (admins); the audit says what moved."""
    return merge.merge_customers(
        db, principal.org_id, body.survivor_id, body.merged_id, body.reason, principal.user_id
    )


@router.get("/customers/{customer_id}", response_model=CustomerOut)
def get_customer(customer_id: Id, db: DbSession, principal: CurrentPrincipal) -> CustomerOut:
    """One customer (a merged-away id answers with its survivor and resolved_from)."""
    return _out(access.get_customer(db, principal, customer_id), principal, customer_id)


@router.patch("/customers/{customer_id}", response_model=CustomerOut)
def update_customer(
    customer_id: Id, body: CustomerPatch, db: DbSession, principal: CurrentPrincipal
) -> CustomerOut:
    """Change profile fields; setting remark makes it manual."""
    return _out(profiles.update_customer_as(db, principal, customer_id, body), principal, customer_id)


@router.post("/customers/{customer_id}/remark/reset", response_model=CustomerOut)
def reset_remark(customer_id: Id, db: DbSession, principal: CurrentPrincipal) -> CustomerOut:
    """Return to the automatic Name+Source+Intent+Mobile remark."""
    customer = access.get_customer(db, principal, customer_id)
    return _out(profiles.reset_remark(db, principal.org_id, customer.id), principal, customer_id)


# --- identities and merges ------------------------------------------------------------------------


@router.get("/customers/{customer_id}/identities", response_model=list[IdentityOut])
def list_identities(customer_id: Id, db: DbSession, principal: CurrentPrincipal) -> list[IdentityOut]:
    """The customer's identifiers on every platform."""
    return [IdentityOut.build(i, principal) for i in identities.list_identities(db, principal, customer_id)]


@router.post("/customers/{customer_id}/identities", response_model=CustomerOut, status_code=201)
def add_identity(
    customer_id: Id, body: IdentityIn, db: DbSession, principal: CurrentPrincipal
) -> CustomerOut:
    """Attach an identifier; if another profile holds it the two merge (the older survives)."""
    return _out(
        identities.add_identity_as(db, principal, customer_id, body.kind, body.value), principal, customer_id
    )


@router.get("/customers/{customer_id}/merges", response_model=list[MergeAuditOut])
def list_merges(customer_id: Id, db: DbSession, principal: CurrentPrincipal) -> list[MergeAudit]:
    """Audits of the profiles merged into this customer."""
    return identities.list_merges(db, principal, customer_id)


# --- follow relations -----------------------------------------------------------------------------


@router.get("/customers/{customer_id}/follows", response_model=list[FollowOut])
def list_follows(customer_id: Id, db: DbSession, principal: CurrentPrincipal) -> list[FollowRelation]:
    """Which accounts have the customer as a contact, since when and through which source."""
    return follows.list_follows(db, principal, customer_id)


def _check_account(db: DbSession, principal: Principal, account_id: int) -> None:
    if db.scalar(visible_accounts(principal).where(Account.id == account_id)) is None:
        raise Invalid(f"account {account_id} does not exist", field="account_id")


@router.post("/customers/{customer_id}/follows", response_model=FollowOut, status_code=201)
def follow(customer_id: Id, body: FollowIn, db: DbSession, principal: CurrentPrincipal) -> FollowRelation:
    """Record that one of the caller's visible accounts follows the customer (idempotent)."""
    customer = access.get_customer(db, principal, customer_id)
    _check_account(db, principal, body.account_id)
    rel = follows.follow(
        db,
        principal.org_id,
        customer.id,
        body.account_id,
        since=body.since,
        source=body.source,
        state=body.state,
        origin="api",
    )
    # None: the relation ended after ``since`` (a stale add); answer with it as it stands.
    return rel or follows.relation_of(db, customer.id, body.account_id)  # type: ignore[return-value]


@router.delete("/customers/{customer_id}/follows/{account_id}", response_model=FollowOut)
def unfollow(
    customer_id: Id,
    account_id: Id,
    db: DbSession,
    principal: CurrentPrincipal,
    by: Literal["customer", "staff"] = "staff",
) -> FollowRelation:
    """End a follow relation, recording whether the customer or the staff member deleted the other."""
    customer = access.get_customer(db, principal, customer_id)
    _check_account(db, principal, account_id)
    return follows.unfollow(db, principal.org_id, customer.id, account_id, by=by, origin="api")


# --- tags on customers ----------------------------------------------------------------------------


@router.get("/customers/{customer_id}/tags", response_model=list[TagOut])
def customer_tags(customer_id: Id, db: DbSession, principal: CurrentPrincipal) -> list[Tag]:
    """The customer's tags."""
    return customer_tagging.customer_tags(db, principal, customer_id)


@router.put("/customers/{customer_id}/tags", response_model=list[TagOut])
def set_customer_tags(
    customer_id: Id, body: TagIdsIn, db: DbSession, principal: CurrentPrincipal
) -> list[Tag]:
    """Replace the customer's tags with exactly these."""
    return customer_tagging.set_customer_tags(db, principal, customer_id, body.tag_ids)


@router.post("/customers/{customer_id}/tags/{tag_id}", response_model=list[TagOut])
def add_tag(customer_id: Id, tag_id: Id, db: DbSession, principal: CurrentPrincipal) -> list[Tag]:
    """Put one tag on the customer."""
    tagging.get_tag(db, principal.org_id, tag_id)
    return customer_tagging.add_tags(db, principal, customer_id, [tag_id])


@router.delete("/customers/{customer_id}/tags/{tag_id}", response_model=list[TagOut])
def remove_tag(customer_id: Id, tag_id: Id, db: DbSession, principal: CurrentPrincipal) -> list[Tag]:
    """Take one tag off the customer."""
    tagging.get_tag(db, principal.org_id, tag_id)
    return customer_tagging.remove_tags(db, principal, customer_id, [tag_id])


# --- notes and timeline ---------------------------------------------------------------------------


@router.get("/customers/{customer_id}/notes", response_model=list[NoteOut])
def list_notes(
    customer_id: Id,
    db: DbSession,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[NoteOut]:
    """The customer's notes, newest first (mobiles inside masked for operators)."""
    return [NoteOut.build(n, principal) for n in notes.list_notes(db, principal, customer_id, limit)]


@router.post("/customers/{customer_id}/notes", response_model=NoteOut, status_code=201)
def add_note(customer_id: Id, body: NoteIn, db: DbSession, principal: CurrentPrincipal) -> NoteOut:
    """Keep a note for later private chats."""
    return NoteOut.build(notes.add_note(db, principal, customer_id, body.body), principal)


@router.delete("/customers/{customer_id}/notes/{note_id}", status_code=204)
def delete_note(customer_id: Id, note_id: Id, db: DbSession, principal: CurrentPrincipal) -> Response:
    """Delete a note (its author, or an admin)."""
    notes.delete_note(db, principal, customer_id, note_id)
    return Response(status_code=204)


@router.get("/customers/{customer_id}/timeline", response_model=TimelinePage)
def timeline(
    customer_id: Id,
    db: DbSession,
    principal: CurrentPrincipal,
    before: Annotated[
        str | None, Query(max_length=80, description="next_before of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=listing.MAX_PAGE)] = 50,
) -> TimelinePage:
    """Events, notes and orders of the customer, newest first."""
    return timelines.timeline(db, principal, customer_id, before, limit)


# --- tag groups and tags --------------------------------------------------------------------------


def _group_out(group: TagGroup, tags: list[Tag]) -> TagGroupOut:
    return TagGroupOut(
        id=group.id,
        name=group.name,
        sort_order=group.sort_order,
        external_id=group.external_id,
        tags=[TagOut.model_validate(t) for t in tags],
    )


@router.get("/tag-groups", response_model=list[TagGroupOut])
def list_tag_groups(db: DbSession, principal: CurrentPrincipal) -> list[TagGroupOut]:
    """Every tag group with its tags."""
    return [_group_out(g, tags) for g, tags in tagging.list_tag_groups(db, principal.org_id)]


@router.post("/tag-groups", response_model=TagGroupOut, status_code=201)
def create_tag_group(body: TagGroupIn, db: DbSession, principal: AdminPrincipal) -> TagGroupOut:
    """Create a tag group, optionally with tags (admins)."""
    return _group_out(*tagging.create_tag_group(db, principal.org_id, body))


@router.get("/tag-groups/{group_id}", response_model=TagGroupOut)
def get_tag_group(group_id: Id, db: DbSession, principal: CurrentPrincipal) -> TagGroupOut:
    """One tag group with its tags."""
    group = tagging.get_tag_group(db, principal.org_id, group_id)
    return _group_out(group, list(tagging.list_tags(db, principal.org_id, group.id)))


@router.patch("/tag-groups/{group_id}", response_model=TagGroupOut)
def update_tag_group(
    group_id: Id, body: TagGroupPatch, db: DbSession, principal: AdminPrincipal
) -> TagGroupOut:
    """Rename or reorder a tag group (admins)."""
    group = tagging.update_tag_group(db, principal.org_id, group_id, body)
    return _group_out(group, list(tagging.list_tags(db, principal.org_id, group.id)))


@router.delete("/tag-groups/{group_id}", status_code=204)
def delete_tag_group(group_id: Id, db: DbSession, principal: AdminPrincipal) -> Response:
    """Delete a tag group with its tags (admins)."""
    tagging.delete_tag_group(db, principal.org_id, group_id, origin="api")
    return Response(status_code=204)


@router.get("/tags", response_model=list[TagOut])
def list_tags(
    db: DbSession, principal: CurrentPrincipal, group_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> list[Tag]:
    """The organization's tags, optionally of one group."""
    return list(tagging.list_tags(db, principal.org_id, group_id))


@router.post("/tags", response_model=TagOut, status_code=201)
def create_tag(body: TagIn, db: DbSession, principal: AdminPrincipal) -> Tag:
    """Create a tag in a group (admins)."""
    return tagging.create_tag(db, principal.org_id, body)


@router.get("/tags/{tag_id}", response_model=TagOut)
def get_tag(tag_id: Id, db: DbSession, principal: CurrentPrincipal) -> Tag:
    """One tag."""
    return tagging.get_tag(db, principal.org_id, tag_id)


@router.patch("/tags/{tag_id}", response_model=TagOut)
def update_tag(tag_id: Id, body: TagPatch, db: DbSession, principal: AdminPrincipal) -> Tag:
    """Rename, reorder or move a tag (admins)."""
    return tagging.update_tag(db, principal.org_id, tag_id, body)


@router.delete("/tags/{tag_id}", status_code=204)
def delete_tag(tag_id: Id, db: DbSession, principal: AdminPrincipal) -> Response:
    """Delete a tag and remove it from every customer (admins)."""
    tagging.delete_tag(db, principal.org_id, tag_id, origin="api")
    return Response(status_code=204)
