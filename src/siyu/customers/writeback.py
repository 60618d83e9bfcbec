"""Write-back: make the carrier show the tags and remark siyu holds for a customer.

An outbox subscriber (registered in ``siyu/subscriptions.py``) on tag_added, tag_removed, remark_changed and
profile_changed (when the mobile changed: it is written with the remark). ``wants`` keeps an event only
when the change did not come from the carrier itself (origin == the carrier's name: writing it back would
echo it), the organization's write-back switch is on (the carrier's driver says so) and the customer has
an identity on the carrier.

``converge`` is the handler. It is idempotent and order-independent because it writes siyu's state at
drain time, not the event's delta. For a tag event, the tags now on the customer that were made in siyu
and have no carrier id yet (an intent tag put on by a lead conversion, a code's auto-tag made in the
console) are first put in the carrier's tag library, group by group (the group's carrier id when it has
one, else its name), and the ids the library answers are stored on the tags and the group through
``customers.tagging``; the next run finds the ids and creates nothing. Then every tag now on the customer
is added (``mark_tag`` ignores tags already there) and the event's tag is removed if it is no longer on the
customer. Only tags WITHOUT a carrier id are put in the library: a tag mirrored from the carrier and since
deleted there keeps its old id until the next sync removes it, so it is never created again; marking it
is refused by the carrier (an unknown tag), which fails the row at once and shows on the settings page.
For a remark event, the current remark and mobile are set. It writes once per active follow by a member
of the carrier, since the carrier keeps tags and remarks per member. The driver supplies the writer (its
client, paced, with rate limits turned into ``RetryLater``); any other error of the writer is a failure
the outbox records in words and retries. A failure after the library answered rolls the stored ids back
with the rest of the transaction; the next attempt finds the names in the library and links them then.

Business rules live here; the carrier's driver only supplies ``CarrierLink``, so a second carrier reuses
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    CustomerTag,
    FollowRelation,
    FollowStatus,
    IdentityKind,
    Tag,
    TagGroup,
)
from siyu.customers.tagging import link_carrier_tags
from siyu.events.bus import DomainEvent
from siyu.events.models import OutboxItem
from siyu.events.vocabulary import EventType
from siyu.integrations.channel import CorpTagWriter, RemarkSetter, TagMarker

#: The events write-back reacts to (profile_changed only when the mobile changed).
TYPES = (EventType.tag_added, EventType.tag_removed, EventType.remark_changed, EventType.profile_changed)
_TAG_TYPES = frozenset({EventType.tag_added, EventType.tag_removed})


class ContactWriter(CorpTagWriter, TagMarker, RemarkSetter, Protocol):
    """What write-back needs of a carrier adapter: put siyu's tags in its tag library, mark tags and set the
    remark of a member's customer."""


@dataclass(frozen=True)
class CarrierLink:
    """One carrier's part in write-back, supplied by its driver."""

    #: The outbox subscriber's name (the settings page reads its health by it).
    handler: str
    #: Changes recorded with this origin came from the carrier: never written back.
    origin: str
    #: The customer's id on the carrier, and the kind of account (member) that follows customers there.
    identity: IdentityKind
    account_kind: AccountKind
    #: Whether the organization writes back at all (switch on, credentials present). Runs once per event
    #: in the writer's transaction, so it must be cheap (cache per session).
    enabled: Callable[[Session, int], bool]
    #: The adapter to write with, or None when the organization can no longer write (switch turned off
    #: after the event was queued, credentials removed).
    writer: Callable[[Session, int], ContactWriter | None]


# Built once: ``wants`` runs for every tag and remark event of every writer, imports included.
_HAS_IDENTITY = (
    select(CustomerIdentity.id)
    .where(
        CustomerIdentity.customer_id == bindparam("customer_id"), CustomerIdentity.kind == bindparam("kind")
    )
    .limit(1)
)


def wants(link: CarrierLink, db: Session, ev: DomainEvent) -> bool:
    """Whether the event asks for a write-back through ``link`` (cheap checks first)."""
    if ev.origin == link.origin:
        return False
    if ev.type == EventType.profile_changed and "mobile" not in (ev.properties.get("fields") or ()):
        return False
    if not link.enabled(db, ev.org_id):
        return False
    params = {"customer_id": ev.customer_id, "kind": link.identity}
    return db.scalar(_HAS_IDENTITY, params) is not None


