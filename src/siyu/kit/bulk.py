"""Bulk-write plumbing shared by the importers and the batch APIs: reports, dialect-aware inserts, CSV.

Set-based writes keep imports and event batches fast on SQLite and PostgreSQL alike; the helpers
here know each dialect's "insert, ignore conflicts" and how to insert many rows and get their ids.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field
from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Insert,
    Table,
    any_,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

from siyu.kit.db import make_sessionmaker
from siyu.kit.errors import Invalid

Progress = Callable[[int, int | None], None]
IN_LIST_SIZE = 2000  # well under SQLite's 32,766 bound parameters, and keeps PostgreSQL plans cheap
SQLITE_MAX_PARAMS = 32_766  # SQLite's default bound-parameter limit since 3.32
ROWS_PER_STATEMENT = 2_500  # on SQLite the parameter limit binds first


class RowError(BaseModel):
    """Why one CSV row was skipped (row numbers as a spreadsheet shows them: the header is row 1)."""

    row: int
    field: str | None = None
    reason: str


class ImportReport(BaseModel):
    """What an import did: rows read, profiles created/updated, rows skipped and why."""

    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = Field(default=0, description="Customers merged into another because a row linked them.")
    customers_created: int = Field(default=0, description="Order imports: buyers not known before.")
    skipped: int = 0
    strict: bool = False
    ignored_columns: list[str] = Field(default_factory=list)
    errors: list[RowError] = Field(default_factory=list)


class RowInvalid(Exception):
    """A bad cell; the row is skipped and reported."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def insert_ignore(db: Session, table: Table, conflict: Sequence[str]) -> Insert:
    """INSERT ... ON CONFLICT (conflict) DO NOTHING for the session's backend (SQLite or PostgreSQL)."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    raise NotImplementedError(f"no ON CONFLICT support for {dialect}")


@functools.cache
def pg_unnest_insert(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
) -> str:
    """PostgreSQL: ``INSERT INTO table (columns) SELECT * FROM unnest(one array per column)``, with
    ``ON CONFLICT (conflict) DO NOTHING`` and ``RETURNING`` when given, as fixed SQL text.

    The parameters are named after the columns, each a list of driver values. The text does not depend
    on the number of rows (multi-row VALUES does), so psycopg prepares it once per connection and the
    driver adapts one array per column instead of every row; the casts take the model's column types."""
    quote = dialect.identifier_preparer.quote
    arrays = ", ".join(
        f"CAST(%({name})s AS {table.c[name].type.compile(dialect=dialect)}[])" for name in columns
    )
    names = ", ".join(quote(n) for n in columns)
    sql = f"INSERT INTO {quote(table.name)} ({names}) SELECT * FROM unnest({arrays})"
    if conflict:
        sql += f" ON CONFLICT ({', '.join(quote(n) for n in conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(n) for n in returning)}"
    return sql


def delete_in_batches(
    factory: sessionmaker[Session], table: Table, condition: ColumnElement[bool], batch: int = 10_000
) -> int:
    """Delete the rows of ``table`` matching ``condition``, lowest id first, ``batch`` rows per transaction;
    returns how many were deleted. Short transactions keep locks short however much has piled up."""
    oldest = select(table.c.id).where(condition).order_by(table.c.id).limit(batch)
    deleted = 0
    while True:
        with factory.begin() as db:
            done = int(db.execute(delete(table).where(table.c.id.in_(oldest))).rowcount)  # type: ignore[attr-defined]
        deleted += done
        if done < batch:
            return deleted


def driver_datetime(db: Session) -> Callable[[datetime], Any]:
    """A converter of aware datetimes to what the DB driver stores, for ``executemany_raw``.

    SQLite gets SQLAlchemy's own text format for naive UTC (so ordering and reads match ORM-written rows);
    PostgreSQL's driver takes aware datetimes as they are.
    """
    if db.get_bind().dialect.name == "sqlite":
        return _sqlite_datetime
    return lambda value: value


_NO_OFFSET = timedelta(0)


