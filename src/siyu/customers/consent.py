"""Consent records: each consent given or withdrawn, when, for what and how. The profile's flags
(``consent_marketing``, ``consent_analytics``) are derived from them: each is the ``granted`` of the latest
record of its scope (by ``at``, then id), so the flag the mass messages read and the record always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers.access import get_customer
from siyu.customers.models import ConsentRecord, ConsentScope, ConsentSource, Customer
from siyu.customers.recording import record
from siyu.events.vocabulary import EventType
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.errors import Invalid
from siyu.tenancy.principal import Principal

FLAG_OF_SCOPE = {ConsentScope.marketing: "consent_marketing", ConsentScope.analytics: "consent_analytics"}


def latest(db: Session, customer_id: int, scope: ConsentScope) -> ConsentRecord | None:
    """The record that decides the scope's flag now, or None when the customer has none."""
    return db.scalar(
        select(ConsentRecord)
        .where(ConsentRecord.customer_id == customer_id, ConsentRecord.scope == scope)
        .order_by(ConsentRecord.at.desc(), ConsentRecord.id.desc())
        .limit(1)
    )


def add_consent(
    db: Session,
    customer: Customer,
    scope: ConsentScope,
    granted: bool,
    source: ConsentSource,
    *,
    at: datetime | None = None,
    note: str = "",
    actor_id: int | None = None,
    origin: str = "",
) -> ConsentRecord:
    """Store one consent record and re-derive the scope's flag from the latest record (records
    consent_recorded, and profile_changed when the flag moves). A record dated in the future is 422."""
    now = utcnow()
    at = ensure_utc(at) if at is not None else now
    if at > now:
        raise Invalid("a consent cannot be dated in the future", field="at")
    rec = ConsentRecord(
        org_id=customer.org_id,
        customer_id=customer.id,
        scope=scope,
        granted=granted,
        source=source,
        at=at,
        note=note.strip(),
        recorded_by=actor_id,
        recorded_at=now,
    )
    db.add(rec)
    db.flush()
    record(
        db,
        customer.org_id,
        customer.id,
        EventType.consent_recorded,
        at=at,
        origin=origin,
        scope=scope.value,
        granted=granted,
        consent_source=source.value,
    )
    _derive_flag(db, customer, scope, origin)
    return rec


def _derive_flag(db: Session, customer: Customer, scope: ConsentScope, origin: str) -> None:
    decisive = latest(db, customer.id, scope)
    if decisive is None:
        return
    field = FLAG_OF_SCOPE[scope]
    if getattr(customer, field) != decisive.granted:
        setattr(customer, field, decisive.granted)
        customer.updated_at = utcnow()
        db.flush()
        record(db, customer.org_id, customer.id, EventType.profile_changed, origin=origin, fields=[field])


def consents_of(db: Session, customer_id: int) -> Sequence[ConsentRecord]:
    """A customer's consent records, newest first."""
    return db.scalars(
        select(ConsentRecord)
        .where(ConsentRecord.customer_id == customer_id)
        .order_by(ConsentRecord.at.desc(), ConsentRecord.id.desc())
    ).all()


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
