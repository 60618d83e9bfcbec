"""Background jobs of analytics: what runs after a bulk load, CLV nightly, planner statistics.

No console page or API request builds the projection from scratch or fits CLV: after a demo load,
an import or a sync the worker gathers statistics, brings the projection up to date and refits CLV
(``after_bulk_load``); every night it refits CLV for every organization with orders and gathers
statistics again, so the planner's picture follows the data's growth.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import duckdb
from huey import crontab
from sqlalchemy import Engine, select

from siyu.analytics.clv import CLVInputError
from siyu.analytics.clv_job import run_clv
from siyu.analytics.projection import Projection, default_path, projection_for
from siyu.commerce.models import Order
from siyu.kit.db import gather_statistics, make_sessionmaker, transaction
from siyu.kit.settings import Settings
from siyu.worker.queue import huey, sessions, settings

log = logging.getLogger(__name__)
# Rows an import or sync must write to count as bulk: fewer leave the statistics' picture as it was.
BULK_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class AfterLoadReport:
    """What the post-load job did and how long each part took."""

    analyze_seconds: float
    projection_seconds: float
    clv_buyers: int
    clv_seconds: float

    def __str__(self) -> str:
        return (
            f"ANALYZE {self.analyze_seconds:.1f}s, projection {self.projection_seconds:.1f}s, "
            f"CLV of {self.clv_buyers:,} buyers {self.clv_seconds:.1f}s"
        )


def _projection(engine: Engine, config: Settings) -> Projection:
    """This process's projection of the database, or a private in-memory one when another process
    (``siyu serve`` next to ``siyu worker``) holds the DuckDB file and keeps it fresh itself."""
    try:
        return projection_for(engine, default_path(config.data_dir))
    except duckdb.IOException:
        return Projection(engine, None, min_interval_seconds=0, with_events=False)


def refit_clv(engine: Engine, config: Settings, org_id: int) -> int:
    """Fit CLV for one organization and write it onto the profiles (committed); returns the buyers, 0 if
    the organization has too few orders to fit."""
    proj = _projection(engine, config)
    try:
        with transaction(make_sessionmaker(engine)) as db:
            report = run_clv(db, proj, org_id)
    except CLVInputError as exc:
        log.info("CLV skipped for organization %s: %s", org_id, exc.message)
        return 0
    if proj.path is not None:
        proj.refresh(force=True)
    return report.buyers


def after_bulk_load(engine: Engine, config: Settings, org_id: int) -> AfterLoadReport:
    """Statistics, the projection and CLV after a bulk write to one organization (demo, import, sync)."""
    analyze = gather_statistics(engine, vacuum=True)
    proj = _projection(engine, config)
    projection = proj.refresh(force=True).seconds
    started = time.perf_counter()
    buyers = refit_clv(engine, config, org_id)
    return AfterLoadReport(analyze, projection, buyers, time.perf_counter() - started)


@huey.task(name="analytics.after_bulk_load")
def after_bulk_load_task(org_id: int) -> str:
    """Run after_bulk_load in the worker (enqueued after the commit of a demo load, import or sync)."""
    engine = sessions().kw["bind"]
    return str(after_bulk_load(engine, settings(), org_id))


def after_bulk_write(engine: Engine, org_id: int, rows: int) -> bool:
    """After an import or a sync wrote ``rows`` rows (committed): for a bulk write, statistics now (a
    second at most) and the projection and CLV in the worker; True when it was bulk."""
    if rows < BULK_ROWS:
        return False
    gather_statistics(engine)
    after_bulk_load_task(org_id)
    return True


@huey.task(name="analytics.refit_clv")
def refit_clv_task(org_id: int) -> int:
    """Refit one organization's CLV in the worker (asked for from the CLV page)."""
    return refit_clv(sessions().kw["bind"], settings(), org_id)


@huey.periodic_task(crontab(hour="19", minute="10"), name="analytics.nightly_clv")
def nightly_clv() -> dict[int, int]:
    """Nightly (03:10 Asia/Shanghai): refit CLV for every organization with orders."""
    engine = sessions().kw["bind"]
    with sessions()() as db:
        orgs = list(db.scalars(select(Order.org_id).distinct()))
    return {org: refit_clv(engine, settings(), org) for org in orgs}


@huey.periodic_task(crontab(hour="*/6", minute="50"), name="analytics.gather_statistics")
def periodic_statistics() -> float:
    """Every six hours: ANALYZE, so plans follow the tables' growth between bulk loads."""
    return gather_statistics(sessions().kw["bind"])
