"""An incremental, rebuildable projection of the operational database into DuckDB.

What is projected (tables of :mod:`siyu.analytics.schema`):

* ``events`` and ``orders``: append-only in the operational store, projected by an id watermark.
  Refunds are the one in-place change to orders; each refresh compares the total refunded amount
  with the projection's and, when they differ, re-reads every refunded order's amount.
* ``buyer_totals`` (per buyer: order count, net paid, last payment; what RFM and ROI read): kept equal
  to a GROUP BY over the projected ``orders`` by recomputing, in the same transaction, the rows of every
  customer whose orders a refresh appended, re-synced a refund of, or re-pointed in a merge.
* Erasures (PIPL): a customer erased on request is re-projected like any changed profile, and their
  projected events take the operational rows' scrubbed properties, so no personal property outlives the
  next refresh (which every read runs first).
* ``customers`` (dimensions: source, stage, first carrier account, its operator, channel code) and
  ``customer_values`` (the CLV write-back): re-projected for every customer whose ``updated_at``
  moved past the watermark, or who gained a follow relation (follow_relations.id watermark).
  Each refresh re-reads the ``updated_at`` window from its predecessor's start minus the 30 s
  commit-lag overlap (``customers_checked_us``), so a change is re-read for at most that long, not
  until the next change. CLV values follow ``clv_updated_at`` per organization (``clv_us:<org>``),
  which the CLV job stamps instead of ``updated_at``: a fit over 400,000 buyers is read once.
  ``channel`` is the ``state`` of the customer's first follow relation (the WeCom channel-code
  state); ``account_id``/``operator_id`` are those of the first follow relation too (first touch).

Merges: the operational merge re-points the merged profile's events and orders to the survivor and
sets ``merged_into_id`` (kept one hop long), which bumps the merged profile's ``updated_at``. The
projection sees that change and re-points the projected rows the same way (an UPDATE of
``customer_id`` from the merged id to the survivor) and drops the merged profile's dimension row.
So projected ids are always survivor ids and no id mapping is needed at query time.

Crash safety: every refresh runs in one DuckDB transaction that also advances the watermarks
(table ``projection_state``); a crash leaves the previous consistent state. Reads from the
operational database run in one snapshot (REPEATABLE READ on PostgreSQL, one read transaction on
SQLite). On PostgreSQL ids can commit out of order; each refresh compares the last ``id_overlap``
ids with the projected ones and reads in full only those missing, which covers transactions that
commit out of order within that distance. Deleted rows (customer deletions cascading) are only dropped by
a rebuild.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
from sqlalchemy import Connection, Engine, text

from siyu.analytics.engines import AnalyticsEngine, ColumnData, DuckDBEngine
from siyu.analytics.schema import CUSTOMER_VALUES, CUSTOMERS, EVENTS, ORDERS, Dialect, Table

_STATE_DDL = "CREATE TABLE IF NOT EXISTS projection_state (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL)"
# Events per (organization, type), kept equal to a GROUP BY over `events` by every refresh: the analytics
# pages list the brand's event types on every request, which was a scan of every event (40 ms at 700,000).
_COUNTS_TABLE = "event_type_counts"
_COUNTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_COUNTS_TABLE} "
    "(org_id BIGINT NOT NULL, event_type VARCHAR NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (org_id, event_type))"
)
# Per buyer: order count, net paid and last payment, kept equal to a GROUP BY over `orders` by every
# refresh (rows of the customers whose orders it touched are recomputed): RFM and ROI read these instead
# of aggregating every order per request (half a second at 600,000 orders).
_BUYERS_TABLE = "buyer_totals"
_BUYERS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_BUYERS_TABLE} (org_id BIGINT NOT NULL, customer_id BIGINT NOT NULL, "
    "orders BIGINT NOT NULL, net_fen BIGINT NOT NULL, last_paid_at TIMESTAMP NOT NULL)"
)
_BUYERS_FILL = (
    f"INSERT INTO {_BUYERS_TABLE} SELECT org_id, customer_id, count(*), sum(amount_fen - refunded_fen), "
    "max(paid_at) FROM orders"
)
_WATERMARKS = ("events_id", "orders_id", "follows_id", "customers_updated_us", "customers_checked_us")
_CLV_MARK = "clv_us:"  # + org id: the newest clv_updated_at projected for that organization
_EPOCH = datetime(1970, 1, 1)
# Re-read customers updated this long before the watermark: a transaction may commit after a later one
# whose updated_at we already saw (timestamps are taken at flush, not at commit).
_UPDATED_OVERLAP = timedelta(seconds=30)
_IN_CHUNK = 500
_MEMO_SIZE = 64  # results kept per projection (funnels, retention tables, report rows: small aggregates)
_T = TypeVar("_T")


@dataclass(slots=True)
class ProjectionReport:
    """What one refresh or rebuild did."""

    events: int = 0
    orders: int = 0
    customers: int = 0
    merged: int = 0
    refunds_resynced: int = 0
    values: int = 0
    seconds: float = 0.0
    skipped: bool = False
    watermarks: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether any projected row was written."""
        return bool(
            self.events
            or self.orders
            or self.customers
            or self.merged
            or self.refunds_resynced
            or self.values
        )