def _sqlite_datetime(value: datetime) -> str:
    # Naive UTC in SQLAlchemy's format, "YYYY-MM-DD HH:MM:SS.ffffff"; a datetime already in UTC needs no
    # astimezone: its "+00:00" is cut off instead. Bulk writers call this a few hundred thousand times per
    # sync. Pydantic parses "Z" and "+00:00" to its own UTC tzinfo, not ``UTC``: its offset says so.
    if value.tzinfo is UTC or value.utcoffset() == _NO_OFFSET:
        return value.isoformat(" ", "microseconds")[:26]
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def executemany_raw(db: Session, stmt: Any, rows: Sequence[dict[str, Any]]) -> int:
    """Run one INSERT/UPDATE for many rows straight through the driver's executemany.

    SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself on the bulk paths,
    so rows must already hold driver values: plain str for enums, ``driver_datetime`` for datetimes.
    Returns the driver's row count (on SQLite the sum over all rows).
    """
    if not rows:
        return 0
    conn = db.connection()
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(rows[0]), for_executemany=True)
    if compiled.positional:
        pick = itemgetter(*compiled.positiontup)
        params: Any = (
            [pick(row) for row in rows] if len(compiled.positiontup) > 1 else [(pick(row),) for row in rows]
        )
    else:
        params = list(rows)
    return int(conn.exec_driver_sql(str(compiled), params).rowcount)


def insert_rows(db: Session, table: Table, rows: list[dict[str, Any]], conflict: Sequence[str] = ()) -> int:
    """Insert many rows (already in driver values, as for ``executemany_raw``), ignoring conflicts on
    ``conflict`` when given; returns how many rows were inserted.

    SQLite: one multi-row VALUES statement per few thousand rows. Why not executemany: a bulk writer often
    runs beside threads that parse JSON (the WeCom sync's page fetchers), and Python's sqlite3 releases
    and re-takes the GIL around every row of an executemany; with another thread busy each re-take can
    wait a whole switch interval (5 ms), so 100,000 rows took ~18 s instead of ~1.3 s. One statement per
    few hundred rows pays that hand-over a few hundred times less often.
    PostgreSQL: COPY, with conflicts through a staging table (see ``_insert_pg``; SQLAlchemy's
    insertmanyvalues and psycopg's executemany had the driver parse huge statements or adapt row by row,
    which cost more than the server's own work).
    """
    return _insert(db, table, rows, conflict, ())[0]


