"""Write a sandbox World into siyu's database, fast, in one transaction.

Small tables (organization, users, accounts, tag groups, tags) go through SQLAlchemy Core.
The big ones go through the driver directly: `executemany` with pre-formatted rows on SQLite and
`COPY ... FROM STDIN` on PostgreSQL, in chunks, with ids reserved up front so children can be
written without reading anything back. Nothing is visible until the final commit, so a failed
load leaves the database as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, Index, Table, delete, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import ReturningInsert

from siyu.customers.search import indexed_after_insert, rebuilt_after_delete
from siyu.demo import vocab as V
from siyu.demo.records import World
from siyu.kit.errors import Conflict, Invalid
from siyu.models import (
    Account,
    Base,
    Customer,
    Order,
    Organization,
    Tag,
    TagGroup,
    User,
)
from siyu.tenancy.service import EMAIL_RE, SLUG_RE, hash_password

Progress = Callable[[str, int, int], None]
CHUNK = 20_000
DEFER_INDEXES_AT = 200_000  # rows; below this, incremental index inserts are fast enough
EVENT_SOURCE = "sandbox"
ORIGIN = "demo"  # the events' origin property: the simulated brand wrote them


# The demo's logins are printed by `siyu demo`; they only ever guard a simulated brand.
DEFAULT_ADMIN_PASSWORD = "siyu-demo"
DEFAULT_OPERATOR_PASSWORD = "siyu-operator"


@dataclass(frozen=True, slots=True)
class Login:
    """Credentials of a user the loader created (the sandbox is a demo: it hands these out)."""

    email: str
    password: str
    name: str
    role: str


@dataclass(frozen=True)
class LoadSummary:
    """What was written: the organization, per-table row counts, two logins and the time taken."""

    org_id: int
    org_slug: str
    counts: dict[str, int]
    admin: Login
    operator: Login
    seconds: float
    tag_ids: dict[str, int] = field(default_factory=dict)  # "group/name" -> tag id


def _engine_of(target: Engine | sessionmaker[Session]) -> Engine:
    if isinstance(target, Engine):
        return target
    bind = target.kw.get("bind")
    if not isinstance(bind, Engine):
        raise Invalid("the session factory is not bound to an engine", field="engine_or_session_factory")
    return bind


def _insert_id(conn: Connection, stmt: ReturningInsert[int]) -> int:
    """The id an INSERT ... RETURNING id gives back."""
    return conn.execute(stmt).scalar_one()


def _owned(table: Table, org_id: int) -> Any:
    """A WHERE clause selecting the rows of `table` that belong to the organization, or None."""
    if table.name == Organization.__tablename__:
        return table.c.id == org_id
    if "org_id" in table.c:
        return table.c.org_id == org_id
    for fk in table.foreign_keys:
        parent = fk.column.table
        if parent is table:
            continue
        clause = _owned(parent, org_id)
        if clause is not None:
            return fk.parent.in_(select(fk.column).where(clause))
    return None


def delete_organization(engine: Engine, slug: str) -> bool:
    """Delete an organization and every row that belongs to it; False when there was none."""
    with engine.connect() as conn:
        org_id = conn.scalar(select(Organization.id).where(Organization.slug == slug))
        conn.rollback()
        if org_id is None:
            return False
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Children are deleted explicitly below, leaves first, so integrity holds; with checks on,
            # SQLite would scan the unindexed customers.merged_into_id once per deleted customer.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin(), rebuilt_after_delete(conn):
                for table in reversed(Base.metadata.sorted_tables):
                    clause = _owned(table, org_id)
                    if clause is not None:
                        conn.execute(delete(table).where(clause))
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
    return True


@contextmanager
def _bulk_mode(conn: Connection) -> Iterator[None]:
    """On SQLite, skip per-row foreign-key lookups and widen the page cache for the load's duration.

    The loader writes parents before children with ids it reserved itself, so every reference is
    valid by construction; the pragmas must be set outside a transaction and are restored after.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    conn.exec_driver_sql("PRAGMA cache_size=-262144")
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.exec_driver_sql("PRAGMA cache_size=-65536")
        conn.commit()


