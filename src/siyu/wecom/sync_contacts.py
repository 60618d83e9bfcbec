"""Contact part of the reconciliation: customers, identities, unionid merges and follow relations, set-based.

Each chunk of batch/get_by_user items costs a handful of statements, whatever its size: one identity query
(joined to the holder's merge pointer and name), multi-row inserts of the missing customers, identities and
follow relations, and updates only where something changed. A contact followed by several members is
resolved once per sync and then served from `SyncState.holders`.

Why multi-row VALUES on SQLite rather than executemany: the page-fetch thread parses JSON while this one
writes, and Python's sqlite3 releases and re-takes the GIL around every row of an executemany; with
another thread busy each re-take can wait a whole switch interval (5 ms), so 100,000 rows took ~18 s
instead of ~1.3 s. One statement per few hundred rows pays that hand-over a few hundred times less often.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from siyu.customers.models import Customer, CustomerIdentity, FollowRelation, FollowStatus, IdentityKind
from siyu.customers.remarks import compose_remark
from siyu.customers.resolution import live_customers
from siyu.customers.service import add_identity
from siyu.integrations.channel import ContactWithFollow, ExternalContact
from siyu.kit.bulk import (
    IN_LIST_SIZE,
    chunked,
    driver_datetime,
    executemany_raw,
    insert_ignore,
    insert_returning_ids,
)
from siyu.kit.clock import utcnow

if TYPE_CHECKING:
    from siyu.wecom.sync import SyncReport

CUSTOMERS: Table = Customer.__table__
IDENTITIES: Table = CustomerIdentity.__table__
FOLLOWS: Table = FollowRelation.__table__
SOURCE = "wecom"
EXTERNAL = IdentityKind.wecom_external_userid.value
UNIONID = IdentityKind.unionid.value
_GENDERS = {1: "male", 2: "female"}
SQLITE_MAX_PARAMS = 32_766  # SQLite's default bound-parameter limit since 3.32
ROWS_PER_STATEMENT = 2_500  # on SQLite the parameter limit binds first


@dataclass
class SyncState:
    """What the sync learnt so far (keys to reconcile at the end) and what siyu held when it started."""

    accounts: dict[str, int] = field(default_factory=dict)  # userid -> account id
    tags: dict[str, int] = field(default_factory=dict)  # WeCom tag id -> siyu tag id
    seen_follows: set[tuple[int, int]] = field(default_factory=set)  # (customer, account)
    wanted_tags: set[tuple[int, int]] = field(default_factory=set)  # (customer, tag)
    customers: set[int] = field(default_factory=set)
    holders: dict[str, int] = field(default_factory=dict)  # external_userid -> live customer, once resolved
    # Loaded once by `preload` before the pages arrive, so a chunk needs no lookup query:
    known: dict[str, tuple[int, bool]] = field(default_factory=dict)  # external_userid -> (customer, unnamed)
    unionids: dict[str, int] = field(default_factory=dict)  # unionid -> live customer
    # (customer, account) -> status of the relations siyu held when the sync started (after merges: as the
    # merge left them); what `_end_stale_follows` ends is read from here, not from the table again.
    follows: dict[tuple[int, int], str] = field(default_factory=dict)

    def remap(self, merges: dict[int, int]) -> None:
        """Point everything learnt about merged-away customers at their survivors."""

        def to(cid: int) -> int:
            return merges.get(cid, cid)

        self.holders = {eid: to(cid) for eid, cid in self.holders.items()}
        self.known = {eid: (to(cid), unnamed) for eid, (cid, unnamed) in self.known.items()}
        self.unionids = {u: to(cid) for u, cid in self.unionids.items()}
        self.customers = {to(cid) for cid in self.customers}
        self.seen_follows = {(to(cid), aid) for cid, aid in self.seen_follows}
        self.wanted_tags = {(to(cid), tid) for cid, tid in self.wanted_tags}
        # The merge moved the merged-away profiles' relations; `_reload_follows` then reads the survivors'.
        self.follows = {(to(cid), aid): status for (cid, aid), status in self.follows.items()}


def preload(db: Session, org_id: int, state: SyncState) -> None:
    """Read the organization's WeCom identities, unionids and follow relations in three queries.

    Done before the page-fetch thread starts; the chunks then only write. Rows another writer adds
    meanwhile (a callback) are still handled: every insert ignores conflicts and a short count sends the
    chunk back to the database for the rows it lost.
    """
    merged: dict[tuple[str, str], int] = {}
    for kind, value, cid, merged_into, name in db.execute(
        select(
            IDENTITIES.c.kind,
            IDENTITIES.c.value,
            IDENTITIES.c.customer_id,
            CUSTOMERS.c.merged_into_id,
            CUSTOMERS.c.name,
        )
        .join(CUSTOMERS, CUSTOMERS.c.id == IDENTITIES.c.customer_id)
        .where(IDENTITIES.c.org_id == org_id, IDENTITIES.c.kind.in_([EXTERNAL, UNIONID]))
    ):
        kind = str(kind)
        if merged_into is not None:
            merged[(kind, value)] = cid
        elif kind == EXTERNAL:
            state.known[value] = (cid, name == "")
        else:
            state.unionids[value] = cid
    if merged:
        live = live_customers(db, org_id, set(merged.values()))
        for (kind, value), cid in merged.items():
            if kind == EXTERNAL:
                # The survivor's name is not read here; the fill's own "name = ''" guard makes trying safe.
                state.known[value] = (live.get(cid, cid), True)
            else:
                state.unionids[value] = live.get(cid, cid)
    state.follows = {
        (cid, aid): str(status)
        for cid, aid, status in db.execute(
            select(FOLLOWS.c.customer_id, FOLLOWS.c.account_id, FOLLOWS.c.status).where(
                FOLLOWS.c.org_id == org_id
            )
        )
    }


def _gender(value: int) -> str:
    return _GENDERS.get(value, "unknown")


def apply_contacts(
    db: Session, org_id: int, items: list[ContactWithFollow], report: SyncReport, state: SyncState
) -> None:
    """Apply one chunk of batch/get_by_user items: customers, identities, unionid merges, follows, tags."""
    contacts = {i.contact.external_userid: i.contact for i in items if i.contact.external_userid}
    # A contact followed by several members comes once per member: only its first sighting in this sync
    # needs resolving, naming and unionid linking; later ones reuse the cached customer id.
    fresh = {eid: c for eid, c in contacts.items() if eid not in state.holders}
    report.contacts_seen += len(fresh)
    if fresh:
        _resolve_contacts(db, org_id, fresh, report, state)
        merges = _link_unionids(db, org_id, fresh, report, state)
        if merges:
            report.merged += len(merges)
            state.remap(merges)
            _reload_follows(db, org_id, set(merges.values()), state)
    by_eid = {eid: state.holders[eid] for eid in contacts}
    state.customers.update(by_eid.values())
    _apply_follows(db, org_id, items, by_eid, report, state)
    tags = state.tags
    wanted_tags = state.wanted_tags
    for item in items:
        if item.follow.tag_ids:
            cid = by_eid.get(item.contact.external_userid)
            if cid is None:
                continue
            for ext_tag in item.follow.tag_ids:
                tag_id = tags.get(ext_tag)
                if tag_id is not None:
                    wanted_tags.add((cid, tag_id))


def _holders(db: Session, org_id: int, kind: str, values: list[str]) -> dict[str, tuple[int, bool]]:
    """value -> (live customer id, whether that profile still lacks a name), one query per 2,000 values.

    For the rows a concurrent writer added after `preload`; the join reads the holder's merge pointer and
    name in the same statement, and only merged holders are followed to their survivor.
    """
    found: dict[str, tuple[int, bool]] = {}
    merged: dict[str, int] = {}
    for part in chunked(values, IN_LIST_SIZE):
        rows = db.execute(
            select(IDENTITIES.c.value, IDENTITIES.c.customer_id, CUSTOMERS.c.merged_into_id, CUSTOMERS.c.name)
            .join(CUSTOMERS, CUSTOMERS.c.id == IDENTITIES.c.customer_id)
            .where(IDENTITIES.c.org_id == org_id, IDENTITIES.c.kind == kind, IDENTITIES.c.value.in_(part))
        )
        for value, cid, merged_into, name in rows:
            if merged_into is None:
                found[value] = (cid, name == "")
            else:
                merged[value] = cid
    if merged:
        live = live_customers(db, org_id, set(merged.values()))
        found.update({value: (live.get(cid, cid), True) for value, cid in merged.items()})
    return found


def _fill(c: ExternalContact, cid: int) -> dict[str, Any]:
    return {"cid": cid, "nm": c.name[:120], "g": _gender(c.gender)}


def _resolve_contacts(
    db: Session, org_id: int, fresh: dict[str, ExternalContact], report: SyncReport, state: SyncState
) -> None:
    """Find or create the customer of each new contact; profiles lacking a name get WeCom's name and gender.

    New profiles are inserted with WeCom's name and gender already set (rather than inserted bare and
    updated), and existing ones are updated only when their name is still empty.
    """
    known = state.known
    fills = []
    missing = []
    for eid, c in fresh.items():
        hit = known.get(eid)
        if hit is None:
            missing.append(eid)
            continue
        state.holders[eid] = hit[0]
        if hit[1] and c.name:
            fills.append(_fill(c, hit[0]))
    if missing:
        created, lost = _create_customers(db, org_id, {eid: fresh[eid] for eid in missing}, state)
        if created:
            report.count("customers", "created", created)
            report.sample("customers", f"created {created} customers WeCom had and siyu lacked")
        if lost:
            # A concurrent writer (a callback) created these identities first: use its profiles.
            for eid, (cid, unnamed) in _holders(db, org_id, EXTERNAL, lost).items():
                state.holders[eid] = cid
                if unnamed and fresh[eid].name:
                    fills.append(_fill(fresh[eid], cid))
    if fills:
        db.execute(
            update(CUSTOMERS)
            .where(CUSTOMERS.c.id == bindparam("cid"), CUSTOMERS.c.name == "")
            .values(name=bindparam("nm"), gender=bindparam("g")),
            fills,
        )


def _create_customers(
    db: Session, org_id: int, contacts: dict[str, ExternalContact], state: SyncState
) -> tuple[int, list[str]]:
    """Insert a profile and its external_userid identity per contact; returns (created, eids lost to a race).

    The set-based find-or-create of `customers.resolution`, with the WeCom name and gender in the insert.
    If another writer claimed an identity first, our fresh profile is removed again.
    """
    stamp = driver_datetime(db)(utcnow())
    remark = compose_remark(None, SOURCE, None, None)
    eids = list(contacts)
    rows = []
    for eid in eids:
        c = contacts[eid]
        named = bool(c.name)
        rows.append(
            {
                "org_id": org_id,
                "name": c.name[:120] if named else "",
                "mobile": None,
                "gender": _gender(c.gender) if named else "unknown",
                "stage": "new",
                "source": SOURCE,
                "remark": remark,
                "remark_is_manual": False,
                "consent_marketing": False,
                "consent_analytics": True,
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
    new_ids = _insert_returning_ids(db, CUSTOMERS, rows)
    pairs = list(zip(eids, new_ids, strict=True))
    ident_rows = [
        {"org_id": org_id, "customer_id": cid, "kind": EXTERNAL, "value": eid, "created_at": stamp}
        for eid, cid in pairs
    ]
    inserted = insert_rows(db, IDENTITIES, ident_rows, ["org_id", "kind", "value"])
    if inserted == len(ident_rows):
        state.holders.update(pairs)
        return len(new_ids), []
    ours: dict[str, int] = {}
    for part in chunked(eids, IN_LIST_SIZE):
        ours.update(
            (value, cid)
            for value, cid in db.execute(
                select(IDENTITIES.c.value, IDENTITIES.c.customer_id).where(
                    IDENTITIES.c.org_id == org_id, IDENTITIES.c.kind == EXTERNAL, IDENTITIES.c.value.in_(part)
                )
            )
        )
    lost = [(eid, cid) for eid, cid in pairs if ours.get(eid) != cid]
    for part in chunked([cid for _, cid in lost], IN_LIST_SIZE):
        db.execute(delete(CUSTOMERS).where(CUSTOMERS.c.id.in_(part)))
    state.holders.update((eid, cid) for eid, cid in pairs if ours.get(eid) == cid)
    return len(new_ids) - len(lost), [eid for eid, _ in lost]


def _link_unionids(
    db: Session, org_id: int, fresh: dict[str, ExternalContact], report: SyncReport, state: SyncState
) -> dict[int, int]:
    """Attach unionids; a unionid another profile holds means the same person: merge (audited).

    Returns {merged-away customer id: survivor id} for the merges done.
    """
    wanted = {c.unionid: state.holders[eid] for eid, c in fresh.items() if c.unionid}
    if not wanted:
        return {}
    held = {u: state.unionids[u] for u in wanted if u in state.unionids}
    now = driver_datetime(db)(utcnow())
    new_rows = [
        {"org_id": org_id, "customer_id": cid, "kind": UNIONID, "value": u, "created_at": now}
        for u, cid in wanted.items()
        if u not in held
    ]
    if new_rows:
        inserted = insert_rows(db, IDENTITIES, new_rows, ["org_id", "kind", "value"])
        if inserted:
            report.count("identities", "created", inserted)
        if inserted != len(new_rows):
            # Some were claimed by a concurrent writer meanwhile: see who holds them now.
            held.update(
                {
                    u: cid
                    for u, (cid, _) in _holders(db, org_id, UNIONID, [r["value"] for r in new_rows]).items()
                    if cid != wanted[u]
                }
            )
        state.unionids.update((r["value"], r["customer_id"]) for r in new_rows if r["value"] not in held)
    merges: dict[int, int] = {}
    for u, cid in wanted.items():
        holder = held.get(u)
        if holder is None:
            continue
        cid, holder = merges.get(cid, cid), merges.get(holder, holder)
        if holder != cid:
            survivor = add_identity(
                db, org_id, cid, IdentityKind.unionid, u, reason="shared unionid (WeCom sync)"
            )
            merges = {k: (survivor.id if v in (cid, holder) else v) for k, v in merges.items()}
            for gone in (cid, holder):
                if gone != survivor.id:
                    merges[gone] = survivor.id
            report.sample(
                "merges",
                f"customers {min(cid, holder)} and {max(cid, holder)} share a unionid: "
                f"merged into {survivor.id}",
            )
    return merges


def _reload_follows(db: Session, org_id: int, survivors: set[int], state: SyncState) -> None:
    """After merges: the survivors' follow relations as the merge left them (it moves and joins them)."""
    state.follows = {k: v for k, v in state.follows.items() if k[0] not in survivors}
    for part in chunked(sorted(survivors), IN_LIST_SIZE):
        for cid, aid, status in db.execute(
            select(FOLLOWS.c.customer_id, FOLLOWS.c.account_id, FOLLOWS.c.status).where(
                FOLLOWS.c.org_id == org_id, FOLLOWS.c.customer_id.in_(part)
            )
        ):
            state.follows[(cid, aid)] = str(status)


