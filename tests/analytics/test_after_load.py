"""After a bulk load the worker gathers statistics, projects and fits CLV; CLV values reach the
projection once, by their own watermark, without making every refresh re-read every buyer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.orm import Session

from siyu.analytics import tasks
from siyu.analytics.projection import close_projections, default_path, projection_for
from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.demo import generate_world
from siyu.demo.loader import LoadSummary, load_world
from siyu.kit.settings import Settings
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal
from siyu.web import queries


@pytest.fixture
def loaded(engine: Engine, tmp_path: Path) -> Iterator[tuple[LoadSummary, Settings]]:
    # Ending now, so the dashboard's last 30 days hold orders.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    summary = load_world(engine, generate_world(customers=400, seed=3, end=end))
    yield summary, Settings(data_dir=tmp_path / "var", secret_key="test-secret-key")
    close_projections()


def _analysed(engine: Engine) -> bool:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return bool(conn.scalar(text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'customers'")))
        return bool(
            conn.scalar(
                text(
                    "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL "
                    "FROM pg_stat_user_tables WHERE relname = 'events'"
                )
            )
        )


def _server_now(engine: Engine) -> object:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT now()")) if engine.dialect.name == "postgresql" else None


@pytest.mark.slow
def test_after_bulk_load_analyses_projects_and_fits(engine: Engine, db: Session, loaded) -> None:  # type: ignore[no-untyped-def]
    summary, settings = loaded
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS sqlite_stat1"))
    updated_before = db.scalar(select(func.max(Customer.updated_at)).where(Customer.org_id == summary.org_id))
    started = _server_now(engine)
    report = tasks.after_bulk_load(engine, settings, summary.org_id)
    assert _analysed(engine)
    if engine.dialect.name == "postgresql":  # vacuumed too: the loaded pages are all-visible
        with engine.connect() as conn:
            vacuumed = conn.scalar(
                text("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'customers'")
            )
        assert vacuumed is not None and vacuumed >= started
    assert report.clv_buyers > 0
    buyers = db.scalar(
        select(func.count()).where(Customer.org_id == summary.org_id, Customer.clv_fen.is_not(None))
    )
    proj = projection_for(engine, default_path(settings.data_dir))
    with proj.locked(refresh=False) as eng:
        (values,) = eng.query(f"SELECT count(*) FROM customer_values WHERE org_id = {summary.org_id}")
        (projected,) = eng.query(f"SELECT count(*) FROM customers WHERE org_id = {summary.org_id}")
    assert values[0] == buyers and projected[0] == summary.counts["customers"]
    # The fit wrote values, not profile changes: updated_at did not move.
    db.expire_all()
    assert (
        db.scalar(select(func.max(Customer.updated_at)).where(Customer.org_id == summary.org_id))
        == updated_before
    )


@pytest.mark.slow
def test_a_refit_reaches_the_projection_once(engine: Engine, db: Session, loaded) -> None:  # type: ignore[no-untyped-def]
    summary, settings = loaded
    tasks.after_bulk_load(engine, settings, summary.org_id)
    proj = projection_for(engine, default_path(settings.data_dir))
    proj.refresh(force=True)
    seen: list[str] = []

    def watch(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    # refit_clv refreshes the projection itself; the next refreshes find nothing to re-read.
    with db.begin():
        db.execute(text("UPDATE customers SET clv_fen = NULL, clv_updated_at = NULL"))
    tasks.refit_clv(engine, settings, summary.org_id)
    event.listen(engine, "before_cursor_execute", watch)
    try:
        again = proj.refresh(force=True)
        once_more = proj.refresh(force=True)
    finally:
        event.remove(engine, "before_cursor_execute", watch)
    assert again.customers == 0 and again.values == 0
    assert once_more.customers == 0 and once_more.values == 0
    with proj.locked(refresh=False) as eng:
        (values,) = eng.query(f"SELECT count(*) FROM customer_values WHERE org_id = {summary.org_id}")
    assert values[0] == db.scalar(
        select(func.count()).where(Customer.org_id == summary.org_id, Customer.clv_fen.is_not(None))
    )
    assert seen  # the refreshes did read the operational database (watermarks), just no rows


@pytest.mark.slow
def test_dashboard_counts_from_the_projection_equal_the_database(engine: Engine, db: Session, loaded) -> None:  # type: ignore[no-untyped-def]
    summary, settings = loaded
    tasks.after_bulk_load(engine, settings, summary.org_id)
    admin_id = db.scalar(
        text("SELECT id FROM users WHERE org_id = :o AND role = 'admin'"), {"o": summary.org_id}
    )
    admin = Principal(summary.org_id, int(admin_id), Role.admin)
    in_db = queries.headline(db, admin)
    with projection_for(engine, default_path(settings.data_dir)).locked() as eng:
        projected = queries.headline(db, admin, projection=eng)
        chart = queries.added_per_day(db, admin, projection=eng)
    assert in_db.orders_30d > 0
    for name in ("customers", "converted", "orders_30d", "gmv_30d_fen", "accounts", "friends"):
        assert getattr(projected, name) == getattr(in_db, name), name
    assert sum(chart.totals) <= projected.customers and sum(chart.totals) > 0
    recent_orders = db.scalar(select(func.count()).where(Order.org_id == summary.org_id))
    assert recent_orders >= projected.orders_30d


def test_lists_walk_an_index_newest_first(engine: Engine, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    """The keyset lists read ``ORDER BY id DESC`` off an (org_id, id) index, never sorting the organization."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the plan text checked is SQLite's")
    for table in ("events", "customers", "orders"):
        with engine.connect() as conn:
            plan = " | ".join(
                str(r[-1])
                for r in conn.execute(
                    text(
                        f"EXPLAIN QUERY PLAN SELECT * FROM {table} WHERE org_id = 1 ORDER BY id DESC LIMIT 101"
                    )
                )
            )
        assert "TEMP B-TREE" not in plan, (table, plan)
        assert f"ix_{table}_org_id" in plan, (table, plan)
