"""Set-based identity resolution: which live customer holds each identifier, creating the missing.

The one bulk resolver (``group_people`` + ``claim_profiles``), the set-wise twin of the customers
service's find-or-create: the bulk writer (``customers.bulk``: the CSV and order imports, the WeCom
sync), the event batch API and group snapshots all resolve people through it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from siyu.customers.merge import merge_customers
from siyu.customers.models import Customer, CustomerIdentity, IdentityKind
from siyu.customers.remarks import compose_remark
from siyu.kit.bulk import IN_LIST_SIZE, chunked, driver_datetime, insert_returning_ids, insert_rows, one_of
from siyu.kit.clock import utcnow
from siyu.kit.errors import Invalid
from siyu.kit.phone import normalize_mobile

IdentityRef = tuple[str, str]
CUSTOMERS: Table = Customer.__table__
IDENTITIES: Table = CustomerIdentity.__table__


def normalize_identity(kind: str, value: str, *, field: str = "value") -> IdentityRef:
    """Validate an identity: a known kind, a value of 1..128 characters, mobiles in 11-digit form."""
    try:
        kind = IdentityKind(kind).value
    except ValueError:
        raise Invalid(f"unknown identity kind {kind!r}", field=field) from None
    value = value.strip()
    if kind == IdentityKind.mobile:
        value = normalize_mobile(value, field=field)
    if not value or len(value) > 128:
        raise Invalid("an identity value must have 1 to 128 characters", field=field)
    return kind, value


def live_customers(db: Session, org_id: int, ids: Collection[int]) -> dict[int, int]:
    """Map customer ids of this organization to their live profile (following merges); others are absent."""
    result: dict[int, int] = {}
    pending = {int(i) for i in ids}
    pointers: dict[int, int | None] = {}
    while pending:  # more than one round only for chains of merges
        batch = sorted(pending - pointers.keys())
        pending = set()
        for part in chunked(batch, IN_LIST_SIZE):
            # By primary key only, the organization checked here: with "org_id = ? AND id IN (...)"
            # SQLite's planner chose the (org_id, created_at) index and read the whole organization.
            rows = db.execute(
                select(CUSTOMERS.c.id, CUSTOMERS.c.merged_into_id, CUSTOMERS.c.org_id).where(
                    one_of(db, CUSTOMERS.c.id, part)
                )
            ).all()
            for cid, merged_into, owner in rows:
                if owner != org_id:
                    continue
                pointers[cid] = merged_into
                if merged_into is not None and merged_into not in pointers:
                    pending.add(merged_into)
    for cid in ids:
        seen: set[int] = set()
        current: int | None = int(cid)
        while (
            current is not None
            and current in pointers
            and pointers[current] is not None
            and current not in seen
        ):
            seen.add(current)
            current = pointers[current]
        if current is not None and current in pointers:
            result[int(cid)] = current
    return result


def lookup_identities(db: Session, org_id: int, refs: Iterable[IdentityRef]) -> dict[IdentityRef, int]:
    """Which live customer holds each (kind, value), in one query per kind and 2,000 values."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, value in set(refs):
        by_kind[kind].append(value)
    holders: dict[IdentityRef, int] = {}
    for kind, values in by_kind.items():
        for part in chunked(values, IN_LIST_SIZE):
            rows = db.execute(
                select(IDENTITIES.c.value, IDENTITIES.c.customer_id).where(
                    IDENTITIES.c.org_id == org_id,
                    IDENTITIES.c.kind == kind,
                    one_of(db, IDENTITIES.c.value, part),
                )
            )
            for value, customer_id in rows:
                holders[(kind, value)] = customer_id
    if not holders:
        return holders
    live = live_customers(db, org_id, set(holders.values()))
    return {ref: live.get(cid, cid) for ref, cid in holders.items()}


@dataclass(slots=True)
class Person:
    """Records (by index) that describe one person: the live customer already holding one of their
    identities (None: nobody yet) and their identities nobody holds."""

    records: list[int]
    customer_id: int | None
    new_refs: list[IdentityRef] = field(default_factory=list)


