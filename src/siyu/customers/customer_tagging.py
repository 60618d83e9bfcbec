"""Tags on customers: the one writer (``change_tags``, recording tag_added / tag_removed) and the
principal-facing reads and edits. The tag library itself is ``customers.tagging``. Services flush, never commit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from siyu.customers import repository as repo
from siyu.customers.access import get_customer, survivor_of
from siyu.customers.models import CustomerTag, Tag
from siyu.customers.recording import record
from siyu.customers.tagging import check_tag_ids
from siyu.events.vocabulary import EventType
from siyu.kit.clock import utcnow
from siyu.tenancy.principal import Principal


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
    customer = survivor_of(db, org_id, customer_id)
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
