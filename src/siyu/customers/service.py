"""Rules of the customer hub: profiles, identities and merges, follows, tags, notes, lists, timelines.

Services flush and never commit. Functions taking a ``Principal`` apply visibility (404 for what the
caller may not see); functions taking an ``org_id`` are for trusted callers (importers, callbacks,
admins after their own checks). A customer id that was merged away resolves to its survivor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, delete, insert, select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.accounts.service import visible_accounts
from siyu.customers import consent, follows, resolution, stages
from siyu.customers import repository as repo
from siyu.customers.consent import add_consent, consents_of
from siyu.customers.erasure import Erasure, erase_customer
from siyu.customers.follows import follow_relation, relation_of
from siyu.customers.merge import merge_customers, refresh_remark, register_merge_hook
from siyu.customers.models import (
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    Customer,
    CustomerIdentity,
    CustomerTag,
    FollowRelation,
    IdentityKind,
    MergeAudit,
    Note,
    Stage,
    Tag,
)
from siyu.customers.personal_data import PersonRecord, person_record
from siyu.customers.recording import note_remark, record
from siyu.customers.remarks import masked_remark, mobiles_in, restore_masked
from siyu.customers.schemas import CustomerFilters, CustomerIn, CustomerPatch, TimelineItem, TimelinePage
from siyu.customers.tagging import (
    check_tag_ids,
    create_tag,
    create_tag_group,
    delete_tag,
    delete_tag_group,
    ensure_tag,
    get_tag,
    get_tag_group,
    list_tag_groups,
    list_tags,
    update_tag,
    update_tag_group,
)
from siyu.events.vocabulary import EventType
from siyu.kit.bulk import IN_LIST_SIZE, chunked
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.errors import Conflict, Forbidden, Invalid, NotFound
from siyu.kit.phone import mask_mobile
from siyu.tenancy.principal import Principal

__all__ = [
    "Erasure",
    "PersonRecord",
    "add_consent_as",
    "add_identity",
    "add_identity_as",
    "add_note",
    "add_tags",
    "change_tags",
    "consents_of",
    "count_customers",
    "create_customer",
    "create_customer_as",
    "create_tag",
    "create_tag_group",
    "customer_tags",
    "delete_note",
    "delete_tag",
    "delete_tag_group",
    "end_follow",
    "ensure_tag",
    "erase_customer",
    "find_or_create_by_identities",
    "find_or_create_by_identity",
    "follow",
    "follow_relation",
    "get_customer",
    "get_tag",
    "get_tag_group",
    "list_consents",
    "list_customers",
    "list_follows",
    "list_identities",
    "list_merges",
    "list_notes",
    "list_tag_groups",
    "list_tags",
    "live_customer",
    "merge_customers",
    "person_record",
    "refresh_remark",
    "register_merge_hook",
    "relation_of",
    "remove_tags",
    "reset_remark",
    "set_customer_tags",
    "timeline",
    "unfollow",
    "update_customer",
    "update_customer_as",
    "update_tag",
    "update_tag_group",
    "visible_customers",
    "visible_holders",
    "visible_live_customers",
]

MAX_PAGE = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Non-nullable profile fields: an explicit null in a patch is an error, not "clear it".
_REQUIRED_FIELDS = ("name", "gender", "stage", "remark", "consent_marketing", "consent_analytics")


def visible_customers(principal: Principal) -> Select[Customer]:
    """The one scoping helper: org filter, live profiles only, and for operators only customers actively
    followed by an account they run."""
    return repo.visible_customers(principal)


def visible_live_customers(db: Session, principal: Principal, ids: Iterable[int]) -> dict[int, int]:
    """Map customer ids to their live profile (following merges), keeping only profiles the principal may
    see: a write naming a hidden customer then fails exactly like one naming a customer that does not exist."""
    live = resolution.live_customers(db, principal.org_id, set(ids))
    if principal.sees_whole_org or not live:
        return live
    seen: set[int] = set()
    for part in chunked(sorted(set(live.values())), IN_LIST_SIZE):
        seen.update(
            db.scalars(
                visible_customers(principal).where(Customer.id.in_(part)).with_only_columns(Customer.id)
            )
        )
    return {cid: survivor for cid, survivor in live.items() if survivor in seen}


def visible_holders(
    db: Session, principal: Principal, refs: Iterable[resolution.IdentityRef]
) -> dict[resolution.IdentityRef, int]:
    """The live customer holding each identity, for identities held by a customer the principal may see;
    identities nobody holds and those of hidden customers are both absent, so the two cannot be told apart."""
    holders = resolution.lookup_identities(db, principal.org_id, refs)
    seen = visible_live_customers(db, principal, holders.values())
    return {ref: cid for ref, cid in holders.items() if cid in seen}


# --- profiles -------------------------------------------------------------------------------------


def _survivor_of(db: Session, org_id: int, customer_id: int, *, field: str | None = None) -> Customer:
    """The live profile for ``customer_id`` in the organization (following merges), or 404/422."""
    # get() answers from the identity map without a round trip; a loaded row is what a select would return.
    customer = db.get(Customer, customer_id)
    if customer is not None and customer.org_id != org_id:
        customer = None
    hops = 0
    while customer is not None and customer.merged_into_id is not None and hops < 10:
        customer = db.get(Customer, customer.merged_into_id)
        hops += 1
    if customer is None or customer.merged_into_id is not None:
        if field:
            raise Invalid(f"customer {customer_id} does not exist", field=field)
        raise NotFound("customer not found")
    return customer


def live_customer(db: Session, org_id: int, customer_id: int) -> Customer:
    """For trusted callers: the live profile ``customer_id`` is now (following merges), or 404."""
    return _survivor_of(db, org_id, customer_id)


def get_customer(db: Session, principal: Principal, customer_id: int) -> Customer:
    """A customer the principal may see, or 404. A merged-away id resolves to its survivor (when visible):
    the returned customer's id then differs from ``customer_id``, which the API reports as resolved_from."""
    survivor = _survivor_of(db, principal.org_id, customer_id)
    visible = db.scalar(visible_customers(principal).where(Customer.id == survivor.id))
    if visible is None:
        raise NotFound("customer not found")
    return visible