def _live(db: Session, org_id: int, customer_id: int) -> Customer | None:
    """The customer the event was about, following merges; None when gone."""
    customer = db.get(Customer, customer_id)
    hops = 0
    while customer is not None and customer.merged_into_id is not None and hops < 10:
        customer = db.get(Customer, customer.merged_into_id)
        hops += 1
    if customer is None or customer.org_id != org_id or customer.merged_into_id is not None:
        return None
    return customer


def _targets(db: Session, link: CarrierLink, customer_id: int) -> list[tuple[str, str]]:
    """(member id, customer's carrier id) of every active follow by a member of the carrier.

    A profile merged from two carrier contacts holds two carrier ids, and siyu does not record which one
    each follow is of: the oldest identity is used (the carrier answers "not a contact" for a wrong pair,
    which is then a failure shown on the settings page)."""
    carrier_id = db.scalar(
        select(CustomerIdentity.value)
        .where(CustomerIdentity.customer_id == customer_id, CustomerIdentity.kind == link.identity)
        .order_by(CustomerIdentity.id)
        .limit(1)
    )
    if carrier_id is None:
        return []
    members = db.scalars(
        select(Account.external_id)
        .join(FollowRelation, FollowRelation.account_id == Account.id)
        .where(
            FollowRelation.customer_id == customer_id,
            FollowRelation.status == FollowStatus.active,
            Account.kind == link.account_kind,
        )
        .order_by(Account.external_id)
        .distinct()
    )
    return [(member, carrier_id) for member in members]


def _publish(db: Session, writer: CorpTagWriter, org_id: int, customer_id: int) -> None:
    """Put the customer's tags that have no carrier id in the carrier's tag library, and keep the ids."""
    rows = db.execute(
        select(TagGroup.id, TagGroup.name, TagGroup.external_id, Tag.name)
        .join(Tag, Tag.group_id == TagGroup.id)
        .join(CustomerTag, CustomerTag.tag_id == Tag.id)
        .where(CustomerTag.customer_id == customer_id, Tag.external_id.is_(None))
        .order_by(TagGroup.id, Tag.sort_order, Tag.id)
    ).all()
    by_group: dict[int, tuple[str, str, list[str]]] = {}
    for group_id, group_name, group_external_id, tag_name in rows:
        by_group.setdefault(group_id, (group_name, group_external_id or "", []))[2].append(tag_name)
    for group_id, (group_name, group_external_id, names) in by_group.items():
        if group_external_id:
            library = writer.add_corp_tag(names, group_id=group_external_id)
        else:
            library = writer.add_corp_tag(names, group_name=group_name)
        link_carrier_tags(db, org_id, group_id, library)


def _carrier_tags(db: Session, customer_id: int) -> list[str]:
    """The carrier ids of the tags on the customer now (tags made only in siyu have none)."""
    return list(
        db.scalars(
            select(Tag.external_id)
            .join(CustomerTag, CustomerTag.tag_id == Tag.id)
            .where(CustomerTag.customer_id == customer_id, Tag.external_id.is_not(None))
            .order_by(Tag.external_id)
        )
    )


def converge(link: CarrierLink, db: Session, item: OutboxItem) -> None:
    """Handle one outbox row: write the customer's current tags or remark to every member's view of them."""
    if item.customer_id is None:
        return
    customer = _live(db, item.org_id, item.customer_id)
    if customer is None:
        return
    targets = _targets(db, link, customer.id)
    if not targets:
        return
    writer = link.writer(db, item.org_id)
    if writer is None:
        return
    if item.event_type in _TAG_TYPES:
        _publish(db, writer, item.org_id, customer.id)
        current = _carrier_tags(db, customer.id)
        properties = item.payload.get("properties") or {}
        event_tag = str(properties.get("external_id") or "")
        if not event_tag and properties.get("tag_id"):
            # Made in siyu: it may have reached the carrier's library since the event was recorded.
            tag = db.get(Tag, int(properties["tag_id"]))
            if tag is not None and tag.org_id == item.org_id and tag.external_id:
                event_tag = tag.external_id
        remove = [event_tag] if event_tag and event_tag not in current else []
        if not current and not remove:
            return
        for member, carrier_id in targets:
            writer.mark_tag(member, carrier_id, add=current, remove=remove)
        return
    # remark_changed, or the mobile changed: the remark and the mobile go together. Without a mobile in
    # siyu the carrier's mobiles are left alone (siyu may simply not know it).
    mobiles = [customer.mobile] if customer.mobile else None
    for member, carrier_id in targets:
        writer.set_remark(member, carrier_id, remark=customer.remark, remark_mobiles=mobiles)
