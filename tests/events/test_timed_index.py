"""Only the types read over a time range enter the (org, type, time) index, and those reads use it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, literal_column, select, text

from siyu.events.models import TIMED_TYPES, Event, of_timed_type

INDEX = "ix_events_timed_type_occurred_at"


def _plan(engine: Engine, type_: str) -> str:
    # One type since a day, the shape of account health's complaints and the dashboard's counts. The
    # other values are written in so that the statement is the whole of what EXPLAIN reads.
    stmt = (
        select(Event.account_id, func.count())
        .where(
            Event.org_id == literal_column("1"),
            of_timed_type(type_),
            Event.occurred_at >= literal_column("'2026-01-01 00:00:00'"),
        )
        .group_by(Event.account_id)
    )
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        # On a test database PostgreSQL's choice between indexes follows whatever statistics earlier tests
        # left; the question is whether it *can* read the partial one (a bound type could not). So, in a
        # transaction rolled back, the other events indexes go and a whole-table read is discouraged.
        others = conn.execute(
            text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'events' "
                "AND indexname <> :keep AND indexdef NOT LIKE 'CREATE UNIQUE%'"
            ),
            {"keep": INDEX},
        ).scalars()
        for name in list(others):
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
        conn.rollback()
        return plan


@pytest.mark.parametrize("type_", TIMED_TYPES)
def test_a_timed_type_over_a_time_range_reads_the_partial_index(engine: Engine, type_: str) -> None:
    assert INDEX in _plan(engine, type_)


def test_a_type_outside_the_index_is_refused_rather_than_read_by_scanning() -> None:
    with pytest.raises(ValueError, match="not in TIMED_TYPES"):
        of_timed_type("message_received")