def customer_by_identity(db: Session, principal: Principal, kind: IdentityKind, value: str) -> Customer:
    """The customer holding this identity (a WeCom external userid...), if the principal may see them, or 404."""
    holder = repo.identity_holder(db, principal.org_id, kind, normalize_identity(kind, value))
    if holder is None:
        raise NotFound("customer not found")
    return get_customer(db, principal, holder.customer_id)


def _as_customer_in(data: CustomerIn | Mapping[str, Any]) -> CustomerIn:
    if isinstance(data, CustomerIn):
        return data
    try:
        return CustomerIn.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise Invalid(f"{field}: {first['msg']}", field=field) from None


def create_customer(
    db: Session,
    org_id: int,
    data: CustomerIn | Mapping[str, Any],
    *,
    actor_id: int | None = None,
    origin: str = "",
    at: datetime | None = None,
    code: str | None = None,
) -> Customer:
    """Create a profile (customer_added, with the source and the channel ``code`` that brought them); its
    mobile becomes an identity. If another profile already holds that mobile the two merge at once
    (audited) and the older profile, the survivor, is returned. A stage given is set by hand."""
    return _create(db, org_id, data, actor_id, origin=origin, at=at, code=code)[0]


def _create(
    db: Session,
    org_id: int,
    data: CustomerIn | Mapping[str, Any],
    actor_id: int | None,
    *,
    origin: str = "",
    at: datetime | None = None,
    code: str | None = None,
) -> tuple[Customer, int]:
    data = _as_customer_in(data)
    fields = data.model_dump(exclude={"remark", "stage"})
    customer = Customer(
        org_id=org_id, **fields, remark=data.remark or "", remark_is_manual=data.remark is not None
    )
    refresh_remark(customer)
    db.add(customer)
    db.flush()
    record(
        db,
        org_id,
        customer.id,
        EventType.customer_added,
        at=at,
        origin=origin,
        source=customer.source,
        code=code,
    )
    _consent_from_profile(db, customer, data.consent_marketing, data.consent_analytics, origin, actor_id)
    if data.stage is not None and data.stage != Stage.new:
        stages.set_stage(db, customer, data.stage, "given when the profile was created", actor_id=actor_id)
    if data.mobile:
        survivor = add_identity(
            db,
            org_id,
            customer.id,
            IdentityKind.mobile,
            data.mobile,
            actor_id=actor_id,
            reason=f"created with mobile {mask_mobile(data.mobile)} of an existing profile",
        )
        return survivor, customer.id
    return customer, customer.id


