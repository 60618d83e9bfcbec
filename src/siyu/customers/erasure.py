"""Erasing a person on request (PIPL art. 47): their profile's personal fields, identities, tags, notes,
consent records and merge audits go (follow relations stay: account, dates and channel code only, which
first-touch attribution of their orders needs), and every other domain that holds their text or
platform ids forgets them through a registered hook; the profile row stays, de-identified and hidden, so
that orders and events keep their customer for the books. The event log keeps each event's type, time,
account and book-keeping amounts, and loses every other property and its idempotency key (which may carry
a platform id). A ``customer_erased`` event closes the record; its outbox subscriber erases the analytics
projection's copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from siyu.customers.models import (
    ConsentRecord,
    Customer,
    CustomerIdentity,
    CustomerTag,
    Gender,
    MergeAudit,
    Note,
)
from siyu.customers.recording import record
from siyu.events.bus import subscriptions
from siyu.events.models import Event, OutboxItem
from siyu.events.vocabulary import EventType
from siyu.kit.clock import utcnow
from siyu.kit.errors import Conflict, NotFound

# Other domains holding a person's text or platform ids (comments, inboxes, send records) register a
# function here (from siyu/subscriptions.py): given the organization, the person's profile ids and their
# identifiers (platform ids, mobiles), it forgets them and returns how many rows it changed.
EraseHook = Callable[[Session, int, Sequence[int], Sequence[str]], int]
ERASE_HOOKS: dict[str, EraseHook] = {}

#: Event properties that are book-keeping, not personal: an erased person's events keep only these.
KEPT_PROPERTIES = frozenset(
    {
        "order_id",
        "platform",
        "amount_fen",
        "refunded_fen",
        "campaign_id",
        "account_id",
        "from",
        "to",
        "origin",
    }
)


def register_erase_hook(name: str, hook: EraseHook) -> None:
    """Let another domain forget a person's rows during an erasure (``name`` keys the report)."""
    ERASE_HOOKS[name] = hook


@dataclass
class Erasure:
    """What one erasure did: the profile kept for the books, the merged-away profiles erased with it, and
    rows changed per table or hook."""

    customer_id: int
    merged_ids: list[int]
    counts: dict[str, int] = field(default_factory=dict)


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def identifiers_of(db: Session, customer_ids: Sequence[int]) -> list[str]:
    """Every identifier value and mobile of these profiles (what the hooks search their rows for)."""
    values = set(
        db.scalars(select(CustomerIdentity.value).where(CustomerIdentity.customer_id.in_(customer_ids)))
    )
    values |= {
        m for m in db.scalars(select(Customer.mobile).where(Customer.id.in_(customer_ids))) if m is not None
    }
    return sorted(v for v in values if v)


def erase_customer(
    db: Session, org_id: int, customer_id: int, *, actor_id: int | None = None, origin: str = ""
) -> Erasure:
    """Erase the live profile ``customer_id`` and the profiles merged into it (see the module docstring);
    404 for another organization's or a merged-away id, 409 when already erased."""
    customer = db.scalar(select(Customer).where(Customer.id == customer_id, Customer.org_id == org_id))
    if customer is None or customer.merged_into_id is not None:
        raise NotFound("customer not found")
    if customer.erased_at is not None:
        raise Conflict("this customer was already erased", field="customer_id")
    merged = list(db.scalars(select(Customer.id).where(Customer.merged_into_id == customer.id)))
    ids = [customer.id, *merged]
    needles = identifiers_of(db, ids)
    subscriptions()  # hooks are registered where subscribers are: make sure that module is loaded
    erasure = Erasure(customer_id=customer.id, merged_ids=merged)
    counts = erasure.counts
    for name, hook in ERASE_HOOKS.items():
        counts[name] = hook(db, org_id, ids, needles)
    for name, model in (
        ("identities", CustomerIdentity),
        ("tags", CustomerTag),
        ("notes", Note),
        ("consents", ConsentRecord),
    ):
        counts[name] = _count(db.execute(delete(model).where(model.customer_id.in_(ids))))
    counts["merge_audits"] = _count(
        db.execute(
            delete(MergeAudit).where(or_(MergeAudit.survivor_id.in_(ids), MergeAudit.merged_id.in_(ids)))
        )
    )
    # Work about them, queued, done or failed (a remark to write back), carries their data in its payload.
    counts["outbox"] = _count(db.execute(delete(OutboxItem).where(OutboxItem.customer_id.in_(ids))))
    counts["events"] = _scrub_events(db, ids)
    now = utcnow()
    for profile in db.scalars(select(Customer).where(Customer.id.in_(ids))):
        profile.name = ""
        profile.mobile = None
        profile.gender = Gender.unknown
        profile.region = None
        profile.source_detail = None
        profile.intent = None
        profile.remark = ""
        profile.remark_is_manual = False
        profile.consent_marketing = False
        profile.consent_analytics = False
        profile.erased_at = now
        profile.updated_at = now
    db.flush()
    record(
        db,
        org_id,
        customer.id,
        EventType.customer_erased,
        origin=origin,
        actor_id=actor_id,
        merged_ids=merged,
    )
    return erasure


def _scrub_events(db: Session, ids: Sequence[int]) -> int:
    """Keep each event's type, time, account and amounts; drop every other property and the key."""
    changed = 0
    for ev in db.scalars(select(Event).where(Event.customer_id.in_(ids))):
        kept = {k: v for k, v in (ev.properties or {}).items() if k in KEPT_PROPERTIES}
        ev.properties = kept
        ev.idempotency_key = f"erased:{ev.id}"
        changed += 1
    db.flush()
    return changed
