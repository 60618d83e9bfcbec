"""Follow relations: which account has the customer as a contact, since when, and how it ended.

The only writer of follow relations and of the accounts' friend counts they move. Every start and end
appends follow_started / follow_ended in the same transaction.

Ordering. Carrier news can arrive late, twice or out of order (WeCom callbacks). Every relation keeps
``since`` and ``ended_at``, and news older than what a relation already records is ignored:
  * an end for a relation that does not exist yet creates it already ended at that time (a tombstone),
    so a late add older than that end stays ended;
  * an add whose time is not after the recorded end does not re-activate the relation;
  * an end older than the relation's ``since`` (the pair became contacts again later) is ignored.
Ties go to the end.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.customers import repository as repo
from siyu.customers.access import get_customer, survivor_of
from siyu.customers.models import Customer, FollowRelation, FollowStatus
from siyu.customers.recording import record
from siyu.events.vocabulary import EventType
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.errors import Invalid, NotFound
from siyu.tenancy.principal import Principal

EndedBy = Literal["customer", "staff", "transfer"]
_ENDED = {
    "customer": FollowStatus.deleted_by_customer,
    "staff": FollowStatus.deleted_by_staff,
    # A hand-over ends the old member's follow; the relation keeps "by staff" (the customer did nothing),
    # the event says transfer.
    "transfer": FollowStatus.deleted_by_staff,
}

_SHIFT_FRIEND_COUNT = (
    update(Account.__table__)
    .where(Account.id == bindparam("account_id"))
    .values(friend_count=Account.friend_count + bindparam("delta"))
)


def _shift_friend_count(db: Session, account_id: int, delta: int) -> None:
    db.execute(_SHIFT_FRIEND_COUNT, {"account_id": account_id, "delta": delta})
    # The bulk update bypassed the session; a loaded Account must not show the old count.
    account = db.identity_map.get(db.identity_key(Account, account_id))
    if account is not None:
        db.expire(account, ["friend_count"])


# Built once (see repository._IDENTITY_HOLDER): follows are looked up on every contact callback.
_RELATION = select(FollowRelation).where(
    FollowRelation.customer_id == bindparam("customer_id"),
    FollowRelation.account_id == bindparam("account_id"),
)


def relation_of(db: Session, customer_id: int, account_id: int) -> FollowRelation | None:
    """The follow relation between a customer and an account (active or ended), if any."""
    return db.scalar(_RELATION, {"customer_id": customer_id, "account_id": account_id})


def check_account(db: Session, org_id: int, account_id: int) -> None:
    """422 unless ``account_id`` is an account of the organization."""
    account = db.get(Account, account_id)
    if account is None or account.org_id != org_id:
        raise Invalid(f"account {account_id} does not exist", field="account_id")


def _started(db: Session, rel: FollowRelation, origin: str, backfill: bool) -> None:
    _shift_friend_count(db, rel.account_id, +1)
    record(
        db,
        rel.org_id,
        rel.customer_id,
        EventType.follow_started,
        at=rel.since,
        origin=origin,
        account_id=rel.account_id,
        source=rel.source,
        backfill=backfill,
        state=rel.state,
    )


def follow_relation(
    db: Session,
    org_id: int,
    customer: Customer,
    account_id: int,
    rel: FollowRelation | None,
    *,
    since: datetime | None = None,
    source: str | None = None,
    state: str | None = None,
    origin: str = "",
    backfill: bool = False,
) -> FollowRelation | None:
    """Make the account follow the live ``customer`` (the caller holds the pair's relation row ``rel``,
    None when there is none): idempotent for an active relation; an ended one is re-activated from
    ``since`` unless it ended at or after ``since`` (a stale add: None)."""
    since = ensure_utc(since) if since is not None else utcnow()
    if rel is None:
        rel = FollowRelation(
            org_id=org_id,
            customer_id=customer.id,
            account_id=account_id,
            since=since,
            source=source,
            state=state,
            status=FollowStatus.active,
        )
        db.add(rel)
        db.flush()
        _started(db, rel, origin, backfill)
        return rel
    if rel.status != FollowStatus.active:
        if rel.ended_at is not None and since <= ensure_utc(rel.ended_at):
            return None
        rel.status, rel.ended_at, rel.since = FollowStatus.active, None, since
        rel.source, rel.state = source or rel.source, state or rel.state
        db.flush()
        _started(db, rel, origin, backfill)
        return rel
    rel.source, rel.state = rel.source or source, rel.state or state
    db.flush()
    return rel


def end_relation(
    db: Session,
    org_id: int,
    customer: Customer,
    account_id: int,
    *,
    by: EndedBy,
    at: datetime | None = None,
    origin: str = "",
) -> FollowRelation | None:
    """Record that the follow between the live ``customer`` and the account ended at ``at``, by whom.
    An end older than the relation's start is ignored (None); an end with no relation yet leaves a
    tombstone. Idempotent."""
    if by not in _ENDED:
        raise Invalid("by must be 'customer', 'staff' or 'transfer'", field="by")
    at = ensure_utc(at) if at is not None else utcnow()
    ended = _ENDED[by]
    rel = relation_of(db, customer.id, account_id)
    if rel is None:
        rel = FollowRelation(
            org_id=org_id, customer_id=customer.id, account_id=account_id, since=at, status=ended, ended_at=at
        )
        db.add(rel)
        db.flush()
    elif ensure_utc(rel.since) > at:
        return None
    elif rel.status == FollowStatus.active:
        rel.status, rel.ended_at = ended, at
        db.flush()
        _shift_friend_count(db, account_id, -1)
    else:
        if rel.ended_at is None or ensure_utc(rel.ended_at) < at:
            rel.ended_at, rel.status = at, ended
            db.flush()
        return rel  # already ended: no second event
    record(
        db,
        org_id,
        customer.id,
        EventType.follow_ended,
        at=at,
        origin=origin,
        account_id=account_id,
        by=by,
    )
    return rel


def unfollow_customer(
    db: Session,
    org_id: int,
    customer: Customer,
    account_id: int,
    *,
    by: EndedBy,
    at: datetime | None = None,
    origin: str = "",
) -> FollowRelation:
    """End an existing follow relation (idempotent); 404 if the two never were contacts."""
    if relation_of(db, customer.id, account_id) is None:
        raise NotFound("this account does not follow the customer")
    rel = end_relation(db, org_id, customer, account_id, by=by, at=at, origin=origin)
    return rel if rel is not None else relation_of(db, customer.id, account_id)  # type: ignore[return-value]


def recount_friends(db: Session, org_id: int) -> None:
    """THE recount: set every account's friend_count of the organization from its active follow
    relations, in one statement (after a reconciliation, an import or a repair)."""
    counted = (
        select(func.count())
        .select_from(FollowRelation)
        .where(FollowRelation.account_id == Account.id, FollowRelation.status == FollowStatus.active)
        .correlate(Account)
        .scalar_subquery()
    )
    db.execute(
        update(Account.__table__).where(Account.org_id == org_id).values(friend_count=counted),
        execution_options={"synchronize_session": False},
    )
    db.expire_all()


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
    customer = survivor_of(db, org_id, customer_id)
    check_account(db, org_id, account_id)
    rel = relation_of(db, customer.id, account_id)
    return follow_relation(
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
    by: EndedBy,
    at: datetime | None = None,
    origin: str = "",
) -> FollowRelation:
    """End a follow relation, recording who ended it (idempotent); 404 if the two never were contacts."""
    customer = survivor_of(db, org_id, customer_id)
    return unfollow_customer(db, org_id, customer, account_id, by=by, at=at, origin=origin)


def end_follow(
    db: Session,
    org_id: int,
    customer_id: int,
    account_id: int,
    *,
    by: EndedBy,
    at: datetime,
    origin: str = "",
) -> FollowRelation | None:
    """Carrier news that a follow ended at ``at`` (maybe before siyu saw it start): see
    ``customers.follows.end_relation``; None when the end is older than the relation's start."""
    customer = survivor_of(db, org_id, customer_id)
    check_account(db, org_id, account_id)
    return end_relation(db, org_id, customer, account_id, by=by, at=at, origin=origin)


def list_follows(db: Session, principal: Principal, customer_id: int) -> list[FollowRelation]:
    """A visible customer's follow relations (active and ended), earliest first."""
    return list(repo.follows_of(db, get_customer(db, principal, customer_id).id))