def _consent_from_profile(
    db: Session,
    customer: Customer,
    marketing: bool | None,
    analytics: bool | None,
    origin: str,
    actor_id: int | None,
) -> None:
    """A flag given with a profile (create or patch) is stored as a consent record that sets it, so the
    flag is always the latest record's; a new profile's defaults (no marketing, analytics) need none."""
    source = ConsentSource.import_ if origin == "import" else ConsentSource.unspecified
    for scope, wanted, default in (
        (ConsentScope.marketing, marketing, False),
        (ConsentScope.analytics, analytics, True),
    ):
        current = getattr(customer, consent.FLAG_OF_SCOPE[scope])
        if wanted is None or (wanted == current and consent.latest(db, customer.id, scope) is not None):
            continue
        if wanted == current == default:
            continue
        consent.add_consent(db, customer, scope, wanted, source, actor_id=actor_id, origin=origin)


def _guard_identity(
    db: Session, principal: Principal, customer_id: int | None, kind: IdentityKind, value: str, field: str
) -> None:
    """Operators may not pull in (merge) a profile they cannot see: that would reveal another
    operator's customer. They get 409 and an admin merges instead."""
    if principal.sees_whole_org:
        return
    holder = repo.identity_holder(db, principal.org_id, kind, value)
    if holder is None or holder.customer_id == customer_id:
        return
    if db.scalar(visible_customers(principal).where(Customer.id == holder.customer_id)) is None:
        raise Conflict(f"this {kind} belongs to another profile; ask an admin to merge them", field=field)


def create_customer_as(
    db: Session,
    principal: Principal,
    data: CustomerIn | Mapping[str, Any],
    *,
    account_id: int | None = None,
    origin: str = "api",
) -> tuple[Customer, int]:
    """``create_customer`` for an API caller: (profile, id of the row created; it differs from the
    profile's id when the new row merged into an older one). With ``account_id`` that account (one the
    caller may see) follows the customer; operators must give one, or they could not see what they made."""
    data = _as_customer_in(data)
    if account_id is not None:
        account_ok = db.scalar(
            visible_accounts(principal).where(Account.id == account_id).with_only_columns(Account.id)
        )
        if account_ok is None:
            raise Invalid(f"account {account_id} does not exist", field="account_id")
    elif not principal.sees_whole_org:
        raise Invalid("operators must name one of their accounts as account_id", field="account_id")
    if data.mobile:
        _guard_identity(db, principal, None, IdentityKind.mobile, data.mobile, "mobile")
    customer, created_id = _create(db, principal.org_id, data, principal.user_id, origin=origin)
    if account_id is not None:
        follow(db, principal.org_id, customer.id, account_id, source=data.source, origin=origin)
    return customer, created_id


def update_customer_as(
    db: Session, principal: Principal, customer_id: int, patch: CustomerPatch, *, origin: str = "api"
) -> Customer:
    """``update_customer`` on a customer the caller may see (operators may not merge in hidden profiles)."""
    customer = get_customer(db, principal, customer_id)
    if patch.mobile:
        _guard_identity(db, principal, customer.id, IdentityKind.mobile, patch.mobile, "mobile")
    return update_customer(
        db, principal.org_id, customer.id, patch, actor_id=principal.user_id, origin=origin
    )


def update_customer(
    db: Session,
    org_id: int,
    customer_id: int,
    patch: CustomerPatch | Mapping[str, Any],
    *,
    actor_id: int | None = None,
    origin: str = "",
) -> Customer:
    """Apply a partial update. Setting ``remark`` makes it manual; otherwise the remark follows
    name/source/intent/mobile. A new mobile becomes an identity too (and may merge profiles). A new stage
    is set by hand and needs ``stage_reason``. Records profile_changed, remark_changed, stage_changed."""
    if not isinstance(patch, CustomerPatch):
        try:
            patch = CustomerPatch.model_validate(dict(patch))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            raise Invalid(f"{field}: {first['msg']}", field=field) from None
    customer = _survivor_of(db, org_id, customer_id)
    changes = patch.model_dump(exclude_unset=True)
    for field in _REQUIRED_FIELDS:
        if field in changes and changes[field] is None:
            raise Invalid(f"{field} cannot be null", field=field)
    _restore_masked(customer, changes)
    wanted_consent = (changes.pop("consent_marketing", None), changes.pop("consent_analytics", None))
    new_mobile = changes.pop("mobile", customer.mobile)
    remark = changes.pop("remark", None)
    stage = changes.pop("stage", None)
    stage_reason = changes.pop("stage_reason", None)
    if stage is not None and stage != customer.stage and not (stage_reason or "").strip():
        raise Invalid("say why the stage changes", field="stage_reason")
    before = customer.remark
    changed = [key for key, value in changes.items() if getattr(customer, key) != value]
    for key, value in changes.items():
        setattr(customer, key, value)
    if remark is not None:
        customer.remark, customer.remark_is_manual = remark, True
    mobile_changed = new_mobile != customer.mobile
    if mobile_changed:
        changed.append("mobile")
    customer.mobile = new_mobile
    refresh_remark(customer)
    customer.updated_at = utcnow()
    db.flush()
    if changed:
        record(db, org_id, customer.id, EventType.profile_changed, origin=origin, fields=sorted(changed))
    if stage is not None:
        stages.set_stage(db, customer, stage, stage_reason or "", actor_id=actor_id)
    note_remark(db, customer, before, origin=origin)
    _consent_from_profile(db, customer, *wanted_consent, origin, actor_id)
    if mobile_changed and new_mobile:
        return add_identity(
            db,
            org_id,
            customer.id,
            IdentityKind.mobile,
            new_mobile,
            actor_id=actor_id,
            reason=f"mobile {mask_mobile(new_mobile)} set on a profile while another held it",
        )
    return customer


