"""Customer profiles: creating one (by hand, by API, or found-or-created by an identifier from an importer
or a carrier callback), updating it, and its remark. A mobile given becomes an identifier and may merge
profiles (``customers.identities``). Services flush and never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.accounts.service import visible_accounts
from siyu.customers import consent, stages
from siyu.customers import repository as repo
from siyu.customers.access import get_customer, survivor_of
from siyu.customers.follows import follow
from siyu.customers.identities import (
    add_identity,
    attach_identity,
    guard_identity,
    insert_identities,
    normalize_identity,
)
from siyu.customers.merge import refresh_remark
from siyu.customers.models import ConsentScope, ConsentSource, Customer, CustomerIdentity, IdentityKind, Stage
from siyu.customers.recording import note_remark, record
from siyu.customers.remarks import mobiles_in, restore_masked
from siyu.customers.schemas import CustomerIn, CustomerPatch
from siyu.events.vocabulary import EventType
from siyu.kit.clock import utcnow
from siyu.kit.errors import Invalid
from siyu.kit.phone import mask_mobile
from siyu.tenancy.principal import Principal

# Non-nullable profile fields: an explicit null in a patch is an error, not "clear it".
_REQUIRED_FIELDS = ("name", "gender", "stage", "remark", "consent_marketing", "consent_analytics")


def as_customer_in(data: CustomerIn | Mapping[str, Any]) -> CustomerIn:
    """A profile's fields as given (a model, or a mapping validated into one; 422 naming the field)."""
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
    data = as_customer_in(data)
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
    data = as_customer_in(data)
    if account_id is not None:
        account_ok = db.scalar(
            visible_accounts(principal).where(Account.id == account_id).with_only_columns(Account.id)
        )
        if account_ok is None:
            raise Invalid(f"account {account_id} does not exist", field="account_id")
    elif not principal.sees_whole_org:
        raise Invalid("operators must name one of their accounts as account_id", field="account_id")
    if data.mobile:
        guard_identity(db, principal, None, IdentityKind.mobile, data.mobile, "mobile")
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
        guard_identity(db, principal, customer.id, IdentityKind.mobile, patch.mobile, "mobile")
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
    customer = survivor_of(db, org_id, customer_id)
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
    customer = survivor_of(db, org_id, customer_id)
    before = customer.remark
    customer.remark_is_manual = False
    refresh_remark(customer)
    db.flush()
    note_remark(db, customer, before, origin=origin)
    return customer


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
    data = as_customer_in(defaults or {})
    holder = repo.identity_holder(db, org_id, kind, value)
    if holder is None and data.mobile:
        # The same person may already be known by the mobile in the defaults: attach to them.
        holder = repo.identity_holder(db, org_id, IdentityKind.mobile, data.mobile)
        if holder is not None:
            db.add(CustomerIdentity(org_id=org_id, customer_id=holder.customer_id, kind=kind, value=value))
            db.flush()
    if holder is not None:
        customer = survivor_of(db, org_id, holder.customer_id)
        _fill_from(db, customer, data, origin)
        db.flush()
        return customer, False
    customer = create_customer(db, org_id, data, actor_id=actor_id, origin=origin, at=at)
    if data.mobile:
        # Creating with a mobile may have merged profiles or attached (kind, value) already: check again.
        return add_identity(db, org_id, customer.id, kind, value, actor_id=actor_id), True
    # Nobody held (kind, value) and the new profile has no identifier yet: attach without looking again.
    attach_identity(db, org_id, customer, kind, value)
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
    data = as_customer_in(defaults or {})
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
            customer = survivor_of(db, org_id, held[first])
            _fill_from(db, customer, data, origin)
        if all(held.get(p, customer.id) == customer.id for p in extra):
            # Nothing to merge: every identifier is new or already this profile's. One insert for all.
            insert_identities(db, org_id, customer, [p for p in pairs if p not in held])
            db.flush()
            return customer, created
        if created:
            attach_identity(db, org_id, customer, *first)
    new_id = customer.id if created else None
    for kind, value in extra:
        if held is not None and (kind, value) not in held:
            # Nobody held it at the lookup, and attaching or merging moves identifiers, never adds them.
            attach_identity(db, org_id, customer, kind, value)
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
