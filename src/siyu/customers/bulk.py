"""The bulk writer of customer state: a batch of plain records applied set-wise, with their events.

Callers (the CSV and order imports, the WeCom reconciliation sync) map what they read into these
record types and hand them here; they never write customer tables themselves. Each step costs a
handful of statements per batch whatever its size (``kit.bulk`` inserts, one lookup per 2,000 keys),
and every change is recorded through ``events.bus.emit_many`` in the same transaction, so the stage
rules run set-wise on the batch:

* ``apply_profiles``: find (``resolution.group_people``), create, fill, merge profiles; put tags on;
  customer_added (dated by ``ProfileRecord.added_at``), profile_changed, remark_changed, tag_added;
* ``apply_follows`` / ``end_follows``: follow relations and the friend counts they move;
  follow_started (dated by when the follow began: WeCom's createtime) / follow_ended;
* ``replace_tags``: make a set of customers carry exactly the wanted tags of a scope (a carrier's
  mirrored tags); tag_added / tag_removed;
* ``record_added``: customer_added for profiles created earlier in the transaction, each dated by its
  earliest follow (a sync learns a contact's follows over several chunks).

``backfill=True`` marks history written late (a first sync): dated when it happened, not today's news.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.customers.models import Customer, CustomerTag, FollowRelation, FollowStatus, Gender, Stage, Tag
from siyu.customers.remarks import compose_remark
from siyu.customers.resolution import IDENTITIES, IdentityRef, Person, claim_profiles, group_people
from siyu.events.bus import DomainEvent, emit_many
from siyu.events.vocabulary import EventType
from siyu.kit.bulk import (
    IN_LIST_SIZE,
    chunked,
    driver_datetime,
    executemany_raw,
    insert_rows,
    insert_rows_returning,
    one_of,
)
from siyu.kit.clock import ensure_utc, utcnow

CUSTOMERS: Table = Customer.__table__
FOLLOWS: Table = FollowRelation.__table__
CUSTOMER_TAGS: Table = CustomerTag.__table__
ACCOUNTS: Table = Account.__table__
UPDATABLE = ("name", "mobile", "gender", "region", "stage", "source", "source_detail", "intent")
_STATE_COLUMNS = (*UPDATABLE, "remark", "remark_is_manual")
_REMARK_PARTS = ("name", "source", "intent", "mobile", "remark_is_manual")
_BLANK: dict[str, Any] = {
    "name": "",
    "mobile": None,
    "gender": Gender.unknown,
    "region": None,
    "stage": Stage.new,
    "source": None,
    "source_detail": None,
    "intent": None,
    "remark": "",
    "remark_is_manual": False,
}
_ENDED = {"customer": FollowStatus.deleted_by_customer.value, "staff": FollowStatus.deleted_by_staff.value}


@dataclass(slots=True)
class ProfileRecord:
    """A person as a carrier or a file describes them.

    ``fields`` overwrite stored values, ``defaults`` only fill blank ones (an unknown gender is blank),
    ``remark`` is a remark typed by hand, ``tags`` are tag ids to put on (never removed here),
    ``created_with`` are fields only a new profile takes, ``added_at`` dates a new profile (default:
    now), ``row`` names the record in a merge's audit."""

    identities: list[IdentityRef]
    fields: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    remark: str | None = None
    tags: list[int] = field(default_factory=list)
    created_with: dict[str, Any] = field(default_factory=dict)
    added_at: datetime | None = None
    row: int = 0


@dataclass(slots=True)
class FollowRecord:
    """An account has the customer as a contact since ``since`` (None: now)."""

    customer_id: int
    account_id: int
    since: datetime | None = None
    source: str | None = None
    state: str | None = None


@dataclass
class ProfileOutcome:
    """What ``apply_profiles`` did: the customer of each record, in order, and counts."""

    customer_ids: list[int]
    created: list[int] = field(default_factory=list)
    updated: int = 0
    unchanged: int = 0
    merges: dict[int, int] = field(default_factory=dict)  # merged-away customer -> survivor
    new_identities: list[IdentityRef] = field(default_factory=list)


def _blank(key: str, value: Any) -> bool:
    return not value or (key == "gender" and value == Gender.unknown)


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """Profile state with enums as plain strings, as the driver wants them."""
    return {
        **{k: state[k] for k in _STATE_COLUMNS},
        "gender": str(state["gender"]),
        "stage": str(state["stage"]),
    }