def _restore_masked(customer: Customer, changes: dict[str, Any]) -> None:
    """A client shown masked mobiles may send them back: each stands for the stored digits it masks (so
    they are never lost), any other masked number is 422; a remark sent back unchanged changes nothing."""
    if changes.get("mobile"):
        changes["mobile"] = restore_masked(changes["mobile"], [customer.mobile], field="mobile")
    if changes.get("remark"):
        known = [customer.mobile, *mobiles_in(customer.remark)]
        changes["remark"] = restore_masked(changes["remark"], known, field="remark")
        if changes["remark"] == customer.remark:
            del changes["remark"]


def reset_remark(db: Session, org_id: int, customer_id: int, *, origin: str = "") -> Customer:
    """Go back to the automatic Name+Source+Intent+Mobile remark."""
    customer = _survivor_of(db, org_id, customer_id)
    before = customer.remark
    customer.remark_is_manual = False
    refresh_remark(customer)
    db.flush()
    note_remark(db, customer, before, origin=origin)
    return customer


# --- identities and merges ------------------------------------------------------------------------


def normalize_identity(kind: IdentityKind, value: str) -> str:
    """The stored form of an identifier: 11-digit mobiles, other identifiers stripped; empty is 422."""
    return resolution.normalize_identity(kind, value)[1]


def _display(kind: IdentityKind, value: str) -> str:
    return (mask_mobile(value) or "") if kind == IdentityKind.mobile else value


def add_identity(
    db: Session,
    org_id: int,
    customer_id: int,
    kind: IdentityKind,
    value: str,
    *,
    actor_id: int | None = None,
    reason: str | None = None,
) -> Customer:
    """Attach an identifier. If another profile holds it the two merge automatically (older id survives,
    audited with ``reason``); returns the profile that now holds the identifier."""
    kind = IdentityKind(kind)
    value = normalize_identity(kind, value)
    customer = _survivor_of(db, org_id, customer_id)
    holder = repo.identity_holder(db, org_id, kind, value)
    if holder is None:
        _attach(db, org_id, customer, kind, value)
        db.flush()
        return customer
    if holder.customer_id == customer.id:
        return customer
    survivor_id, merged_id = sorted((holder.customer_id, customer.id))
    merge_customers(
        db, org_id, survivor_id, merged_id, reason or f"shared {kind} {_display(kind, value)}", actor_id
    )
    return _survivor_of(db, org_id, survivor_id)


def _attach(db: Session, org_id: int, customer: Customer, kind: IdentityKind, value: str) -> None:
    """Give ``customer`` an identifier nobody holds (normalized already); the caller flushes."""
    db.add(CustomerIdentity(org_id=org_id, customer_id=customer.id, kind=kind, value=value))
    if kind == IdentityKind.mobile and not customer.mobile:
        before, customer.mobile = customer.remark, value
        refresh_remark(customer)
        note_remark(db, customer, before)


def _insert_identities(
    db: Session, org_id: int, customer: Customer, pairs: Sequence[tuple[IdentityKind, str]]
) -> None:
    """``_attach`` for several identifiers nobody holds, as one INSERT without ORM objects (a later query
    reads the rows from the database like any other): a flush of new objects costs more than the INSERT."""
    if not pairs:
        return
    now = utcnow()
    db.execute(
        insert(CustomerIdentity.__table__),
        [
            {"org_id": org_id, "customer_id": customer.id, "kind": kind, "value": value, "created_at": now}
            for kind, value in pairs
        ],
    )
    mobile = next((value for kind, value in pairs if kind == IdentityKind.mobile), None)
    if mobile and not customer.mobile:
        before, customer.mobile = customer.remark, mobile
        refresh_remark(customer)
        note_remark(db, customer, before)


