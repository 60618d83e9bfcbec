"""Set-based identity resolution: which live customer holds each identifier, creating the missing.

The bulk twin of the customers service's find-or-create, shared by the customer import, the event
batch API and the order import.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from siyu.customers.models import Customer, CustomerIdentity, IdentityKind
from siyu.customers.remarks import compose_remark
from siyu.kit.bulk import IN_LIST_SIZE, chunked, driver_datetime, insert_ignore, insert_returning_ids
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
                    CUSTOMERS.c.id.in_(part)
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
                    IDENTITIES.c.org_id == org_id, IDENTITIES.c.kind == kind, IDENTITIES.c.value.in_(part)
                )
            )
            for value, customer_id in rows:
                holders[(kind, value)] = customer_id
    if not holders:
        return holders
    live = live_customers(db, org_id, set(holders.values()))
    return {ref: live.get(cid, cid) for ref, cid in holders.items()}


def resolve_identities(
    db: Session, org_id: int, refs: Iterable[IdentityRef], *, source: str | None = None
) -> tuple[dict[IdentityRef, int], int]:
    """Find the customer of each identity, creating a profile for each unknown one; returns (map, created).

    The set-based twin of the customers service's find-or-create: one lookup, one insert of customers,
    one insert of identities. If a concurrent writer claimed an identity first, our fresh profile is
    removed again and theirs is used.
    """
    wanted = set(refs)
    found = lookup_identities(db, org_id, wanted)
    missing = sorted(wanted - found.keys())
    if not missing:
        return found, 0
    now = utcnow()
    stamp = driver_datetime(db)(now)
    rows = []
    for kind, value in missing:
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
    new_ids = insert_returning_ids(db, CUSTOMERS, rows)
    ident_rows = [
        {"org_id": org_id, "customer_id": cid, "kind": kind, "value": value, "created_at": now}
        for (kind, value), cid in zip(missing, new_ids, strict=True)
    ]
    stmt = insert_ignore(db, IDENTITIES, ["org_id", "kind", "value"]).returning(IDENTITIES.c.customer_id)
    claimed = set(db.scalars(stmt, ident_rows).all())
    lost = [cid for cid in new_ids if cid not in claimed]
    if lost:
        db.execute(delete(CUSTOMERS).where(CUSTOMERS.c.id.in_(lost)))
    found.update({ref: cid for ref, cid in zip(missing, new_ids, strict=True) if cid in claimed})
    if lost:
        found.update(lookup_identities(db, org_id, [ref for ref in missing if ref not in found]))
    return found, len(new_ids) - len(lost)