def _stamper(db: Session) -> Callable[[datetime], Any]:
    """`driver_datetime`, with a shortcut for the UTC datetimes the adapter gives (one per follow relation)."""
    convert = driver_datetime(db)
    if db.get_bind().dialect.name != "sqlite":
        return convert

    def stamp(value: datetime) -> Any:
        # Same text as driver_datetime: naive UTC in SQLAlchemy's format; already UTC needs no astimezone.
        if value.tzinfo is UTC:  # "YYYY-MM-DD HH:MM:SS.ffffff" and the "+00:00" cut off: one call, not two
            return value.isoformat(" ", "microseconds")[:26]
        return convert(value)

    return stamp


def _apply_follows(
    db: Session,
    org_id: int,
    items: list[ContactWithFollow],
    by_eid: dict[str, int],
    report: SyncReport,
    state: SyncState,
) -> None:
    wanted: dict[tuple[int, int], ContactWithFollow] = {}
    seen = state.seen_follows
    accounts = state.accounts
    for item in items:
        cid = by_eid.get(item.contact.external_userid)
        account_id = accounts.get(item.follow.userid)
        if cid is not None and account_id is not None and (cid, account_id) not in seen:
            wanted.setdefault((cid, account_id), item)
    if not wanted:
        return
    seen.update(wanted)
    report.follows_seen += len(wanted)
    existing = state.follows
    now = utcnow()
    stamp = _stamper(db)
    active = FollowStatus.active.value
    inserts: list[dict[str, Any]] = []
    revive: list[dict[str, Any]] = []
    room = 10 - len(report.samples.get("follows", ()))  # examples `report.sample` would still keep
    for (cid, aid), item in wanted.items():
        since = item.follow.created_at or now
        status = existing.get((cid, aid))
        if status is None:
            inserts.append(
                {
                    "org_id": org_id,
                    "customer_id": cid,
                    "account_id": aid,
                    "since": stamp(since),
                    "source": SOURCE,
                    "state": item.follow.state[:30] or None,
                    "status": active,
                    "ended_at": None,
                }
            )
            if room > 0:
                room -= 1
                report.sample("follows", f"added {item.follow.userid} -> {item.contact.external_userid}")
        elif status != active:
            revive.append({"cid": cid, "aid": aid, "sn": since})
            report.sample("follows", f"re-activated {item.follow.userid} -> {item.contact.external_userid}")
    if inserts:
        added = insert_rows(db, FOLLOWS, inserts, ["org_id", "customer_id", "account_id"])
        if added:
            report.count("follows", "created", added)
    if revive:
        db.execute(
            update(FOLLOWS)
            .where(
                and_(
                    FOLLOWS.c.org_id == org_id,
                    FOLLOWS.c.customer_id == bindparam("cid"),
                    FOLLOWS.c.account_id == bindparam("aid"),
                )
            )
            .values(status=active, ended_at=None, since=bindparam("sn")),
            revive,
        )
        report.count("follows", "updated", len(revive))