def add_identity_as(
    db: Session, principal: Principal, customer_id: int, kind: IdentityKind, value: str
) -> Customer:
    """``add_identity`` for an API caller on a customer they may see; an operator may not pull in (merge)
    a profile they cannot see (409), since that would reveal someone else's customer."""
    customer = get_customer(db, principal, customer_id)
    kind = IdentityKind(kind)
    value = normalize_identity(kind, value)
    _guard_identity(db, principal, customer.id, kind, value, "value")
    return add_identity(
        db,
        principal.org_id,
        customer.id,
        kind,
        value,
        actor_id=principal.user_id,
        reason=f"shared {kind} {_display(kind, value)} (added by user {principal.user_id})",
    )


def find_or_create_by_identity(
    db: Session,
    org_id: int,
    kind: IdentityKind,
    value: str,
    defaults: CustomerIn | Mapping[str, Any] | None = None,
    *,
    actor_id: int | None = None,
    origin: str = "",
    at: datetime | None = None,
) -> tuple[Customer, bool]:
    """For importers and callbacks: the profile holding (kind, value), with empty fields filled from
    ``defaults``; or a new profile from ``defaults`` carrying the identifier. Returns (customer, created)."""
    kind = IdentityKind(kind)
    value = normalize_identity(kind, value)
    data = _as_customer_in(defaults or {})
    holder = repo.identity_holder(db, org_id, kind, value)
    if holder is None and data.mobile:
        # The same person may already be known by the mobile in the defaults: attach to them.
        holder = repo.identity_holder(db, org_id, IdentityKind.mobile, data.mobile)
        if holder is not None:
            db.add(CustomerIdentity(org_id=org_id, customer_id=holder.customer_id, kind=kind, value=value))
            db.flush()
    if holder is not None:
        customer = _survivor_of(db, org_id, holder.customer_id)
        _fill_from(db, customer, data, origin)
        db.flush()
        return customer, False
    customer = create_customer(db, org_id, data, actor_id=actor_id, origin=origin, at=at)
    if data.mobile:
        # Creating with a mobile may have merged profiles or attached (kind, value) already: check again.
        return add_identity(db, org_id, customer.id, kind, value, actor_id=actor_id), True
    # Nobody held (kind, value) and the new profile has no identifier yet: attach without looking again.
    _attach(db, org_id, customer, kind, value)
    db.flush()
    return customer, True


def find_or_create_by_identities(
    db: Session,
    org_id: int,
    identities: Sequence[tuple[IdentityKind, str]],
    defaults: CustomerIn | Mapping[str, Any] | None = None,
    *,
    actor_id: int | None = None,
    reason: str | None = None,
    origin: str = "",
    at: datetime | None = None,
) -> tuple[Customer, bool]:
    """``find_or_create_by_identity`` on the first (kind, value), then ``add_identity`` of each other one
    (a profile holding one of them merges in, audited with ``reason``), with one lookup for all of them
    in the usual cases. Returns (the profile now holding them all, whether that profile is new)."""
    if not identities:
        raise Invalid("at least one identifier is required", field="identities")
    pairs = list(
        dict.fromkeys((IdentityKind(k), normalize_identity(IdentityKind(k), v)) for k, v in identities)
    )
    data = _as_customer_in(defaults or {})
    first, extra = pairs[0], pairs[1:]
    if data.mobile:
        # The defaults' mobile takes part in the matching (and may merge): the general path handles it.
        customer, created = find_or_create_by_identity(
            db, org_id, *first, data, actor_id=actor_id, origin=origin, at=at
        )
        held = None
    else:
        held = repo.identity_holders(db, org_id, pairs)
        created = first not in held
        if created:
            customer = create_customer(db, org_id, data, actor_id=actor_id, origin=origin, at=at)
        else:
            customer = _survivor_of(db, org_id, held[first])
            _fill_from(db, customer, data, origin)
        if all(held.get(p, customer.id) == customer.id for p in extra):
            # Nothing to merge: every identifier is new or already this profile's. One insert for all.
            _insert_identities(db, org_id, customer, [p for p in pairs if p not in held])
            db.flush()
            return customer, created
        if created:
            _attach(db, org_id, customer, *first)
    new_id = customer.id if created else None
    for kind, value in extra:
        if held is not None and (kind, value) not in held:
            # Nobody held it at the lookup, and attaching or merging moves identifiers, never adds them.
            _attach(db, org_id, customer, kind, value)
        elif held is None or held[(kind, value)] != customer.id:
            db.flush()
            customer = add_identity(db, org_id, customer.id, kind, value, actor_id=actor_id, reason=reason)
    db.flush()
    return customer, customer.id == new_id