def _read_state(db: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    state: dict[int, dict[str, Any]] = {}
    cols = [CUSTOMERS.c.id, *(CUSTOMERS.c[name] for name in _STATE_COLUMNS)]
    for part in chunked(sorted(set(ids)), IN_LIST_SIZE):
        for rec in db.execute(select(*cols).where(one_of(db, CUSTOMERS.c.id, part))).mappings():
            state[rec["id"]] = dict(rec)
    return state


def _fold(records: Sequence[ProfileRecord], person: Person, before: dict[str, Any]) -> dict[str, Any]:
    """The person's profile after their records: fields overwrite, defaults fill blanks, the remark
    follows Name+Source+Intent+Mobile unless typed by hand."""
    after = dict(before)
    fresh = before is _BLANK
    for i in person.records:
        rec = records[i]
        if fresh:
            after.update(rec.created_with)
        for key, value in rec.defaults.items():
            if _blank(key, after.get(key)) and not _blank(key, value):
                after[key] = value
        after.update(rec.fields)
        if rec.remark:
            after["remark"], after["remark_is_manual"] = rec.remark, True
    if not after["remark_is_manual"] and (fresh or any(after[k] != before[k] for k in _REMARK_PARTS)):
        after["remark"] = compose_remark(after["name"], after["source"], after["intent"], after["mobile"])
    return after


def apply_profiles(
    db: Session,
    org_id: int,
    records: Sequence[ProfileRecord],
    *,
    origin: str,
    reason: str,
    record_added: bool = True,
    backfill: bool = False,
) -> ProfileOutcome:
    """Find, create, fill and merge the profiles of a batch of records set-wise, and put their tags on;
    returns the customer of each record. Records sharing an identity are one person; identities of two
    stored customers merge them (the oldest survives, audited "<reason> row <n> linked ...").
    ``record_added=False``: the caller records customer_added itself later (``record_added``)."""
    people, merges = group_people(
        db,
        org_id,
        [r.identities for r in records],
        reason=lambda rows: f"{reason} row {records[rows[0]].row} linked their identifiers",
    )
    outcome = ProfileOutcome(customer_ids=[0] * len(records), merges=merges)
    new_people = [p for p in people if p.customer_id is None]
    now = utcnow()
    stamp = driver_datetime(db)
    if new_people:
        rows = []
        for person in new_people:
            after = _fold(records, person, _BLANK)
            dates = [records[i].added_at for i in person.records]
            added = min((ensure_utc(d) for d in dates if d is not None), default=now)
            rows.append(
                {
                    "org_id": org_id,
                    **_plain(after),
                    "consent_marketing": False,
                    "consent_analytics": True,
                    "created_at": stamp(added),
                    "updated_at": stamp(now),
                }
            )
        lost = set(claim_profiles(db, org_id, new_people, rows))
        outcome.created = [p.customer_id for i, p in enumerate(new_people) if i not in lost and p.customer_id]
    created = set(outcome.created)
    outcome.new_identities = [ref for p in people for ref in p.new_refs]
    existing = [p for p in people if p.customer_id not in created]
    state = _read_state(db, [p.customer_id for p in existing if p.customer_id is not None])
    have_tags = _tags_of(db, [p.customer_id for p in existing if p.customer_id is not None])
    updates: list[dict[str, Any]] = []
    events: list[DomainEvent] = []
    tag_rows: list[dict[str, Any]] = []
    attach: list[dict[str, Any]] = []
    for person in people:
        cid = person.customer_id
        assert cid is not None
        for i in person.records:
            outcome.customer_ids[i] = cid
        tags = {t for i in person.records for t in records[i].tags}
        if cid in created:
            tag_rows += [{"org_id": org_id, "customer_id": cid, "tag_id": t} for t in sorted(tags)]
            continue
        attach += [
            {"org_id": org_id, "customer_id": cid, "kind": k, "value": v, "created_at": stamp(now)}
            for k, v in person.new_refs
        ]
        before = state[cid]
        after = _fold(records, person, before)
        new_tags = sorted(t for t in tags if (cid, t) not in have_tags)
        tag_rows += [{"org_id": org_id, "customer_id": cid, "tag_id": t} for t in new_tags]
        changed = sorted(k for k in UPDATABLE if after[k] != before[k])
        if after != before:
            updates.append({"b_id": cid, **_plain(after), "updated_at": stamp(now)})
            if changed:
                events.append(_event(org_id, cid, EventType.profile_changed, now, origin, fields=changed))
            if after["remark"] != before["remark"]:
                events.append(
                    _event(
                        org_id,
                        cid,
                        EventType.remark_changed,
                        now,
                        origin,
                        remark=after["remark"],
                        previous=before["remark"],
                        manual=after["remark_is_manual"],
                    )
                )
        if after != before or person.new_refs or new_tags:
            outcome.updated += 1
        else:
            outcome.unchanged += 1
    # An identity another writer took since the lookup stays theirs: the next sync or import merges.
    insert_rows(db, IDENTITIES, attach, ["org_id", "kind", "value"])
    if updates:
        stmt = (
            update(CUSTOMERS)
            .where(CUSTOMERS.c.id == bindparam("b_id"))
            .values({k: bindparam(k) for k in (*_STATE_COLUMNS, "updated_at")})
        )
        executemany_raw(db, stmt, updates)
    if record_added and outcome.created:
        events += _added_events(db, org_id, outcome.created, origin=origin, backfill=backfill)
    events += _put_tags(db, tag_rows, origin=origin, at=now)
    emit_many(db, events)
    return outcome


def _event(
    org_id: int,
    customer_id: int,
    type_: EventType,
    at: datetime,
    origin: str,
    *,
    account_id: int | None = None,
    source: str | None = None,
    backfill: bool = False,
    **properties: Any,
) -> DomainEvent:
    if origin:
        properties["origin"] = origin
    if account_id is not None:
        properties["account_id"] = account_id
    return DomainEvent(
        org_id=org_id,
        customer_id=customer_id,
        type=type_,
        occurred_at=at,
        properties=properties,
        account_id=account_id,
        source=source,
        backfill=backfill,
    )


def _tags_of(db: Session, ids: Sequence[int]) -> set[tuple[int, int]]:
    have: set[tuple[int, int]] = set()
    for part in chunked(sorted(set(ids)), IN_LIST_SIZE):
        have.update(
            (int(c), int(t))
            for c, t in db.execute(
                select(CUSTOMER_TAGS.c.customer_id, CUSTOMER_TAGS.c.tag_id).where(
                    one_of(db, CUSTOMER_TAGS.c.customer_id, part)
                )
            )
        )
    return have


def _tag_names(db: Session, tag_ids: Iterable[int]) -> dict[int, tuple[str, str | None]]:
    names: dict[int, tuple[str, str | None]] = {}
    for part in chunked(sorted(set(tag_ids)), IN_LIST_SIZE):
        for tid, name, ext in db.execute(
            select(Tag.id, Tag.name, Tag.external_id).where(one_of(db, Tag.id, part))
        ):
            names[int(tid)] = (name, ext)
    return names


def _put_tags(
    db: Session, rows: list[dict[str, Any]], *, origin: str, at: datetime, backfill: bool = False
) -> list[DomainEvent]:
    """Insert (org_id, customer_id, tag_id) rows, ignoring ones present; tag_added for what went in."""
    if not rows:
        return []
    stamp = driver_datetime(db)(at)
    for row in rows:
        row["created_at"] = stamp
    org_id = rows[0]["org_id"]
    added = insert_rows_returning(
        db, CUSTOMER_TAGS, rows, ["customer_id", "tag_id"], ["customer_id", "tag_id"]
    )
    return _tag_events(db, org_id, EventType.tag_added, added, origin=origin, at=at, backfill=backfill)


def _tag_events(
    db: Session,
    org_id: int,
    type_: EventType,
    pairs: Iterable[tuple[int, int]],
    *,
    origin: str,
    at: datetime,
    backfill: bool = False,
) -> list[DomainEvent]:
    pairs = list(pairs)
    names = _tag_names(db, (t for _, t in pairs))
    return [
        _event(
            org_id,
            int(cid),
            type_,
            at,
            origin,
            backfill=backfill,
            tag_id=int(tid),
            tag=names.get(int(tid), ("", None))[0],
            external_id=names.get(int(tid), ("", None))[1],
        )
        for cid, tid in pairs
    ]


def _added_events(
    db: Session, org_id: int, ids: Collection[int], *, origin: str, backfill: bool
) -> list[DomainEvent]:
    events = []
    for part in chunked(sorted(ids), IN_LIST_SIZE):
        for cid, at, source in db.execute(
            select(CUSTOMERS.c.id, CUSTOMERS.c.created_at, CUSTOMERS.c.source).where(
                one_of(db, CUSTOMERS.c.id, part)
            )
        ):
            at = ensure_utc(at)
            events.append(
                _event(
                    org_id, int(cid), EventType.customer_added, at, origin, source=source, backfill=backfill
                )
            )
    return events


def record_added(db: Session, org_id: int, ids: Collection[int], *, origin: str, backfill: bool) -> None:
    """customer_added for profiles created in this transaction (``apply_profiles(record_added=False)``),
    each first dated by its earliest follow when that is older than its creation: the person was the
    brand's contact from then on."""
    if not ids:
        return
    events: list[DomainEvent] = []
    moved: list[dict[str, Any]] = []
    for part in chunked(sorted(ids), IN_LIST_SIZE):
        # One grouped read per part, compared here: a correlated min() per row in an UPDATE's WHERE made
        # PostgreSQL scan the follows once per customer (most of a 100,000-contact sync's time).
        first = {
            int(cid): ensure_utc(since)
            for cid, since in db.execute(
                select(FOLLOWS.c.customer_id, func.min(FOLLOWS.c.since))
                .where(FOLLOWS.c.org_id == org_id, one_of(db, FOLLOWS.c.customer_id, part))
                .group_by(FOLLOWS.c.customer_id)
            )
            if since is not None
        }
        for cid, at, source in db.execute(
            select(CUSTOMERS.c.id, CUSTOMERS.c.created_at, CUSTOMERS.c.source).where(
                one_of(db, CUSTOMERS.c.id, part)
            )
        ):
            at = ensure_utc(at)
            earliest = first.get(int(cid))
            if earliest is not None and earliest < at:
                at = earliest
                moved.append({"b_id": int(cid), "b_at": at})
            events.append(
                _event(
                    org_id, int(cid), EventType.customer_added, at, origin, source=source, backfill=backfill
                )
            )
    if moved:
        db.execute(
            update(CUSTOMERS).where(CUSTOMERS.c.id == bindparam("b_id")).values(created_at=bindparam("b_at")),
            moved,
        )
    emit_many(db, events)


def follow_statuses(db: Session, org_id: int) -> dict[tuple[int, int], str]:
    """(customer, account) -> status of every follow relation of the organization (one query)."""
    return {
        (int(cid), int(aid)): str(status)
        for cid, aid, status in db.execute(
            select(FOLLOWS.c.customer_id, FOLLOWS.c.account_id, FOLLOWS.c.status).where(
                FOLLOWS.c.org_id == org_id
            )
        )
    }


def follow_statuses_of(db: Session, customer_ids: Collection[int]) -> dict[tuple[int, int], str]:
    """``follow_statuses`` for some customers (after a merge moved relations)."""
    found: dict[tuple[int, int], str] = {}
    for part in chunked(sorted(customer_ids), IN_LIST_SIZE):
        for cid, aid, status in db.execute(
            select(FOLLOWS.c.customer_id, FOLLOWS.c.account_id, FOLLOWS.c.status).where(
                one_of(db, FOLLOWS.c.customer_id, part)
            )
        ):
            found[(int(cid), int(aid))] = str(status)
    return found


def apply_follows(
    db: Session,
    org_id: int,
    follows: Sequence[FollowRecord],
    known: dict[tuple[int, int], str],
    *,
    origin: str,
    backfill: bool = False,
) -> tuple[int, int]:
    """Start the follow relations in ``follows`` (one per pair: the first wins) that are not active;
    ``known`` holds the status of the pairs' existing relations (``follow_statuses``), absent = none.
    Ended ones start again from ``since`` (a carrier snapshot is the truth now). Records follow_started
    dated by ``since`` and moves the friend counts. Returns (created, restarted)."""
    now = utcnow()
    stamp = driver_datetime(db)
    active = FollowStatus.active.value
    inserts: list[dict[str, Any]] = []
    revive: list[dict[str, Any]] = []
    started: dict[tuple[int, int], FollowRecord] = {}
    for f in follows:
        key = (f.customer_id, f.account_id)
        if key in started:
            continue
        status = known.get(key)
        if status == active:
            continue
        started[key] = f
        since = f.since or now
        if status is None:
            inserts.append(
                {
                    "org_id": org_id,
                    "customer_id": f.customer_id,
                    "account_id": f.account_id,
                    "since": stamp(since),
                    "source": f.source,
                    "state": f.state,
                    "status": active,
                    "ended_at": None,
                }
            )
        else:
            revive.append({"cid": f.customer_id, "aid": f.account_id, "sn": since})
    went_in = {
        (int(c), int(a))
        for c, a in insert_rows_returning(
            db,
            FOLLOWS,
            inserts,
            ["org_id", "customer_id", "account_id"],
            ["customer_id", "account_id"],
        )
    }
    if revive:
        db.execute(
            update(FOLLOWS)
            .where(
                and_(
                    FOLLOWS.c.customer_id == bindparam("cid"),
                    FOLLOWS.c.account_id == bindparam("aid"),
                    FOLLOWS.c.status != active,
                )
            )
            .values(status=active, ended_at=None, since=bindparam("sn")),
            revive,
        )
        went_in.update((r["cid"], r["aid"]) for r in revive)
    _shift_friends(db, Counter(aid for _, aid in went_in))
    emit_many(
        db,
        [
            _event(
                org_id,
                cid,
                EventType.follow_started,
                started[(cid, aid)].since or now,
                origin,
                account_id=aid,
                source=started[(cid, aid)].source,
                backfill=backfill,
                state=started[(cid, aid)].state,
            )
            for cid, aid in sorted(went_in)
        ],
    )
    return len(went_in) - len(revive), len(revive)


def end_follows(
    db: Session,
    org_id: int,
    pairs: Sequence[tuple[int, int]],
    *,
    by: str,
    at: datetime | None = None,
    origin: str,
) -> int:
    """End the active (customer, account) relations among ``pairs`` at ``at``, by "customer" or "staff";
    one that ended meanwhile keeps its own end. Records follow_ended; returns how many ended."""
    at = at or utcnow()
    active = FollowStatus.active.value
    still: set[tuple[int, int]] = set()
    for part in chunked(sorted(set(pairs)), IN_LIST_SIZE):
        cids = sorted({c for c, _ in part})
        wanted = set(part)
        still.update(
            (int(c), int(a))
            for c, a in db.execute(
                select(FOLLOWS.c.customer_id, FOLLOWS.c.account_id).where(
                    one_of(db, FOLLOWS.c.customer_id, cids), FOLLOWS.c.status == active
                )
            )
            if (int(c), int(a)) in wanted
        )
    if not still:
        return 0
    db.execute(
        update(FOLLOWS)
        .where(
            FOLLOWS.c.customer_id == bindparam("cid"),
            FOLLOWS.c.account_id == bindparam("aid"),
            FOLLOWS.c.status == active,
        )
        .values(status=_ENDED[by], ended_at=at),
        [{"cid": c, "aid": a} for c, a in sorted(still)],
    )
    _shift_friends(db, Counter({aid: -n for aid, n in Counter(a for _, a in still).items()}))
    emit_many(
        db,
        [
            _event(org_id, cid, EventType.follow_ended, at, origin, account_id=aid, by=by)
            for cid, aid in sorted(still)
        ],
    )
    return len(still)


def _shift_friends(db: Session, deltas: Counter[int]) -> None:
    rows = [{"aid": aid, "d": n} for aid, n in sorted(deltas.items()) if n]
    if rows:
        db.execute(
            update(ACCOUNTS)
            .where(ACCOUNTS.c.id == bindparam("aid"))
            .values(friend_count=ACCOUNTS.c.friend_count + bindparam("d")),
            rows,
        )
        db.expire_all()


def replace_tags(
    db: Session,
    org_id: int,
    wanted: set[tuple[int, int]],
    customers: Collection[int],
    scope: Collection[int],
    *,
    origin: str,
    at: datetime | None = None,
    backfill: bool = False,
) -> tuple[int, int]:
    """Make ``customers`` carry exactly the ``wanted`` (customer, tag) pairs among the tags in ``scope``
    (e.g. the tags mirrored from a carrier; other tags are left alone). Returns (added, removed)."""
    at = at or utcnow()
    existing: set[tuple[int, int]] = set()
    for part in chunked(sorted(set(scope)), IN_LIST_SIZE):
        existing.update(
            (int(c), int(t))
            for c, t in db.execute(
                select(CUSTOMER_TAGS.c.customer_id, CUSTOMER_TAGS.c.tag_id).where(
                    CUSTOMER_TAGS.c.org_id == org_id, one_of(db, CUSTOMER_TAGS.c.tag_id, part)
                )
            )
        )
    seen = set(customers)
    add = sorted(wanted - existing)
    remove = sorted(p for p in existing - wanted if p[0] in seen)
    events = _put_tags(
        db,
        [{"org_id": org_id, "customer_id": c, "tag_id": t} for c, t in add],
        origin=origin,
        at=at,
        backfill=backfill,
    )
    added = len(events)
    if remove:
        db.execute(
            delete(CUSTOMER_TAGS).where(
                CUSTOMER_TAGS.c.customer_id == bindparam("c"), CUSTOMER_TAGS.c.tag_id == bindparam("t")
            ),
            [{"c": c, "t": t} for c, t in remove],
        )
        events += _tag_events(db, org_id, EventType.tag_removed, remove, origin=origin, at=at)
    emit_many(db, events)
    return added, len(remove)