def insert_rows(db: Session, table: Table, rows: list[dict[str, Any]], conflict: Sequence[str] = ()) -> int:
    """Insert many rows (already in driver values, as for `executemany_raw`), ignoring conflicts on
    `conflict` when given; returns how many rows were inserted.

    SQLite: one multi-row VALUES statement per few thousand rows (see the module docstring for why).
    PostgreSQL: COPY, with conflicts through a staging table (see `_insert_pg`; SQLAlchemy's
    insertmanyvalues and psycopg's executemany had the driver parse huge statements or adapt row by row,
    which cost more than the server's own work).
    """
    if not rows:
        return 0
    conn = db.connection()
    keys = list(rows[0])
    if conn.dialect.name == "postgresql":
        return _insert_pg(conn, table, keys, rows, conflict)
    stmt = insert_ignore(db, table, conflict) if conflict else table.insert()
    if conn.dialect.name != "sqlite":
        return executemany_raw(db, stmt, rows)
    compiled = stmt.compile(dialect=conn.dialect, column_keys=keys)
    sql = str(compiled)
    group = "(" + ", ".join(["?"] * len(keys)) + ")"
    order = list(compiled.positiontup or [])
    if sql.count(f"VALUES {group}") != 1 or sorted(order) != sorted(keys):
        return executemany_raw(db, stmt, rows)  # a shape we do not rewrite: stay correct, if slower
    head, tail = sql.split(f"VALUES {group}")
    per = max(1, min(ROWS_PER_STATEMENT, SQLITE_MAX_PARAMS // len(keys)))
    pick = itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],))
    total = 0
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        params = tuple(chain.from_iterable(map(pick, part)))
        total += int(
            conn.exec_driver_sql(f"{head}VALUES {', '.join([group] * len(part))}{tail}", params).rowcount
        )
    return total


