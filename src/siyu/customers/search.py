"""Indexed substring search over customers' names and remarks, per database.

SQLite: an FTS5 table with the trigram tokenizer (``customers_search``), external-content over
``customers`` and kept equal to it by triggers, so every writer (single-row, bulk, the demo loader)
feeds it without knowing. PostgreSQL: ``pg_trgm`` GIN indexes on ``name`` and ``remark``, which
serve ``LIKE '%…%'`` directly. Both only help from three characters on (a trigram). Two characters
(a given name, most Chinese searches) have their own GIN indexes on PostgreSQL: over each text's
bigrams (``siyu_bigrams``), the pattern's bigram found by containment and rechecked by the same LIKE.
Anything shorter, and two characters on SQLite, is matched by a scan that walks the newest customers
first and stops at a page (a rare pair reads the whole organization: seconds at a million customers).

Migrations 0008 and 0019 create these objects; they are not in the models' metadata (neither backend's
SQLAlchemy dialect describes them), so the schema comparison and autogenerate skip them by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, cast, func, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.types import Text

from siyu.customers.models import Customer

SEARCH_TABLE = "customers_search"
TRGM_INDEXES = ("ix_customers_name_trgm", "ix_customers_remark_trgm")
MIN_INDEXED_CHARS = 3

SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5("
    "name, remark, content='customers', content_rowid='id', tokenize='trigram')",
    f"CREATE TRIGGER {SEARCH_TABLE}_ai AFTER INSERT ON customers BEGIN "
    f"INSERT INTO {SEARCH_TABLE}(rowid, name, remark) VALUES (new.id, new.name, new.remark); END",
    f"CREATE TRIGGER {SEARCH_TABLE}_ad AFTER DELETE ON customers BEGIN "
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, name, remark) "
    "VALUES ('delete', old.id, old.name, old.remark); END",
    f"CREATE TRIGGER {SEARCH_TABLE}_au AFTER UPDATE OF name, remark ON customers BEGIN "
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}, rowid, name, remark) "
    "VALUES ('delete', old.id, old.name, old.remark); "
    f"INSERT INTO {SEARCH_TABLE}(rowid, name, remark) VALUES (new.id, new.name, new.remark); END",
    f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('rebuild')",
)
_SQLITE_INSERT_TRIGGER, _SQLITE_DELETE_TRIGGER = SQLITE_DDL[1], SQLITE_DDL[2]
SQLITE_DROP = (
    f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_ai",
    f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_ad",
    f"DROP TRIGGER IF EXISTS {SEARCH_TABLE}_au",
    f"DROP TABLE IF EXISTS {SEARCH_TABLE}",
)
POSTGRESQL_DDL = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX {TRGM_INDEXES[0]} ON customers USING gin (name gin_trgm_ops)",
    f"CREATE INDEX {TRGM_INDEXES[1]} ON customers USING gin (remark gin_trgm_ops)",
)
POSTGRESQL_DROP = tuple(f"DROP INDEX IF EXISTS {name}" for name in TRGM_INDEXES)
BIGRAM_FUNCTION = "siyu_bigrams"
BIGRAM_INDEXES = ("ix_customers_name_bigrams", "ix_customers_remark_bigrams")
BIGRAM_CHARS = 2
POSTGRESQL_BIGRAM_DDL = (
    # IMMUTABLE (a pure function of its text) so that it may index; STRICT: NULL in, NULL out.
    f"CREATE FUNCTION {BIGRAM_FUNCTION}(t text) RETURNS text[] LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
    "AS $$ SELECT coalesce(array_agg(DISTINCT substr(t, i, 2)), '{}') "
    "FROM generate_series(1, char_length(t) - 1) AS i $$",
    f"CREATE INDEX {BIGRAM_INDEXES[0]} ON customers USING gin ({BIGRAM_FUNCTION}(name))",
    f"CREATE INDEX {BIGRAM_INDEXES[1]} ON customers USING gin ({BIGRAM_FUNCTION}(remark))",
)
POSTGRESQL_BIGRAM_DROP = (
    *(f"DROP INDEX IF EXISTS {name}" for name in BIGRAM_INDEXES),
    f"DROP FUNCTION IF EXISTS {BIGRAM_FUNCTION}(text)",
)


def is_search_object(name: str | None) -> bool:
    """Whether a schema object belongs to the search index (the FTS5 table and its shadow tables, the
    trigram indexes): kept out of the model comparison."""
    return bool(name) and (
        str(name).startswith(SEARCH_TABLE) or name in TRGM_INDEXES or name in BIGRAM_INDEXES
    )


@contextmanager
def indexed_after_insert(conn: Connection, first_id: int) -> Iterator[None]:
    """Customers inserted inside (ids from ``first_id`` on) enter the SQLite search index in one statement
    at the end, instead of through the per-row trigger (ten times slower: 20,000 rows took 11 s, not 1 s).

    Must run inside the caller's transaction: the trigger is dropped and recreated in it, so a failure
    rolls both back and no other writer ever sees the table without it. A no-op on PostgreSQL.
    """
    sqlite = conn.dialect.name == "sqlite" and bool(
        conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?", (f"{SEARCH_TABLE}_ai",)
        ).scalar()
    )
    if not sqlite:
        yield
        return
    conn.exec_driver_sql(f"DROP TRIGGER {SEARCH_TABLE}_ai")
    yield
    conn.exec_driver_sql(
        f"INSERT INTO {SEARCH_TABLE}(rowid, name, remark) SELECT id, name, remark FROM customers WHERE id >= ?",
        (first_id,),
    )
    conn.exec_driver_sql(_SQLITE_INSERT_TRIGGER)


@contextmanager
def rebuilt_after_delete(conn: Connection) -> Iterator[None]:
    """Customers deleted inside leave the SQLite search index by one rebuild at the end instead of one
    'delete' per row (deleting a whole demo brand). Inside the caller's transaction; a no-op on PostgreSQL."""
    sqlite = conn.dialect.name == "sqlite" and bool(
        conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?", (f"{SEARCH_TABLE}_ad",)
        ).scalar()
    )
    if not sqlite:
        yield
        return
    conn.exec_driver_sql(f"DROP TRIGGER {SEARCH_TABLE}_ad")
    yield
    conn.exec_driver_sql(f"INSERT INTO {SEARCH_TABLE}({SEARCH_TABLE}) VALUES ('rebuild')")
    conn.exec_driver_sql(_SQLITE_DELETE_TRIGGER)


