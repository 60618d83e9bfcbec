"""Engine, sessions and the declarative base shared by every domain package."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Engine, Integer, MetaData, Table, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from siyu.kit.clock import ensure_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for growth.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; siyu stores timezone-aware UTC only")
        value = ensure_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else ensure_utc(value)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so Alembic migrations are deterministic."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}

    if TYPE_CHECKING:
        # Every model is mapped to a plain Table (none to a join or a select), so Core statements and the
        # bulk helpers may take `Model.__table__` as the Table it is.
        __table__: ClassVar[Table]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the console read while imports write; NORMAL sync is safe with WAL and much faster.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the per-backend settings siyu relies on."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory; objects stay usable after commit so responses can be built from them."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error (services only flush)."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def json_mentions(column: Any, values: Any) -> Any:
    """A condition true where the JSON ``column``'s text contains any of ``values`` (as written, or as
    JSON escapes non-ASCII text), for finding raw payloads that name a person; false for no values."""
    import json

    from sqlalchemy import Text, cast, false, or_

    forms = {form for v in values if v for form in (v, json.dumps(v)[1:-1])}
    if not forms:
        return false()
    text = cast(column, Text)
    return or_(*(text.contains(form, autoescape=True) for form in sorted(forms)))


# Rows SQLite's ANALYZE reads per index: enough for the planner to tell a selective index from an
# unselective one, and it keeps ANALYZE of a multi-million-row database to about a second.
SQLITE_ANALYSIS_LIMIT = 2000


def gather_statistics(engine: Engine, *, vacuum: bool = False) -> float:
    """Refresh the planner's statistics (ANALYZE) on SQLite or PostgreSQL; returns the seconds taken.

    Without them a freshly bulk-loaded table looks empty to the planner: PostgreSQL then nests loops
    over "one" customer row and SQLite walks the organization index instead of a selective one.
    ``vacuum`` (PostgreSQL; for the worker after a bulk load): VACUUM too, which marks the new pages
    all-visible, so index-only scans stop visiting the table for every row until autovacuum gets there.
    """
    started = time.perf_counter()
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    else:
        # ANALYZE cannot run inside a transaction block on every server version: use autocommit.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)" if vacuum else "ANALYZE")
    return time.perf_counter() - started