def _insert_pg(
    conn: Connection, table: Table, keys: list[str], rows: list[dict[str, Any]], conflict: Sequence[str]
) -> int:
    """PostgreSQL: COPY when no conflict can arise, else COPY into a temporary staging table and one
    INSERT ... SELECT ... ON CONFLICT DO NOTHING from it.

    Why COPY: psycopg adapts a row of COPY in C, while the arrays of an ``unnest`` insert went through its
    Python list dumper (~3 s of this thread for a 100,000-contact sync); the server also parses COPY's
    text faster than array literals. The staging table has the columns' types but no constraints or
    indexes, lives only in this session and is dropped right after.
    """
    quote = conn.dialect.identifier_preparer.quote
    cols = ", ".join(quote(k) for k in keys)
    target = quote(table.name)
    with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        if not conflict:
            _copy_rows(cur, target, cols, keys, rows)
            return len(rows)
        stage = quote(f"siyu_stage_{table.name}")
        cur.execute(
            f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {target} WITH NO DATA"
        )
        _copy_rows(cur, stage, cols, keys, rows)
        # In the order given (ctid: where COPY put each row), so new ids follow the input as they did before.
        cur.execute(
            f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} ORDER BY ctid "
            f"ON CONFLICT ({', '.join(quote(k) for k in conflict)}) DO NOTHING"
        )
        inserted = int(cur.rowcount)
        # On an error the rollback removes the table with the rest; dropped at once, the next call of
        # this transaction can create it again.
        cur.execute(f"DROP TABLE {stage}")
        return inserted