def default_path(data_dir: Path) -> Path:
    """Where the DuckDB file lives by default: ``<data_dir>/analytics.duckdb``."""
    return data_dir / "analytics.duckdb"


def _to_naive_us(value: Any) -> Any:
    """A driver timestamp (SQLite text, naive or aware datetime) as naive UTC for DuckDB."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _columns(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Transpose driver rows into object arrays that DuckDB's numpy scan reads."""
    if not rows:
        return {n: np.empty(0, dtype=object) for n in names}
    cols = list(zip(*rows, strict=True))
    out: dict[str, np.ndarray] = {}
    for n, c in zip(names, cols, strict=True):
        arr = np.empty(len(c), dtype=object)
        arr[:] = c
        out[n] = arr
    return out


class Projection:
    """The DuckDB projection of one operational database; thread-safe (one lock around the connection)."""

    def __init__(
        self,
        source: Engine,
        path: str | Path | None = None,
        *,
        chunk_size: int = 50_000,
        min_interval_seconds: float = 2.0,
        id_overlap: int | None = None,
        with_events: bool = True,
    ) -> None:
        """Open (or create) the DuckDB file, or memory when ``path`` is None.

        ``with_events=False`` projects customers and orders only: for a private, in-memory projection
        made for one job that reads no events (the CLV job when another process holds the file).
        """
        self.source = source
        self.with_events = with_events
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = DuckDBEngine(self.path)
        self.chunk_size = int(chunk_size)
        self.min_interval_seconds = float(min_interval_seconds)
        self._pg = source.dialect.name == "postgresql"
        # SQLite serialises writers, so ids always commit in order there.
        self.id_overlap = int(id_overlap if id_overlap is not None else (1000 if self._pg else 0))
        self._lock = threading.RLock()
        self._last_refresh = float("-inf")
        # (id -> updated_at) of customers projected within the overlap window, so that re-reading the
        # window finds nothing new when nothing changed (lost on restart: then the window is redone once).
        self._recent: dict[int, Any] = {}
        # The projected orders' refunded total as the last refresh left it (None: not known), so that a
        # refresh without new orders compares the operational total with it instead of summing every order.
        self._refunded: int | None = None
        # Bumped by every rebuild and every refresh that writes rows: a result computed on the projection holds until then.
        self._generation = 0
        self._memo: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        with self._lock:
            self.engine.create_schema()
            self.engine.con.execute(_STATE_DDL)
            self._create_counts()
            self._create_buyers()

    # -- reading ---------------------------------------------------------------------------------

    def query(self, sql: str, *, refresh: bool = True) -> list[tuple[Any, ...]]:
        """Run a DuckDB SELECT on the projection, refreshing it first unless it is fresh enough."""
        with self._lock:
            if refresh:
                self.refresh()
            return self.engine.query(sql)

    @contextmanager
    def locked(self, *, refresh: bool = True) -> Iterator[DuckDBEngine]:
        """The engine, refreshed and held exclusively (for run_funnel / run_retention and friends)."""
        with self._lock:
            if refresh:
                self.refresh()
            yield self.engine

    @contextmanager
    def remembering(self, *, refresh: bool = True) -> Iterator[AnalyticsEngine]:
        """As :meth:`locked`, but the engine remembers each query's rows (through :meth:`memo`) until a refresh
        writes rows: a report read again over unchanged data (a page reloaded, an API polled) skips DuckDB.

        Only for queries whose text fixes their result (timestamps as literals, no ``now()``).
        """
        with self.locked(refresh=refresh) as eng:
            yield _Remembering(eng, self)

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()``, or its result from an earlier call with the same key if no refresh has written rows since.

        For read-only results of the projected data (funnels, retention tables): a page viewed again, or
        by another admin, costs nothing until new data arrives. Callers hold the lock (``locked``), so the
        projection cannot change between computing and storing.
        """
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None and hit[0] == self._generation:
                self._memo.move_to_end(key)
                return hit[1]
            value = compute()
            self._memo[key] = (self._generation, value)
            self._memo.move_to_end(key)
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
            return value

    def _create_counts(self) -> None:
        """Create the event counts, filled from the events when a projection made before them lacks them."""
        con = self.engine.con
        exists = _scalar_int(
            con,
            f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{_COUNTS_TABLE}' AND NOT temporary",
        )
        if exists:
            return
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(_COUNTS_DDL)
            con.execute(
                f"INSERT INTO {_COUNTS_TABLE} SELECT org_id, event_type, count(*) FROM events GROUP BY ALL"
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _create_buyers(self) -> None:
        """Create the buyer totals, filled from the orders when a projection made before them lacks them."""
        con = self.engine.con
        exists = _scalar_int(
            con,
            f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{_BUYERS_TABLE}' AND NOT temporary",
        )
        if exists:
            return
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(_BUYERS_DDL)
            con.execute(f"{_BUYERS_FILL} GROUP BY ALL")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def buyers_sql(self, org_id: int, as_of: datetime | None = None) -> str | None:
        """SQL of an organization's buyers (customer_id, last_at, f = orders, m = net fen) from the totals.

        None when ``as_of`` is given and an order of the organization was paid after it (the totals count
        every order; callers then aggregate the orders up to ``as_of`` themselves). Read it under
        :meth:`locked`, so no refresh moves the totals in between.
        """
        org = int(org_id)
        if as_of is not None:
            with self._lock:
                row = self.engine.con.execute(
                    f"SELECT max(last_paid_at) FROM {_BUYERS_TABLE} WHERE org_id = {org}"
                ).fetchone()
            newest = row[0] if row else None
            if newest is not None and newest > _to_naive_dt(as_of):
                return None
        return (
            "SELECT customer_id, last_paid_at AS last_at, orders AS f, net_fen AS m "
            f"FROM {_BUYERS_TABLE} WHERE org_id = {org}"
        )

    def event_types(self, org_id: int, *, refresh: bool = True) -> list[tuple[str, int]]:
        """An organization's projected event types with their counts, most frequent first (then by name)."""
        return [
            (str(t), int(n))
            for t, n in self.query(
                f"SELECT event_type, n FROM {_COUNTS_TABLE} WHERE org_id = {int(org_id)} AND n > 0 "
                "ORDER BY n DESC, event_type",
                refresh=refresh,
            )
        ]

    def watermarks(self) -> dict[str, int]:
        """The current watermarks (0 for ones never set)."""
        with self._lock:
            rows = dict(self.engine.con.execute("SELECT name, value FROM projection_state").fetchall())
        return {k: int(rows.get(k, 0)) for k in _WATERMARKS}

    def close(self) -> None:
        """Close the DuckDB connection."""
        with self._lock:
            self.engine.close()

    # -- writing ---------------------------------------------------------------------------------

    def rebuild(self) -> ProjectionReport:
        """Start over: empty every projected table and project everything again, in one transaction."""
        with self._lock:
            return self._run(full=True)

    def refresh(self, *, force: bool = False) -> ProjectionReport:
        """Project what changed since the watermarks; skipped if the last refresh is younger than min_interval."""
        with self._lock:
            if not force and time.monotonic() - self._last_refresh < self.min_interval_seconds:
                return ProjectionReport(skipped=True)
            return self._run(full=False)

    def _run(self, *, full: bool) -> ProjectionReport:
        started = time.perf_counter()
        report = ProjectionReport()
        con = self.engine.con
        wm = dict.fromkeys(_WATERMARKS, 0) if full else self.watermarks()
        wm.update({} if full else self._clv_marks())
        before = dict(wm)
        # Taken before the snapshot opens: every row committed after it was flushed after this minus the
        # overlap, so the next refresh re-reads from there on, and never rows older than that again.
        checked = datetime.now(UTC).replace(tzinfo=None)
        self._pending_recent: dict[int, Any] | None = None
        self._touched_buyers: set[int] = set()
        self._pending_refunded: int | None = None
        con.execute("BEGIN TRANSACTION")
        # Hundreds of thousands of row tuples live briefly; the cyclic GC would rescan them for nothing.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if full:
                for t in (EVENTS, ORDERS, CUSTOMERS, CUSTOMER_VALUES):
                    con.execute(f"DELETE FROM {t.name}")
                con.execute(f"DELETE FROM {_COUNTS_TABLE}")
                con.execute(f"DELETE FROM {_BUYERS_TABLE}")
            with self._source_snapshot() as src:
                self._project_customers(src, wm, report, full=full)
                if self.with_events:
                    wm["events_id"] = self._project_appended(
                        src, "events", wm["events_id"], report, full=full
                    )
                wm["orders_id"] = self._project_appended(src, "orders", wm["orders_id"], report, full=full)
                if not full:
                    self._resync_refunds(src, wm["orders_id"], report)
                self._project_values(src, wm, report, full=full)
            self._sync_buyers(full=full)
            wm["customers_checked_us"] = (checked - _EPOCH) // timedelta(microseconds=1)
            # Advancing the start alone is worth a commit once it leaves the overlap behind: from then
            # on the rows of the last window are not read again.
            moved = wm["customers_checked_us"] - before[
                "customers_checked_us"
            ] > _UPDATED_OVERLAP // timedelta(microseconds=1)
            if (
                full
                or report.changed
                or moved
                or {k: v for k, v in wm.items() if k != "customers_checked_us"}
                != {k: v for k, v in before.items() if k != "customers_checked_us"}
            ):
                con.executemany(
                    "INSERT OR REPLACE INTO projection_state VALUES (?, ?)",
                    [[k, int(v)] for k, v in wm.items()],
                )
                con.execute("COMMIT")
                if full or report.changed:  # not for watermarks moving alone: the data is the same
                    self._generation += 1
            else:
                con.execute("ROLLBACK")  # nothing to write: skip DuckDB's commit (a WAL write and sync)
            if self._pending_recent is not None:
                self._recent = self._pending_recent
            self._refunded = self._pending_refunded
        except BaseException:
            con.execute("ROLLBACK")
            self._refunded = None
            raise
        finally:
            if gc_was_enabled:
                gc.enable()
        self._last_refresh = time.monotonic()
        report.watermarks = dict(wm)
        report.seconds = time.perf_counter() - started
        return report

    @contextmanager
    def _source_snapshot(self) -> Iterator[Connection]:
        opts: dict[str, Any] = {"isolation_level": "REPEATABLE READ"} if self._pg else {}
        with self.source.connect().execution_options(**opts) as conn, conn.begin():
            yield conn

    def _load(
        self,
        table: Table,
        arrays: dict[str, np.ndarray],
        *,
        into: str | None = None,
    ) -> None:
        """Insert column arrays into a projected table (or a scratch table) through DuckDB's numpy scan.

        Events also add what they insert to the counts per type.
        """
        _arrays = arrays
        select = ", ".join(f"CAST({c.name} AS {c.duckdb_type}) AS {c.name}" for c in table.columns)
        source = f"SELECT {select} FROM _arrays"
        con = self.engine.con
        if table is not EVENTS or into is not None:
            con.execute(f"INSERT INTO {into or table.name} {source}")
            return
        con.execute(f"CREATE OR REPLACE TEMP TABLE _new_events AS {source}")
        con.execute("INSERT INTO events SELECT * FROM _new_events")
        con.execute(
            f"INSERT INTO {_COUNTS_TABLE} SELECT org_id, event_type, count(*) FROM _new_events GROUP BY ALL "
            "ON CONFLICT DO UPDATE SET n = n + excluded.n"
        )
        con.execute("DROP TABLE _new_events")

    def _project_appended(
        self, src: Connection, kind: str, watermark: int, report: ProjectionReport, *, full: bool
    ) -> int:
        """Append events or orders with id > watermark, chunk by chunk, and those of the overlap not yet projected.

        The overlap (ids that may commit out of order, on PostgreSQL) is compared by id alone: its rows are read
        in full only when missing from the projection, so an unchanged row is never read twice.
        """
        if kind == "events":
            table, key, ts = EVENTS, "event_id", "occurred_at"
            sql = (
                "SELECT id, org_id, customer_id, type, {ts}, account_id, source, CAST(properties AS TEXT) "
                "FROM events WHERE {where}"
            )
        else:
            table, key, ts = ORDERS, "order_id", "paid_at"
            # Cost is known only when every line carries a unit cost.
            sql = (
                "SELECT o.id, o.org_id, o.customer_id, o.account_id, o.platform, o.amount_fen, o.refunded_fen, "
                "(SELECT CASE WHEN count(*) > 0 AND count(*) = count(i.unit_cost_fen) "
                "THEN sum(i.quantity * i.unit_cost_fen) END FROM order_items AS i WHERE i.order_id = o.id), {ts} "
                "FROM orders AS o WHERE {where}"
            )
        column = "id" if kind == "events" else "o.id"
        sql = sql.replace(
            "{ts}", f"{'' if kind == 'events' else 'o.'}{ts}" + (" AT TIME ZONE 'UTC'" if self._pg else "")
        )
        overlap = 0 if full else min(self.id_overlap, watermark)
        if overlap:
            seen = {
                int(r[0])
                for r in self.engine.con.execute(
                    f"SELECT {key} FROM {table.name} WHERE {key} > ? AND {key} <= ?",
                    [watermark - overlap, watermark],
                ).fetchall()
            }
            late = [
                int(i)
                for (i,) in _fetch_raw(
                    src,
                    f"SELECT id FROM {kind} WHERE id > :after AND id <= :wm",
                    {"after": watermark - overlap, "wm": watermark},
                )
                if int(i) not in seen
            ]
            for i in range(0, len(late), _IN_CHUNK):
                part = late[i : i + _IN_CHUNK]
                marks = ", ".join(f":c{j}" for j in range(len(part)))
                rows = _fetch_raw(
                    src, sql.format(where=f"{column} IN ({marks})"), {f"c{j}": v for j, v in enumerate(part)}
                )
                self._load_appended(kind, table, rows, full=full)
                self._count_appended(kind, report, len(rows))
        page = sql.format(where=f"{column} > :after ORDER BY {column} LIMIT :n")
        after = highest = watermark
        while True:
            rows = _fetch_raw(src, page, {"after": after, "n": self.chunk_size})
            if not rows:
                break
            self._load_appended(kind, table, rows, full=full)
            self._count_appended(kind, report, len(rows))
            highest = after = max(highest, int(rows[-1][0]))
            if len(rows) < self.chunk_size:
                break
        return highest

    def _load_appended(self, kind: str, table: Table, rows: Sequence[Any], *, full: bool) -> None:
        """Project rows read by ``_project_appended`` (in its column order)."""
        if kind == "events":
            names: tuple[str, ...] = (
                "event_id",
                "org_id",
                "customer_id",
                "event_type",
                "occurred_at",
                "account_id",
                "source",
                "properties",
            )
        else:
            names = (
                "order_id",
                "org_id",
                "customer_id",
                "account_id",
                "platform",
                "amount_fen",
                "refunded_fen",
                "cost_fen",
                "paid_at",
            )
        arrays = _columns(rows, names)
        if self._pg:
            ts_col = "occurred_at" if kind == "events" else "paid_at"
            arrays[ts_col] = np.array([_to_naive_us(v) for v in arrays[ts_col]], dtype="datetime64[us]")
        if kind == "events":
            arrays["properties"] = np.array(
                [p if p is not None else "{}" for p in arrays["properties"]], dtype=object
            )
        self._load(table, arrays)
        if kind == "orders" and not full:
            self._touched_buyers.update(int(c) for c in arrays["customer_id"])

    @staticmethod
    def _count_appended(kind: str, report: ProjectionReport, n: int) -> None:
        if kind == "events":
            report.events += n
        else:
            report.orders += n

    def _sync_buyers(self, *, full: bool) -> None:
        """Recompute the buyer totals of the customers whose projected orders this run changed (all of
        them on a rebuild); a customer left without orders (merged away) loses the row."""
        con = self.engine.con
        if full:
            con.execute(f"{_BUYERS_FILL} GROUP BY ALL")
            return
        if not self._touched_buyers:
            return
        _touched = {"customer_id": np.fromiter(self._touched_buyers, dtype=np.int64)}
        con.execute("CREATE OR REPLACE TEMP TABLE _tb AS SELECT customer_id FROM _touched")
        con.execute(f"DELETE FROM {_BUYERS_TABLE} WHERE customer_id IN (SELECT customer_id FROM _tb)")
        con.execute(f"{_BUYERS_FILL} WHERE customer_id IN (SELECT customer_id FROM _tb) GROUP BY ALL")
        con.execute("DROP TABLE _tb")

    def _resync_refunds(self, src: Connection, orders_wm: int, report: ProjectionReport) -> None:
        """Re-read refunded amounts when the operational total differs from the projected one."""
        op_total = int(
            src.execute(
                # The predicate lets the partial index of refunded orders answer (not a scan of every order).
                text(
                    "SELECT coalesce(sum(refunded_fen), 0) FROM orders WHERE refunded_fen <> 0 AND id <= :wm"
                ),
                {"wm": orders_wm},
            ).scalar_one()
        )
        con = self.engine.con
        projected = (
            self._refunded
            if self._refunded is not None and not report.orders
            else _scalar_int(con, "SELECT coalesce(sum(refunded_fen), 0) FROM orders")
        )
        self._pending_refunded = projected
        if op_total == projected:
            return
        rows = src.execute(
            text("SELECT id, refunded_fen FROM orders WHERE refunded_fen <> 0 AND id <= :wm"),
            {"wm": orders_wm},
        ).fetchall()
        _refunds = {
            "order_id": np.array([r[0] for r in rows], dtype=np.int64),
            "refunded_fen": np.array([r[1] for r in rows], dtype=np.int64),
        }
        con.execute("CREATE OR REPLACE TEMP TABLE _ref AS SELECT * FROM _refunds")
        set_new = con.execute(
            "UPDATE orders SET refunded_fen = r.refunded_fen FROM _ref AS r "
            "WHERE orders.order_id = r.order_id AND orders.refunded_fen <> r.refunded_fen RETURNING customer_id"
        ).fetchall()
        cleared = con.execute(
            "UPDATE orders SET refunded_fen = 0 WHERE refunded_fen <> 0 "
            "AND order_id NOT IN (SELECT order_id FROM _ref) RETURNING customer_id"
        ).fetchall()
        con.execute("DROP TABLE _ref")
        self._touched_buyers.update(int(r[0]) for r in set_new + cleared)
        report.refunds_resynced = len(set_new) + len(cleared)
        self._pending_refunded = _scalar_int(con, "SELECT coalesce(sum(refunded_fen), 0) FROM orders")

    def _bound(self, moment: datetime) -> Any:
        """A naive-UTC moment as the operational database compares it with its timestamp columns."""
        return moment.replace(tzinfo=UTC) if self._pg else moment.isoformat(" ", "microseconds")

    def _clv_marks(self) -> dict[str, int]:
        rows = self.engine.con.execute(
            "SELECT name, value FROM projection_state WHERE name LIKE ?", [_CLV_MARK + "%"]
        ).fetchall()
        return {str(k): int(v) for k, v in rows}

    def _project_values(
        self, src: Connection, wm: dict[str, int], report: ProjectionReport, *, full: bool
    ) -> None:
        """Carry CLV values written since the last refresh into ``customer_values``, per organization.

        The CLV job stamps ``clv_updated_at`` (not ``updated_at``) on every buyer in one run, so a run over
        400,000 buyers is read here once, by its organization's watermark, and never again; a run for one
        organization is one job at a time, so no overlap is needed.
        """
        orgs = [int(o) for o in src.execute(text("SELECT id FROM organizations")).scalars()]
        for org in orgs:
            key = f"{_CLV_MARK}{org}"
            newest = src.execute(
                text("SELECT max(clv_updated_at) FROM customers WHERE org_id = :o"), {"o": org}
            ).scalar()
            if newest is None:
                continue
            newest_us = (_to_naive_dt(newest) - _EPOCH) // timedelta(microseconds=1)
            if full or newest_us <= wm.get(key, 0):
                wm[key] = max(newest_us, 0 if full else wm.get(key, 0))
                continue  # a rebuild read the values with the profiles
            since = self._bound(_EPOCH + timedelta(microseconds=wm.get(key, 0)))
            rows = src.execute(
                text(
                    "SELECT id, clv_fen, p_alive, expected_purchases_365d FROM customers "
                    "WHERE org_id = :o AND clv_updated_at > :since AND merged_into_id IS NULL"
                ),
                {"o": org, "since": since},
            ).fetchall()
            _v = _columns(rows, ("customer_id", "clv_fen", "p_alive", "expected_purchases"))
            con = self.engine.con
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _val AS SELECT CAST(customer_id AS BIGINT) AS customer_id, "
                "CAST(clv_fen AS BIGINT) AS clv_fen, CAST(p_alive AS DOUBLE) AS p_alive, "
                "CAST(expected_purchases AS DOUBLE) AS expected_purchases FROM _v"
            )
            con.execute("DELETE FROM customer_values WHERE customer_id IN (SELECT customer_id FROM _val)")
            con.execute(
                f"INSERT INTO customer_values SELECT {org}, customer_id, clv_fen, p_alive, expected_purchases "
                "FROM _val WHERE clv_fen IS NOT NULL"
            )
            con.execute("DROP TABLE _val")
            report.values += len(rows)
            wm[key] = newest_us

    def _project_customers(
        self, src: Connection, wm: dict[str, int], report: ProjectionReport, *, full: bool
    ) -> None:
        """Re-project changed customers' dimensions and values; re-point rows of merged profiles."""
        cols = (
            "c.id, c.org_id, c.merged_into_id, c.source, c.stage, c.created_at, c.updated_at, "
            "c.clv_fen, c.p_alive, c.expected_purchases_365d, c.erased_at"
        )
        if full:
            customer_rows = src.execute(text(f"SELECT {cols} FROM customers AS c")).fetchall()
        else:
            # Rows committed since the last refresh were flushed after its start minus the overlap; an
            # older projection (no start recorded) goes by the newest row it saw.
            last = wm["customers_checked_us"] or wm["customers_updated_us"]
            since = _EPOCH + timedelta(microseconds=last) - _UPDATED_OVERLAP
            bound = self._bound(since)
            # The window by (id, updated_at) alone (index-only): rows projected at that updated_at within the
            # overlap are not read again, the others are read in full below.
            changed = [
                int(i)
                for i, at in _fetch_raw(
                    src, "SELECT id, updated_at FROM customers WHERE updated_at > :since", {"since": bound}
                )
                if self._recent.get(int(i)) != at
            ]
            known = set(changed)
            # No DISTINCT: with it SQLite walks the whole customer_id index (150 ms at a million follows)
            # instead of the id range of the new follows.
            for (cid,) in _fetch_raw(
                src, "SELECT customer_id FROM follow_relations WHERE id > :after", {"after": wm["follows_id"]}
            ):
                if int(cid) not in known:
                    known.add(int(cid))
                    changed.append(int(cid))
            customer_rows = []
            for i in range(0, len(changed), _IN_CHUNK):
                part = changed[i : i + _IN_CHUNK]
                marks = ", ".join(f":c{j}" for j in range(len(part)))
                customer_rows += src.execute(
                    text(f"SELECT {cols} FROM customers AS c WHERE c.id IN ({marks})"),
                    {f"c{j}": v for j, v in enumerate(part)},
                ).fetchall()
        wm["follows_id"] = max(
            wm["follows_id"],
            int(src.execute(text("SELECT coalesce(max(id), 0) FROM follow_relations")).scalar_one()),
        )
        if full:
            self._pending_recent = {}
        if not customer_rows:
            return
        # Never past our own clock: a profile stamped in the future (clock skew, imported data) would
        # otherwise push the watermark beyond every real update that follows.
        newest = min(max(_to_naive_dt(r[6]) for r in customer_rows), datetime.now(UTC).replace(tzinfo=None))
        wm["customers_updated_us"] = max(
            wm["customers_updated_us"], (newest - _EPOCH) // timedelta(microseconds=1)
        )
        horizon = datetime.now(UTC).replace(tzinfo=None) - _UPDATED_OVERLAP
        recent = {k: v for k, v in self._recent.items() if _to_naive_dt(v) > horizon}
        recent.update((int(r[0]), r[6]) for r in customer_rows if _to_naive_dt(r[6]) > horizon)
        self._pending_recent = recent  # adopted only once the DuckDB transaction commits

        ids = [int(r[0]) for r in customer_rows]
        follow_sql = (
            "SELECT f.customer_id, f.account_id, f.state, a.operator_id, {since} FROM follow_relations AS f "
            "JOIN accounts AS a ON a.id = f.account_id"
        ).format(since="f.since AT TIME ZONE 'UTC'" if self._pg else "f.since")
        if full:
            follows = src.execute(text(follow_sql)).fetchall()
        else:
            follows = []
            for i in range(0, len(ids), _IN_CHUNK):
                part = ids[i : i + _IN_CHUNK]
                marks = ", ".join(f":c{j}" for j in range(len(part)))
                follows += src.execute(
                    text(f"{follow_sql} WHERE f.customer_id IN ({marks})"),
                    {f"c{j}": v for j, v in enumerate(part)},
                ).fetchall()

        con = self.engine.con
        erased = [int(r[0]) for r in customer_rows if r[10] is not None]
        if erased and not full and self.with_events:
            self._reproject_erased_events(src, erased)
        _c = _columns(
            [
                (r[0], r[1], r[2], r[3], _enum_text(r[4]), _to_naive_dt(r[5]), r[7], r[8], r[9])
                for r in customer_rows
            ],
            (
                "id",
                "org_id",
                "merged_into_id",
                "source",
                "stage",
                "created_at",
                "clv_fen",
                "p_alive",
                "expected_purchases",
            ),
        )
        _c["created_at"] = _c["created_at"].astype("datetime64[us]")
        _f = _columns(
            [(r[0], r[1], r[2], r[3], _to_naive_dt(r[4])) for r in follows],
            ("customer_id", "account_id", "state", "operator_id", "since"),
        )
        _f["since"] = _f["since"].astype("datetime64[us]")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _chg AS SELECT CAST(id AS BIGINT) AS id, CAST(org_id AS BIGINT) AS org_id, "
            "CAST(merged_into_id AS BIGINT) AS merged_into_id, CAST(source AS VARCHAR) AS source, "
            "CAST(stage AS VARCHAR) AS stage, CAST(created_at AS TIMESTAMP) AS created_at, "
            "CAST(clv_fen AS BIGINT) AS clv_fen, CAST(p_alive AS DOUBLE) AS p_alive, "
            "CAST(expected_purchases AS DOUBLE) AS expected_purchases FROM _c"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _fol AS SELECT CAST(customer_id AS BIGINT) AS customer_id, "
            "CAST(account_id AS BIGINT) AS account_id, CAST(state AS VARCHAR) AS state, "
            "CAST(operator_id AS BIGINT) AS operator_id, CAST(since AS TIMESTAMP) AS since FROM _f"
        )
        if not full:
            con.execute("DELETE FROM customers WHERE customer_id IN (SELECT id FROM _chg)")
            con.execute("DELETE FROM customer_values WHERE customer_id IN (SELECT id FROM _chg)")
            merged = _scalar_int(con, "SELECT count(*) FROM _chg WHERE merged_into_id IS NOT NULL")
            if merged:
                # The operational merge moved these rows already; do the same here (idempotent).
                for t in ("events", "orders"):
                    con.execute(
                        f"UPDATE {t} SET customer_id = m.merged_into_id FROM _chg AS m "
                        f"WHERE {t}.customer_id = m.id AND m.merged_into_id IS NOT NULL"
                    )
                # Both sides of a merge: the survivor's totals now count the merged profile's orders.
                self._touched_buyers.update(
                    int(i)
                    for row in con.execute(
                        "SELECT id, merged_into_id FROM _chg WHERE merged_into_id IS NOT NULL"
                    ).fetchall()
                    for i in row
                )
                report.merged = int(merged)
        # First touch: the earliest follow relation names the account, its operator and the channel code.
        con.execute(
            "INSERT INTO customers SELECT c.org_id, c.id, c.source, f.channel, c.stage, f.account_id, f.operator_id, "
            "least(c.created_at, coalesce(f.first_since, c.created_at)) FROM _chg AS c LEFT JOIN ("
            "SELECT customer_id, arg_min(state, since) AS channel, arg_min(account_id, since) AS account_id, "
            "arg_min(operator_id, since) AS operator_id, min(since) AS first_since FROM _fol GROUP BY customer_id"
            ") AS f ON f.customer_id = c.id WHERE c.merged_into_id IS NULL"
        )
        con.execute(
            "INSERT INTO customer_values SELECT org_id, id, clv_fen, p_alive, expected_purchases FROM _chg "
            "WHERE merged_into_id IS NULL AND clv_fen IS NOT NULL"
        )
        report.customers = _scalar_int(con, "SELECT count(*) FROM _chg WHERE merged_into_id IS NULL")
        con.execute("DROP TABLE _chg")
        con.execute("DROP TABLE _fol")

    def _reproject_erased_events(self, src: Connection, customer_ids: list[int]) -> None:
        """Erased people: their projected events take the operational rows' scrubbed properties (the only
        in-place change to projected events; see customers/erasure.py)."""
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(customer_ids), _IN_CHUNK):
            part = customer_ids[i : i + _IN_CHUNK]
            marks = ", ".join(f":c{j}" for j in range(len(part)))
            rows += src.execute(
                text(f"SELECT CAST(properties AS TEXT), id FROM events WHERE customer_id IN ({marks})"),
                {f"c{j}": v for j, v in enumerate(part)},
            ).fetchall()
        if rows:
            self.engine.con.executemany(
                "UPDATE events SET properties = ? WHERE event_id = ?",
                [(p if p is not None else "{}", int(i)) for p, i in rows],
            )