def insert_rows_returning(
    db: Session, table: Table, rows: list[dict[str, Any]], conflict: Sequence[str], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``insert_rows`` that also says which rows went in: the ``returning`` columns of each inserted row
    (rows skipped for a conflict are absent). For writers that record an event per new row."""
    return _insert(db, table, rows, conflict, returning)[1]


def _insert(
    db: Session,
    table: Table,
    rows: list[dict[str, Any]],
    conflict: Sequence[str],
    returning: Sequence[str],
) -> tuple[int, list[tuple[Any, ...]]]:
    if not rows:
        return 0, []
    conn = db.connection()
    keys = list(rows[0])
    if conn.dialect.name == "postgresql":
        return _insert_pg(conn, table, keys, rows, conflict, returning)
    stmt = insert_ignore(db, table, conflict) if conflict else table.insert()
    compiled = stmt.compile(dialect=conn.dialect, column_keys=keys)
    sql = str(compiled)
    group = "(" + ", ".join(["?"] * len(keys)) + ")"
    order = list(compiled.positiontup or [])
    if (
        conn.dialect.name != "sqlite" or sql.count(f"VALUES {group}") != 1 or sorted(order) != sorted(keys)
    ):  # a backend or a shape we do not rewrite: stay correct, if slower
        if returning:
            got = [tuple(r) for r in db.execute(stmt.returning(*(table.c[c] for c in returning)), rows)]
            return len(got), got
        return executemany_raw(db, stmt, rows), []
    head, tail = sql.split(f"VALUES {group}")
    if returning:
        quote = conn.dialect.identifier_preparer.quote
        tail += f" RETURNING {', '.join(quote(c) for c in returning)}"
    per = max(1, min(ROWS_PER_STATEMENT, SQLITE_MAX_PARAMS // len(keys)))
    pick = itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],))
    total = 0
    back: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        params = tuple(chain.from_iterable(map(pick, part)))
        result = conn.exec_driver_sql(f"{head}VALUES {', '.join([group] * len(part))}{tail}", params)
        if returning:
            some = [tuple(r) for r in result]
            back.extend(some)
            total += len(some)
        else:
            total += int(result.rowcount)
    return total, back


def _insert_pg(
    conn: Connection,
    table: Table,
    keys: list[str],
    rows: list[dict[str, Any]],
    conflict: Sequence[str],
    returning: Sequence[str],
) -> tuple[int, list[tuple[Any, ...]]]:
    """PostgreSQL: COPY when no conflict can arise and nothing is asked back, else COPY into a temporary
    staging table and one INSERT ... SELECT ... [ON CONFLICT DO NOTHING] [RETURNING] from it.

    Why COPY: psycopg adapts a row of COPY in C, while the arrays of an ``unnest`` insert went through its
    Python list dumper (~3 s for a 100,000-contact sync); the server also parses COPY's text faster than
    array literals. The staging table has the columns' types but no constraints or indexes, lives only in
    this session and is dropped right after.
    """
    quote = conn.dialect.identifier_preparer.quote
    cols = ", ".join(quote(k) for k in keys)
    target = quote(table.name)
    with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        if not conflict and not returning:
            _copy_rows(cur, target, cols, keys, rows)
            return len(rows), []
        stage = quote(f"siyu_stage_{table.name}")
        cur.execute(
            f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {target} WITH NO DATA"
        )
        _copy_rows(cur, stage, cols, keys, rows)
        # In the order given (ctid: where COPY put each row), so new ids follow the input.
        sql = f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} ORDER BY ctid"
        if conflict:
            sql += f" ON CONFLICT ({', '.join(quote(k) for k in conflict)}) DO NOTHING"
        if returning:
            sql += f" RETURNING {', '.join(quote(c) for c in returning)}"
        cur.execute(sql)
        back = [tuple(r) for r in cur.fetchall()] if returning else []
        inserted = len(back) if returning else int(cur.rowcount)
        # On an error the rollback removes the table with the rest; dropped at once, the next call of
        # this transaction can create it again.
        cur.execute(f"DROP TABLE {stage}")
        return inserted, back


def _copy_rows(cur: Any, target: str, cols: str, keys: list[str], rows: list[dict[str, Any]]) -> None:
    pick = itemgetter(*keys) if len(keys) > 1 else (lambda row: (row[keys[0]],))
    with cur.copy(f"COPY {target} ({cols}) FROM STDIN") as copy:
        for row in map(pick, rows):
            copy.write_row(row)


def insert_returning_ids(db: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows (in driver values) and return their new ids in the order given.

    PostgreSQL: the ids are drawn from the table's sequence first and COPied with the rows. SQLite cannot
    promise RETURNING order for multi-row inserts; our transaction holds SQLite's only write lock from its
    first write until commit, and a rowid table gives each new row max(rowid)+1, so the new ids are
    consecutive and end at max(id).
    """
    if not rows:
        return []
    conn = db.connection()
    if conn.dialect.name == "postgresql":
        seq = conn.exec_driver_sql("SELECT pg_get_serial_sequence(%(t)s, 'id')", {"t": table.name}).scalar()
        if seq:
            ids = [
                int(i)
                for i in conn.exec_driver_sql(
                    "SELECT nextval(%(s)s) FROM generate_series(1, %(n)s)", {"s": seq, "n": len(rows)}
                ).scalars()
            ]
            insert_rows(db, table, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
            return ids
    if conn.dialect.name != "sqlite":
        return list(db.scalars(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows))
    insert_rows(db, table, rows)
    last = int(db.scalar(select(func.max(table.c.id))) or 0)
    return list(range(last - len(rows) + 1, last + 1))


def one_of(
    db: Session | Connection, column: ColumnElement[Any] | QueryableAttribute[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(%(array)s)``, one array parameter.

    An expanding IN renders one placeholder per value, so every list length is a new statement: SQLAlchemy
    compiles it again, psycopg re-parses text too long for its cache (2,000 placeholders), and that was
    a third of the callback drain's CPU. The array form is one statement text for any length."""
    dialect = db.get_bind().dialect if isinstance(db, Session) else db.dialect
    return _one_of(dialect.name, column, None, {"value": list(values)})


def one_of_param(
    dialect: str, column: ColumnElement[Any] | QueryableAttribute[Any], name: str
) -> ColumnElement[bool]:
    """``one_of`` in a statement built once, the list given at execution as the parameter ``name``."""
    return _one_of(dialect, column, name, {})


def _one_of(
    dialect: str,
    column: ColumnElement[Any] | QueryableAttribute[Any],
    key: str | None,
    value: dict[str, Any],
) -> ColumnElement[bool]:
    col = column.expression if isinstance(column, QueryableAttribute) else column
    if dialect == "postgresql":
        return col == any_(bindparam(key, type_=postgresql.ARRAY(col.type), **value))
    return col.in_(bindparam(key, expanding=True, **value))


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_sessionmaker(target: sessionmaker[Session] | Engine) -> sessionmaker[Session]:
    """Accept an engine or a session factory: imports open one transaction per chunk themselves."""
    return make_sessionmaker(target) if isinstance(target, Engine) else target


def _sniff_encoding(head: bytes) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=False)  # a multi-byte character cut at the edge is not an error
    except UnicodeDecodeError:
        return "gb18030"  # a superset of GBK, which Excel and Taobao use for Chinese CSV
    return "utf-8-sig"


def _check_decodes(stream: BinaryIO, encoding: str) -> int:
    """Decode the whole stream once before any row is parsed (and so before any is stored); returns its
    newline count. A bad byte is reported by its line: decoding during parsing ran ahead of the CSV reader
    (8 KB blocks), so the error named the wrong row, after the chunks before it had been committed."""
    decoder = codecs.getincrementaldecoder(encoding)()
    newlines = 0
    while block := stream.read(1 << 20):
        try:
            decoder.decode(block, final=False)
        except UnicodeDecodeError as exc:
            pending = len(exc.object) - len(block)  # a character cut at the previous block's edge
            line = newlines + block[: max(exc.start - pending, 0)].count(b"\n") + 1
            raise Invalid(
                f"row {line}: bytes that are neither UTF-8 nor GBK; nothing was imported", field="file"
            ) from None
        newlines += block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise Invalid(
            f"row {newlines + 1}: the file ends inside a character; nothing was imported", field="file"
        ) from None
    return newlines


@dataclass
class CsvSource:
    """An opened CSV: trimmed header, row iterator (row number, cells) and an estimate of data rows."""

    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    total: int | None
    encoding: str


def open_csv(source: str | Path | BinaryIO | bytes, encoding: str | None = None) -> CsvSource:
    """Open a CSV path, bytes or binary stream, detecting UTF-8 vs GBK, with header cells trimmed."""
    if isinstance(source, bytes):
        stream: BinaryIO = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        stream = open(source, "rb")  # noqa: SIM115 - closed when the row iterator is exhausted
    else:
        stream = source if source.seekable() else io.BytesIO(source.read())
    start = stream.tell()
    head = stream.read(1 << 16)
    enc = encoding or _sniff_encoding(head)
    stream.seek(start)
    try:
        newlines = _check_decodes(stream, enc)
    except Invalid:
        if isinstance(source, (str, Path)):
            stream.close()
        raise
    stream.seek(start)
    text = io.TextIOWrapper(stream, encoding=enc, newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        raise Invalid("the file is empty: it needs a header row", field="file") from None
    except UnicodeDecodeError:
        raise Invalid("the file is neither UTF-8 nor GBK text", field="file") from None
    header = [h.strip().lstrip("\ufeff").strip() for h in header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 1
        try:
            for cells in reader:
                number += 1
                if not any(c.strip() for c in cells):
                    continue  # blank lines (common at the end of exports) are not rows
                yield number, cells
        except UnicodeDecodeError:
            raise Invalid(f"row {number + 1}: bytes that are neither UTF-8 nor GBK", field="file") from None
        except csv.Error as exc:
            raise Invalid(f"row {number + 1}: malformed CSV ({exc})", field="file") from None
        finally:
            text.detach()
            if isinstance(source, (str, Path)):
                stream.close()

    return CsvSource(header, rows(), max(newlines - 1, 0), enc)