def served_by_index(value: str) -> bool:
    """Whether a search for ``value`` reads the index (else it scans: fine for one page, not for a count)."""
    return len(value) >= MIN_INDEXED_CHARS


def _fts_phrase(value: str) -> str:
    """The text as one FTS5 phrase (double quotes doubled), so operators and punctuation match literally."""
    return '"' + value.replace('"', '""') + '"'


def contains_text(dialect: str, value: str, *, remark: bool = True) -> ColumnElement[bool]:
    """Customers whose name (or remark) contains ``value``, through the search index when it can serve it."""
    if dialect == "sqlite" and served_by_index(value):
        # The whole table matches name or remark; its column name restricts the phrase to names.
        column, param = (SEARCH_TABLE, "search_text") if remark else (f"{SEARCH_TABLE}.name", "search_name")
        hits: Any = (
            select(literal_column("rowid"))
            .select_from(text(SEARCH_TABLE))
            .where(text(f"{column} MATCH :{param}").bindparams(**{param: _fts_phrase(value)}))
        )
        return Customer.id.in_(hits)
    columns = [Customer.name, Customer.remark] if remark else [Customer.name]
    if dialect == "postgresql" and len(value) == BIGRAM_CHARS:
        # The bigram index finds the candidates; the LIKE keeps the answer exactly the scan's.
        return or_(
            *(
                and_(
                    func.siyu_bigrams(c, type_=ARRAY(Text)).contains(cast(array([value]), ARRAY(Text))),
                    c.contains(value, autoescape=True),
                )
                for c in columns
            )
        )
    return or_(*(c.contains(value, autoescape=True) for c in columns))
