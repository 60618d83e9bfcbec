"""Reading one customer: the live profile an id stands for now (a merged-away id resolves to its survivor)
and what a principal may see of it. Functions taking a ``Principal`` answer 404 for what the caller may not
see, exactly as for what does not exist; those taking an ``org_id`` are for trusted callers."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from siyu.customers import resolution
from siyu.customers.models import Customer
from siyu.customers.repository import visible_customers
from siyu.kit.bulk import IN_LIST_SIZE, chunked
from siyu.kit.errors import Invalid, NotFound
from siyu.tenancy.principal import Principal


def survivor_of(db: Session, org_id: int, customer_id: int, *, field: str | None = None) -> Customer:
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
    return survivor_of(db, org_id, customer_id)


def get_customer(db: Session, principal: Principal, customer_id: int) -> Customer:
    """A customer the principal may see, or 404. A merged-away id resolves to its survivor (when visible):
    the returned customer's id then differs from ``customer_id``, which the API reports as resolved_from."""
    survivor = survivor_of(db, principal.org_id, customer_id)
    visible = db.scalar(visible_customers(principal).where(Customer.id == survivor.id))
    if visible is None:
        raise NotFound("customer not found")
    return visible


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