def _fill_from(db: Session, customer: Customer, data: CustomerIn, origin: str) -> None:
    """Fill the profile's empty fields from ``data`` (what a carrier or an import knows of them)."""
    given = data.model_dump(exclude_unset=True, exclude={"remark", "mobile", "stage", "gender"})
    before = customer.remark
    filled = []
    for key, value in given.items():
        if value and not getattr(customer, key) and not isinstance(value, bool):
            setattr(customer, key, value)
            filled.append(key)
    refresh_remark(customer)
    if filled:
        db.flush()
        record(
            db, customer.org_id, customer.id, EventType.profile_changed, origin=origin, fields=sorted(filled)
        )
    note_remark(db, customer, before, origin=origin)


def list_identities(db: Session, principal: Principal, customer_id: int) -> list[CustomerIdentity]:
    """A visible customer's identifiers."""
    return list(repo.identities_of(db, get_customer(db, principal, customer_id).id))


def list_merges(db: Session, principal: Principal, customer_id: int) -> list[MergeAudit]:
    """The merge audits of profiles merged into a visible customer, newest first."""
    customer = get_customer(db, principal, customer_id)
    return list(
        db.scalars(
            select(MergeAudit)
            .where(MergeAudit.org_id == principal.org_id, MergeAudit.survivor_id == customer.id)
            .order_by(MergeAudit.id.desc())
        )
    )


# --- follow relations -----------------------------------------------------------------------------


def follow(
    db: Session,
    org_id: int,
    customer_id: int,
    account_id: int,
    *,
    since: datetime | None = None,
    source: str | None = None,
    state: str | None = None,
    origin: str = "",
    backfill: bool = False,
) -> FollowRelation | None:
    """Record that the account has the customer as a contact (see ``customers.follows``): idempotent for
    an active relation, an ended one starts again from ``since``; None for an add older than its end."""
    customer = _survivor_of(db, org_id, customer_id)
    follows.check_account(db, org_id, account_id)
    rel = follows.relation_of(db, customer.id, account_id)
    return follows.follow_relation(
        db,
        org_id,
        customer,
        account_id,
        rel,
        since=since,
        source=source,
        state=state,
        origin=origin,
        backfill=backfill,
    )


def unfollow(
    db: Session,
    org_id: int,
    customer_id: int,
    account_id: int,
    *,
    by: follows.EndedBy,
    at: datetime | None = None,
    origin: str = "",
) -> FollowRelation:
    """End a follow relation, recording who ended it (idempotent); 404 if the two never were contacts."""
    customer = _survivor_of(db, org_id, customer_id)
    return follows.unfollow_customer(db, org_id, customer, account_id, by=by, at=at, origin=origin)


def end_follow(
    db: Session,
    org_id: int,
    customer_id: int,
    account_id: int,
    *,
    by: follows.EndedBy,
    at: datetime,
    origin: str = "",
) -> FollowRelation | None:
    """Carrier news that a follow ended at ``at`` (maybe before siyu saw it start): see
    ``customers.follows.end_relation``; None when the end is older than the relation's start."""
    customer = _survivor_of(db, org_id, customer_id)
    follows.check_account(db, org_id, account_id)
    return follows.end_relation(db, org_id, customer, account_id, by=by, at=at, origin=origin)


def list_follows(db: Session, principal: Principal, customer_id: int) -> list[FollowRelation]:
    """A visible customer's follow relations (active and ended), earliest first."""
    return list(repo.follows_of(db, get_customer(db, principal, customer_id).id))


# --- tags on customers ----------------------------------------------------------------------------


def customer_tags(db: Session, principal: Principal, customer_id: int) -> list[Tag]:
    """The tags on a visible customer."""
    return list(repo.tags_of(db, get_customer(db, principal, customer_id).id))


