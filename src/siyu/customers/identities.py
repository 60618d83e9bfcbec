"""A profile's identifiers (mobile, WeCom external userid, open ids...): attaching one, which merges the
profile with another holding it (older id survives, audited), reading them, and the merges they caused.
Services flush and never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from siyu.customers import repository as repo
from siyu.customers import resolution
from siyu.customers.access import get_customer, survivor_of
from siyu.customers.merge import merge_customers, refresh_remark
from siyu.customers.models import Customer, CustomerIdentity, IdentityKind, MergeAudit
from siyu.customers.recording import note_remark
from siyu.customers.repository import visible_customers
from siyu.kit.clock import utcnow
from siyu.kit.errors import Conflict, NotFound
from siyu.kit.phone import mask_mobile
from siyu.tenancy.principal import Principal


def normalize_identity(kind: IdentityKind, value: str) -> str:
    """The stored form of an identifier: 11-digit mobiles, other identifiers stripped; empty is 422."""
    return resolution.normalize_identity(kind, value)[1]


def _display(kind: IdentityKind, value: str) -> str:
    return (mask_mobile(value) or "") if kind == IdentityKind.mobile else value


def customer_by_identity(db: Session, principal: Principal, kind: IdentityKind, value: str) -> Customer:
    """The customer holding this identity (a WeCom external userid...), if the principal may see them, or 404."""
    holder = repo.identity_holder(db, principal.org_id, kind, normalize_identity(kind, value))
    if holder is None:
        raise NotFound("customer not found")
    return get_customer(db, principal, holder.customer_id)


def guard_identity(
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
    customer = survivor_of(db, org_id, customer_id)
    holder = repo.identity_holder(db, org_id, kind, value)
    if holder is None:
        attach_identity(db, org_id, customer, kind, value)
        db.flush()
        return customer
    if holder.customer_id == customer.id:
        return customer
    survivor_id, merged_id = sorted((holder.customer_id, customer.id))
    merge_customers(
        db, org_id, survivor_id, merged_id, reason or f"shared {kind} {_display(kind, value)}", actor_id
    )
    return survivor_of(db, org_id, survivor_id)


def attach_identity(db: Session, org_id: int, customer: Customer, kind: IdentityKind, value: str) -> None:
    """Give ``customer`` an identifier nobody holds (normalized already); the caller flushes."""
    db.add(CustomerIdentity(org_id=org_id, customer_id=customer.id, kind=kind, value=value))
    if kind == IdentityKind.mobile and not customer.mobile:
        before, customer.mobile = customer.remark, value
        refresh_remark(customer)
        note_remark(db, customer, before)


def insert_identities(
    db: Session, org_id: int, customer: Customer, pairs: Sequence[tuple[IdentityKind, str]]
) -> None:
    """``attach_identity`` for several identifiers nobody holds, as one INSERT without ORM objects (a later query
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
    guard_identity(db, principal, customer.id, kind, value, "value")
    return add_identity(
        db,
        principal.org_id,
        customer.id,
        kind,
        value,
        actor_id=principal.user_id,
        reason=f"shared {kind} {_display(kind, value)} (added by user {principal.user_id})",
    )


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