class _Writer:
    """Bulk row writer over the connection's own driver, inside its transaction."""

    def __init__(self, conn: Connection, progress: Progress | None) -> None:
        self.conn = conn
        self.sqlite = conn.dialect.name == "sqlite"
        if not self.sqlite and conn.dialect.name != "postgresql":
            raise Invalid(
                f"the sandbox loader supports SQLite and PostgreSQL, not {conn.dialect.name}",
                field="engine_or_session_factory",
            )
        raw = conn.connection.driver_connection
        assert raw is not None, "a checked-out connection has its driver connection"
        self.raw = raw
        self.progress = progress

    def times(self, seconds: NDArray[np.int64]) -> list[str | None]:
        """Epoch seconds as the text each backend stores (SQLAlchemy's SQLite format, ISO on PG)."""
        text_ = np.datetime_as_string(np.maximum(seconds, 0).astype("datetime64[s]"), unit="s").tolist()
        none = (seconds < 0).tolist()
        if self.sqlite:
            return [None if n else t.replace("T", " ") + ".000000" for t, n in zip(text_, none, strict=False)]
        return [None if n else t + "+00:00" for t, n in zip(text_, none, strict=False)]

    def flags(self, values: NDArray[np.bool_]) -> list[Any]:
        """Booleans as the driver wants them."""
        return values.astype(np.int64).tolist() if self.sqlite else values.tolist()

    def write(
        self, table: str, columns: Sequence[str], chunks: Iterator[list[tuple[Any, ...]]], total: int
    ) -> int:
        """Insert every row the chunk iterator yields; returns the number written."""
        done = 0
        cols = ", ".join(columns)
        if self.sqlite:
            sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(columns))})"
            deferred = self._defer_indexes(table, total)
            cursor = self.raw.cursor()
            for rows in chunks:
                cursor.executemany(sql, rows)
                done += len(rows)
                self._tick(table, done, total)
            cursor.close()
            for index in deferred:
                index.create(self.conn)
            return done
        with self.raw.cursor() as cursor, cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for rows in chunks:
                for row in rows:
                    copy.write_row(row)
                done += len(rows)
                self._tick(table, done, total)
        return done

    def _defer_indexes(self, table: str, total: int) -> list[Index]:
        """Drop the table's secondary indexes when the load outweighs what the table holds (SQLite).

        Inserting a million rows into random spots of an index that outgrows the page cache is
        several times slower than building the index once afterwards with a sort. Inside the load's
        transaction, readers keep seeing the old indexes until the commit; the caller recreates
        these (same definitions, from the models) after the rows are in.
        """
        if total < DEFER_INDEXES_AT:
            return []
        existing = int(
            self.conn.scalar(text(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT :n)"), {"n": total})
            or 0
        )
        if existing >= total:
            return []
        present = set(
            self.conn.scalars(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
                ),
                {"t": table},
            )
        )
        indexes = sorted(
            (i for i in Base.metadata.tables[table].indexes if i.name in present), key=lambda i: str(i.name)
        )
        for index in indexes:
            index.drop(self.conn)
        return indexes

    def reserve_ids(self, table: Table, n: int) -> int:
        """Reserve n consecutive primary keys; returns the first. No other writer may insert meanwhile."""
        if self.sqlite:
            # The organization insert already holds SQLite's write lock, so max(id) cannot move under us.
            return int(self.conn.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0) + 1
        self.conn.execute(text(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE"))
        seq = self.conn.scalar(text(f"SELECT pg_get_serial_sequence('{table.name}', 'id')"))
        top = int(self.conn.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0)
        last = int(self.conn.scalar(text(f"SELECT last_value FROM {seq}")) or 0)
        first = max(top, last) + 1
        self.conn.execute(text("SELECT setval(:seq, :value)"), {"seq": seq, "value": first + max(n, 1) - 1})
        return first

    def _tick(self, step: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(step, done, total)


def _chunked(
    n: int, make: Callable[[slice], list[tuple[Any, ...]]], size: int = CHUNK
) -> Iterator[list[tuple[Any, ...]]]:
    """Yield rows chunk by chunk, building the next chunk in a thread while the driver writes this one.

    sqlite3 and psycopg release the GIL while the database works, so row building overlaps the writes.
    """
    bounds = [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]
    if not bounds:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(make, bounds[0])
        for nxt in bounds[1:]:
            rows = pending.result()
            pending = pool.submit(make, nxt)
            yield rows
        yield pending.result()


def load_world(
    engine_or_session_factory: Engine | sessionmaker[Session],
    world: World,
    *,
    org_slug: str = "demo",
    org_name: str = f"{V.BRAND_NAME}（演示）",
    admin_email: str | None = None,
    admin_password: str = DEFAULT_ADMIN_PASSWORD,
    operator_password: str = DEFAULT_OPERATOR_PASSWORD,
    replace: bool = False,
    progress: Progress | None = None,
) -> LoadSummary:
    """Create organization `org_slug` holding the world; `replace=True` deletes an existing one first."""
    started = time.perf_counter()
    engine = _engine_of(engine_or_session_factory)
    if not SLUG_RE.match(org_slug):
        raise Invalid("org_slug must be 3-60 lowercase letters, digits or hyphens", field="org_slug")
    admin_email = (admin_email or f"admin@{org_slug}.example.com").strip().lower()
    if not EMAIL_RE.match(admin_email):
        raise Invalid(f"{admin_email!r} is not a valid email address", field="admin_email")
    admin_hash = hash_password(admin_password)
    operator_hash = hash_password(operator_password)  # one hash shared by every operator: same password
    if replace:
        delete_organization(engine, org_slug)

    emails = [admin_email] + [f"{op.handle}@{org_slug}.example.com" for op in world.operators[1:]]
    with engine.connect() as conn, _bulk_mode(conn), conn.begin():
        if conn.scalar(select(Organization.id).where(Organization.slug == org_slug)) is not None:
            raise Conflict(
                f"organization {org_slug!r} already exists; load with replace=True to rebuild it",
                field="org_slug",
            )
        taken = conn.scalars(select(User.email).where(User.email.in_(emails))).all()
        if taken:
            raise Conflict(
                f"user email {taken[0]} is already in use by another organization",
                field="admin_email" if taken[0] == admin_email else "org_slug",
            )
        writer = _Writer(conn, progress)
        summary = _write(conn, writer, world, org_slug, org_name, emails, admin_hash, operator_hash)
    admin = Login(admin_email, admin_password, world.operators[0].name, "admin")
    operator = Login(emails[1], operator_password, world.operators[1].name, "operator")
    counts, org_id, tag_ids = summary
    return LoadSummary(
        org_id=org_id,
        org_slug=org_slug,
        counts=counts,
        admin=admin,
        operator=operator,
        seconds=time.perf_counter() - started,
        tag_ids=tag_ids,
    )


def _write(
    conn: Connection,
    w: _Writer,
    world: World,
    slug: str,
    name: str,
    emails: list[str],
    admin_hash: str,
    operator_hash: str,
) -> tuple[dict[str, int], int, dict[str, int]]:
    """Write every table; returns (counts, org id, tag ids by "group/name")."""
    founded = world.start - timedelta(days=30)
    org_id = _insert_id(
        conn,
        insert(Organization)
        .values(name=name, slug=slug, settings={}, created_at=founded)
        .returning(Organization.id),
    )
    user_ids: list[int] = []
    for op, email in zip(world.operators, emails, strict=False):
        user_ids.append(
            _insert_id(
                conn,
                insert(User)
                .values(
                    org_id=org_id,
                    email=email,
                    name=op.name,
                    role=op.role,
                    locale="zh_CN",
                    is_active=True,
                    password_hash=admin_hash if op.role == "admin" else operator_hash,
                    created_at=founded,
                )
                .returning(User.id),
            )
        )

    c = world.customers
    n = len(c)
    active = world.follows.status == 0
    friends = np.bincount(world.follows.account[active], minlength=len(world.accounts))
    account_ids: list[int] = []
    for a, spec in enumerate(world.accounts):
        account_ids.append(
            _insert_id(
                conn,
                insert(Account)
                .values(
                    org_id=org_id,
                    kind=spec.kind,
                    external_id=spec.external_id,
                    name=spec.name,
                    operator_id=user_ids[spec.operator],
                    friend_count=int(friends[a]),
                    soft_cap=spec.soft_cap,
                    hard_cap=spec.hard_cap,
                    status="active",
                    created_at=datetime.fromtimestamp(spec.created_at, UTC),
                )
                .returning(Account.id),
            )
        )
    acct = np.asarray([*account_ids, 0], dtype=np.int64)  # index -1 maps to the trailing 0 -> NULL below

    tag_ids: dict[str, int] = {}
    group_ids: list[int] = []
    for g, (group, _) in enumerate(world.tag_groups):
        group_ids.append(
            _insert_id(
                conn, insert(TagGroup).values(org_id=org_id, name=group, sort_order=g).returning(TagGroup.id)
            )
        )
    tag_list: list[int] = []
    for t, (g, tag_name) in enumerate(world.tags):
        tag_id = _insert_id(
            conn,
            insert(Tag)
            .values(org_id=org_id, group_id=group_ids[g], name=tag_name, sort_order=t)
            .returning(Tag.id),
        )
        tag_list.append(tag_id)
        tag_ids[f"{world.tag_groups[g][0]}/{tag_name}"] = tag_id
    tag_arr = np.asarray(tag_list, dtype=np.int64)

    first_customer = w.reserve_ids(Customer.__table__, n)
    cid = np.arange(first_customer, first_customer + n, dtype=np.int64)
    counts: dict[str, int] = {
        "users": len(user_ids),
        "accounts": len(account_ids),
        "tag_groups": len(group_ids),
        "tags": len(tag_list),
    }

    def opt(values: list[Any], mask: list[bool]) -> list[Any]:
        return [v if m else None for v, m in zip(values, mask, strict=False)]

    def customers(s: slice) -> list[tuple[Any, ...]]:
        created = w.times(c.created_at[s])
        mobile = c.mobile[s]
        region = c.region[s]
        return list(
            zip(
                cid[s].tolist(),
                [org_id] * len(created),
                c.name[s],
                opt(mobile.astype(str).tolist(), (mobile > 0).tolist()),
                [V.GENDERS[g] for g in c.gender[s].tolist()],
                [world.regions[r] if r >= 0 else None for r in region.tolist()],
                [V.STAGES[x] for x in c.stage[s].tolist()],
                [V.SOURCE_CODES[x] for x in c.source[s].tolist()],
                c.source_detail[s],
                c.intent[s],
                c.remark[s],
                w.flags(np.zeros(len(created), dtype=bool)),
                w.flags(c.consent_marketing[s]),
                w.flags(np.ones(len(created), dtype=bool)),
                created,
                w.times(c.updated_at[s]),
                strict=False,
            )
        )

    # The search index takes the brand's customers in one statement after them (SQLite).
    with indexed_after_insert(conn, first_customer):
        counts["customers"] = w.write(
            "customers",
            (
                "id",
                "org_id",
                "name",
                "mobile",
                "gender",
                "region",
                "stage",
                "source",
                "source_detail",
                "intent",
                "remark",
                "remark_is_manual",
                "consent_marketing",
                "consent_analytics",
                "created_at",
                "updated_at",
            ),
            _chunked(n, customers),
            n,
        )

    ids = world.identities
    m = len(ids.value)

    def identities(s: slice) -> list[tuple[Any, ...]]:
        cust = ids.customer[s]
        return list(
            zip(
                [org_id] * (s.stop - s.start),
                cid[cust].tolist(),
                [V.IDENTITY_KINDS[k] for k in ids.kind[s].tolist()],
                ids.value[s],
                w.times(c.created_at[cust]),
                strict=False,
            )
        )

    counts["customer_identities"] = w.write(
        "customer_identities",
        ("org_id", "customer_id", "kind", "value", "created_at"),
        _chunked(m, identities),
        m,
    )

    # The flag is the latest consent record's (customers/consent.py): each consenting customer gave it on a
    # form when they were added.
    consenting = np.flatnonzero(c.consent_marketing)
    m = len(consenting)

    def consents(s: slice) -> list[tuple[Any, ...]]:
        cust = consenting[s]
        created = w.times(c.created_at[cust])
        return list(
            zip(
                [org_id] * len(created),
                cid[cust].tolist(),
                ["marketing"] * len(created),
                w.flags(np.ones(len(created), dtype=bool)),
                ["form"] * len(created),
                created,
                [""] * len(created),
                created,
                strict=False,
            )
        )

    counts["consent_records"] = w.write(
        "consent_records",
        ("org_id", "customer_id", "scope", "granted", "source", "at", "note", "recorded_at"),
        _chunked(m, consents),
        m,
    )

    f = world.follows
    m = f.customer.shape[0]
    wecom = np.array([a.kind == V.ACCOUNT_KINDS[0] for a in world.accounts] + [False])

    def follows(s: slice) -> list[tuple[Any, ...]]:
        cust, acc = f.customer[s], f.account[s]
        src = [V.SOURCE_CODES[x] for x in c.source[cust].tolist()]
        return list(
            zip(
                [org_id] * len(src),
                cid[cust].tolist(),
                acct[acc].tolist(),
                w.times(f.since[s]),
                src,
                opt(src, wecom[acc].tolist()),
                [V.FOLLOW_STATUSES[x] for x in f.status[s].tolist()],
                w.times(f.ended_at[s]),
                strict=False,
            )
        )

    counts["follow_relations"] = w.write(
        "follow_relations",
        (
            "org_id",
            "customer_id",
            "account_id",
            "since",
            "source",
            "state",
            "status",
            "ended_at",
        ),
        _chunked(m, follows),
        m,
    )

    ct = world.customer_tags
    m = ct.customer.shape[0]

    def customer_tags(s: slice) -> list[tuple[Any, ...]]:
        return list(
            zip(
                cid[ct.customer[s]].tolist(),
                tag_arr[ct.tag[s]].tolist(),
                [org_id] * (s.stop - s.start),
                w.times(ct.created_at[s]),
                strict=False,
            )
        )

    counts["customer_tags"] = w.write(
        "customer_tags", ("customer_id", "tag_id", "org_id", "created_at"), _chunked(m, customer_tags), m
    )

    o = world.orders
    m = len(o)
    first_order = w.reserve_ids(Order.__table__, m)
    oid = np.arange(first_order, first_order + m, dtype=np.int64)

    def orders(s: slice) -> list[tuple[Any, ...]]:
        acc = o.account[s]
        paid = w.times(o.paid_at[s])
        return list(
            zip(
                oid[s].tolist(),
                [org_id] * len(paid),
                cid[o.customer[s]].tolist(),
                opt(acct[acc].tolist(), (acc >= 0).tolist()),
                [V.PLATFORMS[p] for p in o.platform[s].tolist()],
                o.external_id[s],
                o.amount_fen[s].tolist(),
                o.refunded_fen[s].tolist(),
                paid,
                paid,
                strict=False,
            )
        )

    counts["orders"] = w.write(
        "orders",
        (
            "id",
            "org_id",
            "customer_id",
            "account_id",
            "platform",
            "external_id",
            "amount_fen",
            "refunded_fen",
            "paid_at",
            "created_at",
        ),
        _chunked(m, orders),
        m,
    )

    it = world.order_items
    m = it.order.shape[0]
    skus = [p[0] for p in V.PRODUCTS]
    names = [p[1] for p in V.PRODUCTS]

    def items(s: slice) -> list[tuple[Any, ...]]:
        prod = it.product[s].tolist()
        return list(
            zip(
                oid[it.order[s]].tolist(),
                [skus[p] for p in prod],
                [names[p] for p in prod],
                it.quantity[s].tolist(),
                it.unit_price_fen[s].tolist(),
                it.unit_cost_fen[s].tolist(),
                strict=False,
            )
        )

    counts["order_items"] = w.write(
        "order_items",
        (
            "order_id",
            "sku",
            "name",
            "quantity",
            "unit_price_fen",
            "unit_cost_fen",
        ),
        _chunked(m, items),
        m,
    )

    e = world.events
    m = len(e)

    props_order = _order_properties(world, oid)
    src_codes = [V.SOURCE_CODES[x] for x in c.source.tolist()]

    def events(s: slice) -> list[tuple[Any, ...]]:
        cust, acc, kinds = e.customer[s], e.account[s], e.type[s]
        at = w.times(e.occurred_at[s])
        props: list[str] = ["{}"] * len(at)
        refs = e.ref[s]
        account_ids = acct[acc].tolist()
        for i in np.flatnonzero((kinds == V.ORDER) | (kinds == V.REFUND)).tolist():
            props[i] = props_order[int(refs[i])][int(kinds[i] == V.REFUND)]
        for i in np.flatnonzero(kinds == V.CUSTOMER_ADDED).tolist():
            props[i] = _added_properties(src_codes, world, cid, int(cust[i]))
        # What the stage rules read of a follow is its account; f-strings: these are a third of the log.
        for i in np.flatnonzero(kinds == V.FOLLOW_STARTED).tolist():
            props[i] = (
                f'{{"account_id": {account_ids[i]}, "source": "{src_codes[int(cust[i])]}", '
                f'"origin": "{ORIGIN}"}}'
            )
        for i in np.flatnonzero(kinds == V.FOLLOW_ENDED).tolist():
            by = V.ENDED_BY[int(refs[i])]
            props[i] = f'{{"account_id": {account_ids[i]}, "by": "{by}", "origin": "{ORIGIN}"}}'
        for i in np.flatnonzero(((kinds == V.MSG_SENT) | (kinds == V.MSG_RECEIVED)) & (acc >= 0)).tolist():
            props[i] = f'{{"account_id": {account_ids[i]}}}'
        for i in np.flatnonzero(kinds == V.COMMENT).tolist():
            props[i] = json.dumps(
                {"platform": "douyin", "intent": c.intent[int(cust[i])]}, ensure_ascii=False
            )
        keys = [f"sandbox:{i:010d}" for i in range(s.start, s.stop)]
        return list(
            zip(
                [org_id] * len(at),
                cid[cust].tolist(),
                opt(account_ids, (acc >= 0).tolist()),
                [V.EVENT_TYPES[k] for k in kinds.tolist()],
                at,
                props,
                [EVENT_SOURCE] * len(at),
                keys,
                at,
                strict=False,
            )
        )

    counts["events"] = w.write(
        "events",
        (
            "org_id",
            "customer_id",
            "account_id",
            "type",
            "occurred_at",
            "properties",
            "source",
            "idempotency_key",
            "received_at",
        ),
        _chunked(m, events),
        m,
    )
    return counts, org_id, tag_ids


def _order_properties(world: World, oid: NDArray[np.int64]) -> list[tuple[str, str]]:
    """Per order, the JSON properties of its order_paid and order_refunded events (what the stage rules read)."""
    o = world.orders
    out: list[tuple[str, str]] = []
    for i, p, a, r in zip(
        oid.tolist(), o.platform.tolist(), o.amount_fen.tolist(), o.refunded_fen.tolist(), strict=False
    ):
        out.append(
            (
                f'{{"order_id": {i}, "platform": "{V.PLATFORMS[p]}", "amount_fen": {a}}}',
                f'{{"order_id": {i}, "refunded_fen": {r}, "amount_fen": {a}}}',
            )
        )
    return out


def _added_properties(src_codes: list[str], world: World, cid: NDArray[np.int64], customer: int) -> str:
    """A customer_added event names the source, and the referrer for referrals (fission analytics)."""
    props: dict[str, Any] = {"source": src_codes[customer], "origin": ORIGIN}
    referrer = int(world.customers.referrer[customer])
    if referrer >= 0:
        props["referrer_customer_id"] = int(cid[referrer])
    return json.dumps(props)