def change_tags(
    db: Session,
    org_id: int,
    customer_id: int,
    *,
    add: Iterable[int] = (),
    remove: Iterable[int] = (),
    origin: str = "",
    at: datetime | None = None,
) -> tuple[list[int], list[int]]:
    """The one writer of tags on customers: put ``add`` on and take ``remove`` off a live customer (tag
    ids of the organization, checked by the caller), recording tag_added / tag_removed for what really
    changed. Returns (added, removed)."""
    customer = _survivor_of(db, org_id, customer_id)
    have = set(db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == customer.id)))
    added = sorted(set(add) - have)
    removed = sorted(set(remove) & have - set(add))
    if removed:
        db.execute(
            delete(CustomerTag).where(CustomerTag.customer_id == customer.id, CustomerTag.tag_id.in_(removed))
        )
    if added:
        now = utcnow()
        db.execute(
            insert(CustomerTag.__table__),
            [{"customer_id": customer.id, "tag_id": t, "org_id": org_id, "created_at": now} for t in added],
        )
    if added or removed:
        names = {t.id: t for t in db.scalars(select(Tag).where(Tag.id.in_(added + removed)))}
        for kind, ids in ((EventType.tag_added, added), (EventType.tag_removed, removed)):
            for tag_id in ids:
                tag = names.get(tag_id)
                record(
                    db,
                    org_id,
                    customer.id,
                    kind,
                    at=at,
                    origin=origin,
                    tag_id=tag_id,
                    tag=tag.name if tag else "",
                    external_id=tag.external_id if tag else None,
                )
    db.flush()
    return added, removed


def set_customer_tags(
    db: Session, principal: Principal, customer_id: int, tag_ids: list[int], *, origin: str = "api"
) -> list[Tag]:
    """Replace the customer's tags with exactly ``tag_ids`` (tags of another organization are 422)."""
    customer = get_customer(db, principal, customer_id)
    wanted = set(check_tag_ids(db, principal.org_id, tag_ids))
    have = set(db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == customer.id)))
    change_tags(db, principal.org_id, customer.id, add=wanted - have, remove=have - wanted, origin=origin)
    return list(repo.tags_of(db, customer.id))


def add_tags(
    db: Session, principal: Principal, customer_id: int, tag_ids: list[int], *, origin: str = "api"
) -> list[Tag]:
    """Put tags on a customer (already present ones are kept as they are)."""
    customer = get_customer(db, principal, customer_id)
    change_tags(
        db, principal.org_id, customer.id, add=check_tag_ids(db, principal.org_id, tag_ids), origin=origin
    )
    return list(repo.tags_of(db, customer.id))


def remove_tags(
    db: Session, principal: Principal, customer_id: int, tag_ids: list[int], *, origin: str = "api"
) -> list[Tag]:
    """Take tags off a customer (absent ones are ignored)."""
    customer = get_customer(db, principal, customer_id)
    change_tags(
        db, principal.org_id, customer.id, remove=check_tag_ids(db, principal.org_id, tag_ids), origin=origin
    )
    return list(repo.tags_of(db, customer.id))


# --- notes ----------------------------------------------------------------------------------------


def add_note(db: Session, principal: Principal, customer_id: int, body: str) -> Note:
    """Keep a note on a visible customer, authored by the principal."""
    customer = get_customer(db, principal, customer_id)
    body = body.strip()
    if not body:
        raise Invalid("a note needs some text", field="body")
    note = Note(org_id=principal.org_id, customer_id=customer.id, author_id=principal.user_id, body=body)
    db.add(note)
    db.flush()
    record(
        db, principal.org_id, customer.id, EventType.note_added, note_id=note.id, author_id=principal.user_id
    )
    return note


def list_notes(db: Session, principal: Principal, customer_id: int, limit: int = 100) -> list[Note]:
    """A visible customer's notes, newest first."""
    customer = get_customer(db, principal, customer_id)
    return list(
        db.scalars(
            select(Note)
            .where(Note.customer_id == customer.id)
            .order_by(Note.created_at.desc(), Note.id.desc())
            .limit(max(1, min(limit, 500)))
        )
    )


def delete_note(db: Session, principal: Principal, customer_id: int, note_id: int) -> None:
    """Delete a note: its author may, and so may admins; other operators get 403."""
    customer = get_customer(db, principal, customer_id)
    note = db.scalar(select(Note).where(Note.id == note_id, Note.customer_id == customer.id))
    if note is None:
        raise NotFound("note not found")
    if note.author_id != principal.user_id and not principal.can_administer:
        raise Forbidden("only the author or an admin may delete a note")
    db.delete(note)
    db.flush()


# --- lists and timelines --------------------------------------------------------------------------


