"""Notes operators keep on a customer: add, list, delete (author or admin). Services flush, never commit."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers.access import get_customer
from siyu.customers.models import Note
from siyu.customers.recording import record
from siyu.events.vocabulary import EventType
from siyu.kit.errors import Forbidden, Invalid, NotFound
from siyu.tenancy.principal import Principal


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
