"""Everything the customer hub holds on one person, for a data export (PIPL art. 45: see and copy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers import repository as repo
from siyu.customers.consent import consents_of
from siyu.customers.models import (
    ConsentRecord,
    Customer,
    CustomerIdentity,
    FollowRelation,
    Note,
    Tag,
    TagGroup,
)
from siyu.events.models import Event


@dataclass(frozen=True)
class PersonRecord:
    """The customer hub's rows about one person (full values: exports are for admins)."""

    customer: Customer
    identities: Sequence[CustomerIdentity]
    tags: Sequence[tuple[Tag, str]]
    notes: Sequence[Note]
    follows: Sequence[FollowRelation]
    consents: Sequence[ConsentRecord]
    events: Sequence[Event]


def person_record(db: Session, customer: Customer) -> PersonRecord:
    """Collect the rows of a live profile the caller was allowed to see."""
    groups = dict(
        db.execute(select(TagGroup.id, TagGroup.name).where(TagGroup.org_id == customer.org_id)).all()
    )
    return PersonRecord(
        customer=customer,
        identities=repo.identities_of(db, customer.id),
        tags=[(t, groups.get(t.group_id, "")) for t in repo.tags_of(db, customer.id)],
        notes=db.scalars(
            select(Note).where(Note.customer_id == customer.id).order_by(Note.created_at, Note.id)
        ).all(),
        follows=repo.follows_of(db, customer.id),
        consents=consents_of(db, customer.id),
        events=db.scalars(
            select(Event).where(Event.customer_id == customer.id).order_by(Event.occurred_at, Event.id)
        ).all(),
    )