def _copy_rows(cur: Any, target: str, cols: str, keys: list[str], rows: list[dict[str, Any]]) -> None:
    pick = itemgetter(*keys) if len(keys) > 1 else (lambda row: (row[keys[0]],))
    with cur.copy(f"COPY {target} ({cols}) FROM STDIN") as copy:
        for row in map(pick, rows):
            copy.write_row(row)


def _insert_returning_ids(db: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows and return their new ids in the order given (`kit.bulk.insert_returning_ids`, faster).

    SQLite: same reasoning as there: our transaction holds SQLite's only write lock from its first write,
    so the new rowids are consecutive and end at max(id). PostgreSQL: the ids are drawn from the table's
    sequence first and inserted with the rows.
    """
    conn = db.connection()
    if conn.dialect.name == "postgresql":
        seq = conn.exec_driver_sql("SELECT pg_get_serial_sequence(%(t)s, 'id')", {"t": table.name}).scalar()
        if not seq:
            return insert_returning_ids(db, table, rows)
        ids = list(
            conn.exec_driver_sql(
                "SELECT nextval(%(s)s) FROM generate_series(1, %(n)s)", {"s": seq, "n": len(rows)}
            ).scalars()
        )
        insert_rows(db, table, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
        return [int(i) for i in ids]
    if conn.dialect.name != "sqlite":
        return insert_returning_ids(db, table, rows)
    insert_rows(db, table, rows)
    last = int(db.scalar(select(func.max(table.c.id))) or 0)
    return list(range(last - len(rows) + 1, last + 1))