class _Remembering:
    """An engine whose queries answer from (and fill) its projection's memo; see ``Projection.remembering``."""

    dialect: Dialect = "duckdb"

    def __init__(self, engine: DuckDBEngine, projection: Projection) -> None:
        self._engine = engine
        self._projection = projection

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a SELECT, from memory when the projection has not changed since it last ran."""
        return list(self._projection.memo(("sql", sql), lambda: tuple(self._engine.query(sql))))

    def create_schema(self) -> None:
        """Create the analytic tables if they do not exist."""
        self._engine.create_schema()

    def load(self, table: str, columns: Mapping[str, ColumnData]) -> int:
        """Not for a projection: its rows come from refreshes only."""
        raise TypeError("a projection is written by its refreshes only")

    def clear(self, table: str) -> None:
        """Not for a projection: rebuild it instead."""
        raise TypeError("a projection is written by its refreshes only")

    def close(self) -> None:
        """Nothing to release: the projection owns the engine."""


def _scalar_int(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """The integer an aggregate query without GROUP BY returns (always exactly one row)."""
    row = con.execute(sql).fetchone()
    assert row is not None, sql
    return int(row[0])


def _fetch_raw(conn: Connection, sql: str, params: dict[str, Any]) -> Sequence[Any]:
    """Run a SELECT through the DBAPI cursor: SQLAlchemy's Row objects cost more than the read on the hot path."""
    compiled = text(sql).compile(dialect=conn.dialect)
    args: Any = [params[k] for k in compiled.positiontup] if compiled.positional else params  # type: ignore[union-attr]
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return cursor.fetchall()
    finally:
        cursor.close()


def _enum_text(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def _to_naive_dt(value: Any) -> datetime:
    """A driver timestamp as a naive UTC datetime (SQLite returns SQLAlchemy's text format)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    raise TypeError(f"unexpected timestamp value {value!r}")


_projections: dict[tuple[str, str], Projection] = {}
_projections_lock = threading.Lock()


def projection_for(source: Engine, path: str | Path) -> Projection:
    """The process-wide Projection of one operational engine into one DuckDB file (DuckDB allows one writer)."""
    key = (source.url.render_as_string(hide_password=True), str(Path(path).resolve()))
    with _projections_lock:
        proj = _projections.get(key)
        if proj is None:
            proj = _projections[key] = Projection(source, path)
        return proj


def close_projections() -> None:
    """Close every cached projection (tests, shutdown)."""
    with _projections_lock:
        for proj in _projections.values():
            proj.close()
        _projections.clear()