def group_people(
    db: Session,
    org_id: int,
    identities: Sequence[Sequence[IdentityRef]],
    *,
    reason: Callable[[Sequence[int]], str],
) -> tuple[list[Person], dict[int, int]]:
    """THE identity resolver, set-wise: which person each record (a list of identities) describes.

    Records sharing an identity, or naming identities of one stored customer, are one person; a person
    whose identities two stored customers hold merges them (the oldest profile survives, audited with
    ``reason``), as ``find_or_create_by_identities`` does for one record. One lookup per kind and 2,000
    values; merges (rare) go through the ORM (``reason(records)`` says why). Returns (people, {merged-away id: survivor id})."""
    holders = lookup_identities(db, org_id, {ref for refs in identities for ref in refs})
    parent = list(range(len(identities)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[Any, int] = {}
    for i, refs in enumerate(identities):
        for ref in refs:
            j = first.setdefault(holders.get(ref, ref), i)
            if j != i:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, tuple[list[int], set[int], dict[IdentityRef, None]]] = {}
    for i, refs in enumerate(identities):
        entry = groups.get(find(i))
        if entry is None:
            entry = groups[find(i)] = ([], set(), {})
        entry[0].append(i)
        for ref in refs:
            if ref in holders:
                entry[1].add(holders[ref])
            else:
                entry[2][ref] = None
    people: list[Person] = []
    merges: dict[int, int] = {}
    for records, cids, fresh in groups.values():
        survivor = min(cids) if cids else None
        for other in sorted(cids - {survivor} if survivor is not None else ()):
            assert survivor is not None
            merge_customers(db, org_id, survivor, other, reason(records))
            merges[other] = survivor
        people.append(Person(records, survivor, list(fresh)))
    if merges:
        db.flush()
    return people, merges


def claim_profiles(
    db: Session, org_id: int, people: Sequence[Person], rows: list[dict[str, Any]]
) -> list[int]:
    """Create a profile from ``rows[i]`` (driver values) for each ``people[i]`` (nobody holds their
    identities) and attach their identities; sets each person's ``customer_id``.

    If a concurrent writer (a callback) claimed one of a person's identities first, our fresh profile is
    removed again and the person becomes that writer's profile (their other identities attached to it).
    Returns the indexes of the people who lost such a race (they are existing profiles now)."""
    ids = insert_returning_ids(db, CUSTOMERS, rows)
    now = driver_datetime(db)(utcnow())
    ident_rows = []
    for person, cid in zip(people, ids, strict=True):
        person.customer_id = cid
        ident_rows += [
            {"org_id": org_id, "customer_id": cid, "kind": k, "value": v, "created_at": now}
            for k, v in person.new_refs
        ]
    if insert_rows(db, IDENTITIES, ident_rows, ["org_id", "kind", "value"]) == len(ident_rows):
        return []
    held = lookup_identities(db, org_id, [ref for p in people for ref in p.new_refs])
    lost = [i for i, p in enumerate(people) if any(held.get(r) != p.customer_id for r in p.new_refs)]
    fresh_ids = [people[i].customer_id for i in lost]
    for part in chunked(fresh_ids, IN_LIST_SIZE):
        db.execute(delete(IDENTITIES).where(one_of(db, IDENTITIES.c.customer_id, part)))
        db.execute(delete(CUSTOMERS).where(one_of(db, CUSTOMERS.c.id, part)))
    attach = []
    for i in lost:
        person = people[i]
        ours = person.customer_id
        person.customer_id = next(held[r] for r in person.new_refs if held.get(r) not in (None, ours))
        attach += [
            {"org_id": org_id, "customer_id": person.customer_id, "kind": k, "value": v, "created_at": now}
            for k, v in person.new_refs
            if held.get((k, v)) in (None, ours)
        ]
        person.new_refs = []
    # An identity a third profile took meanwhile stays there: the next sync or import merges them.
    insert_rows(db, IDENTITIES, attach, ["org_id", "kind", "value"])
    return lost


def resolve_identities(
    db: Session, org_id: int, refs: Iterable[IdentityRef], *, source: str | None = None
) -> tuple[dict[IdentityRef, int], int]:
    """Find the customer of each identity, creating a bare profile for each unknown one; returns (map,
    created). For the event batch API and group members, through ``group_people`` / ``claim_profiles``."""
    wanted = sorted(set(refs))
    # One identity per record: nothing to merge.
    people, _ = group_people(db, org_id, [[ref] for ref in wanted], reason=lambda rows: "")
    found = {wanted[p.records[0]]: p.customer_id for p in people if p.customer_id is not None}
    missing = [p for p in people if p.customer_id is None]
    if not missing:
        return found, 0
    stamp = driver_datetime(db)(utcnow())
    rows = []
    for person in missing:
        kind, value = wanted[person.records[0]]
        mobile = value if kind == IdentityKind.mobile else None
        rows.append(
            {
                "org_id": org_id,
                "name": "",
                "mobile": mobile,
                "gender": "unknown",
                "stage": "new",
                "source": source,
                "remark": compose_remark(None, source, None, mobile),
                "remark_is_manual": False,
                "consent_marketing": False,
                "consent_analytics": True,
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
    lost = set(claim_profiles(db, org_id, missing, rows))
    for person in missing:
        assert person.customer_id is not None
        found[wanted[person.records[0]]] = person.customer_id
    return found, len(missing) - len(lost)
