"""Carrier news about follow relations applied set-wise, with the ordering rules of ``customers.follows``.

``customers.bulk`` starts and ends follows from a snapshot (a reconciliation sync: the carrier's list is
the truth now). News that can arrive late or out of order (WeCom callbacks drained in batches) must keep
the rules of ``customers.follows`` instead, for a whole batch in a handful of statements:

* ``start_follows``: an add whose time is not after the relation's recorded end is stale and ignored;
  the others go to ``bulk.apply_follows``;
* ``end_follows_at``: each end at its own time; an end with no relation yet leaves a tombstone (so a late
  add older than it stays ended), an end older than the relation's start is ignored, an end of an ended
  relation only moves its end later (no second event). follow_ended and the friend counts as
  ``follows.end_relation`` records them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.customers import bulk
from siyu.customers.bulk import FollowRecord
from siyu.customers.models import FollowRelation, FollowStatus
from siyu.events.bus import DomainEvent, emit_many
from siyu.events.vocabulary import EventType
from siyu.kit.bulk import IN_LIST_SIZE, chunked, driver_datetime, insert_rows, one_of
from siyu.kit.clock import ensure_utc

_FOLLOWS = FollowRelation.__table__
_ACTIVE = FollowStatus.active.value
_ENDED = {"customer": FollowStatus.deleted_by_customer.value, "staff": FollowStatus.deleted_by_staff.value}
_SHIFT = (
    update(Account.__table__)
    .where(Account.id == bindparam("aid"))
    .values(friend_count=Account.friend_count + bindparam("d"))
)


@dataclass(slots=True)
class _Relation:
    id: int | None
    status: str
    since: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class FollowEnd:
    """The account and the customer stopped being contacts at ``at``, ended by "customer" or "staff"."""

    customer_id: int
    account_id: int
    by: str
    at: datetime


def _relations(db: Session, pairs: Collection[tuple[int, int]]) -> dict[tuple[int, int], _Relation]:
    found: dict[tuple[int, int], _Relation] = {}
    wanted = set(pairs)
    cols = [_FOLLOWS.c[n] for n in ("id", "customer_id", "account_id", "status", "since", "ended_at")]
    for part in chunked(sorted({c for c, _ in wanted}), IN_LIST_SIZE):
        for rid, cid, aid, status, since, ended in db.execute(
            select(*cols).where(one_of(db, _FOLLOWS.c.customer_id, part))
        ):
            if (int(cid), int(aid)) in wanted:
                found[(int(cid), int(aid))] = _Relation(
                    int(rid), str(status), ensure_utc(since), ensure_utc(ended) if ended is not None else None
                )
    return found


def start_follows(db: Session, org_id: int, follows: Sequence[FollowRecord], *, origin: str) -> int:
    """Start the follows in ``follows`` (each record's ``since`` set) unless a later end is recorded for
    the pair (a stale add, ignored) or the relation is active; records follow_started. Returns how many
    started."""
    relations = _relations(db, [(f.customer_id, f.account_id) for f in follows])
    fresh: list[FollowRecord] = []
    for f in follows:
        rel = relations.get((f.customer_id, f.account_id))
        since = ensure_utc(f.since) if f.since is not None else None
        ended_at = rel.ended_at if rel is not None and rel.status != _ACTIVE else None
        if ended_at is not None and (since is None or since <= ended_at):
            continue
        fresh.append(f)
    known = {pair: rel.status for pair, rel in relations.items()}
    created, restarted = bulk.apply_follows(db, org_id, fresh, known, origin=origin)
    return created + restarted


def end_follows_at(db: Session, org_id: int, ends: Sequence[FollowEnd], *, origin: str) -> list[bool]:
    """Apply each end in order (see the module doc); returns, per end, whether it was applied (False: a
    stale end, ignored; an end of an already ended relation counts, as ``follows.end_relation`` returns
    the relation for it)."""
    relations = _relations(db, [(e.customer_id, e.account_id) for e in ends])
    stamp = driver_datetime(db)
    tombstones: dict[tuple[int, int], dict[str, Any]] = {}
    changed: dict[int, _Relation] = {}
    friends: Counter[int] = Counter()
    events: list[DomainEvent] = []
    applied: list[bool] = []
    for e in ends:
        pair, at, ended = (e.customer_id, e.account_id), ensure_utc(e.at), _ENDED[e.by]
        rel = relations.get(pair)
        if rel is None:
            relations[pair] = _Relation(None, ended, at, at)
            tombstones[pair] = {
                "org_id": org_id,
                "customer_id": e.customer_id,
                "account_id": e.account_id,
                "since": stamp(at),
                "status": ended,
                "ended_at": stamp(at),
                "source": None,
                "state": None,
            }
        elif rel.since > at:
            applied.append(False)
            continue
        elif rel.status == _ACTIVE:
            rel.status, rel.ended_at = ended, at
            friends[e.account_id] -= 1
        else:
            if rel.ended_at is None or rel.ended_at < at:
                rel.status, rel.ended_at = ended, at
                if rel.id is not None:
                    changed[rel.id] = rel
            applied.append(True)
            continue  # already ended: no second event
        if rel is not None and rel.id is not None:
            changed[rel.id] = rel
        applied.append(True)
        events.append(
            DomainEvent(
                org_id=org_id,
                customer_id=e.customer_id,
                type=EventType.follow_ended,
                occurred_at=at,
                properties={"by": e.by, "origin": origin, "account_id": e.account_id},
                account_id=e.account_id,
            )
        )
    insert_rows(db, _FOLLOWS, list(tombstones.values()), ["org_id", "customer_id", "account_id"])
    if changed:
        db.execute(
            update(_FOLLOWS)
            .where(_FOLLOWS.c.id == bindparam("rid"))
            .values(status=bindparam("st"), ended_at=bindparam("en")),
            [{"rid": rid, "st": r.status, "en": r.ended_at} for rid, r in sorted(changed.items())],
        )
    shifts = [{"aid": aid, "d": n} for aid, n in sorted(friends.items()) if n]
    if shifts:
        db.execute(_SHIFT, shifts)
    db.expire_all()  # the statements bypassed the session: loaded relations and accounts must not go stale
    emit_many(db, events)
    return applied