def list_customers(
    db: Session,
    principal: Principal,
    filters: CustomerFilters | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[Customer], int | None]:
    """One keyset page of visible customers, highest id first: (rows, next_cursor). Filters: name
    substring, full mobile or last 4 digits, all of tag_ids, stage, source, followed by account_id."""
    filters = filters or CustomerFilters()
    limit = max(1, min(limit, MAX_PAGE))
    check_tag_ids(db, principal.org_id, filters.tag_ids)
    if (
        filters.account_id is not None
        and db.scalar(
            select(Account.id).where(Account.id == filters.account_id, Account.org_id == principal.org_id)
        )
        is None
    ):
        raise Invalid(f"account {filters.account_id} does not exist", field="account_id")
    rows = list(db.scalars(repo.list_query(db, principal, filters, cursor, limit)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, rows[-1].id


def count_customers(
    db: Session, principal: Principal, filters: CustomerFilters | None = None, *, at_most: int | None = None
) -> int:
    """The number of visible customers matching ``filters``: exact without ``at_most`` (a full count: call
    it on demand only), else the smaller of it and ``at_most`` (reads at most that many rows)."""
    filters = filters or CustomerFilters()
    check_tag_ids(db, principal.org_id, filters.tag_ids)
    stmt = repo.count_query(principal, filters, db.get_bind().dialect.name, limit=at_most)
    return int(db.scalar(stmt) or 0)


def encode_timeline_cursor(at: datetime, kind: str, row_id: int) -> str:
    """An opaque ?before= value pointing just after one timeline entry."""
    micros = (ensure_utc(at) - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{kind}.{row_id}"


def decode_timeline_cursor(value: str) -> tuple[datetime, str, int]:
    """Parse a ?before= value, or 422 naming ``before``."""
    try:
        micros, kind, row_id = value.split(".")
        if kind not in repo.TIMELINE_RANK:
            raise ValueError(kind)
        return _EPOCH + timedelta(microseconds=int(micros)), kind, int(row_id)
    except ValueError:
        raise Invalid("before is not a timeline cursor from a previous page", field="before") from None


def _timeline_item(kind: str, obj: Any, principal: Principal) -> TimelineItem:
    # Notes and remark events carry free text: for roles that see masked numbers, mobiles inside are masked.
    shown = (lambda text: text) if principal.sees_full_mobile else masked_remark
    if kind == "event":
        properties = {k: shown(v) if isinstance(v, str) else v for k, v in (obj.properties or {}).items()}
        return TimelineItem(
            kind="event",
            id=obj.id,
            at=obj.occurred_at,
            type=obj.type,
            account_id=obj.account_id,
            data={"properties": properties, "source": obj.source},
        )
    if kind == "note":
        return TimelineItem(
            kind="note",
            id=obj.id,
            at=obj.created_at,
            type="note",
            data={"body": shown(obj.body), "author_id": obj.author_id},
        )
    return TimelineItem(
        kind="order",
        id=obj.id,
        at=obj.paid_at,
        type="order",
        account_id=obj.account_id,
        data={
            "platform": obj.platform,
            "external_id": obj.external_id,
            "amount_fen": obj.amount_fen,
            "refunded_fen": obj.refunded_fen,
        },
    )


def timeline(
    db: Session, principal: Principal, customer_id: int, before: str | None = None, limit: int = 50
) -> TimelinePage:
    """A visible customer's events, notes and orders merged by time, newest first, keyset paginated by
    the opaque ``before`` cursor of the previous page."""
    customer = get_customer(db, principal, customer_id)
    limit = max(1, min(limit, MAX_PAGE))
    cursor = decode_timeline_cursor(before) if before else None
    rows = repo.timeline_rows(db, customer.id, cursor, limit)
    items = [_timeline_item(kind, obj, principal) for _at, kind, _id, obj in rows[:limit]]
    next_before = None
    if len(rows) > limit:
        at, kind, row_id, _obj = rows[limit - 1]
        next_before = encode_timeline_cursor(at, kind, row_id)
    return TimelinePage(items=items, next_before=next_before)


# --- consent ------------------------------------------------------------------------------------


def add_consent_as(
    db: Session,
    principal: Principal,
    customer_id: int,
    scope: ConsentScope,
    granted: bool,
    source: ConsentSource,
    *,
    at: datetime | None = None,
    note: str = "",
    origin: str = "api",
) -> ConsentRecord:
    """Record a consent given or withdrawn by a visible customer; the profile's flag follows the latest."""
    customer = get_customer(db, principal, customer_id)
    return add_consent(
        db, customer, scope, granted, source, at=at, note=note, actor_id=principal.user_id, origin=origin
    )


def list_consents(db: Session, principal: Principal, customer_id: int) -> list[ConsentRecord]:
    """A visible customer's consent records, newest first."""
    return list(consents_of(db, get_customer(db, principal, customer_id).id))
