"""The CLV job: fit BG/NBD + Gamma-Gamma on projected orders and write the results onto customer profiles.

Input: the organization's projected orders paid up to ``as_of`` (net of refunds, fen), summarised
per customer by calendar day in local time (:func:`siyu.analytics.clv.rfm_summary`, days as the
time unit). Output per buyer, written to ``customers`` in the operational database with a
set-based UPDATE per chunk: ``expected_purchases_365d`` (expected purchases over the horizon,
12 months = 365.25 days by default), ``p_alive``, ``clv_fen`` (discounted CLV over the horizon) and
``clv_updated_at``, which the next projection refresh follows to carry the values into the
``customer_values`` table that ROI and the CLV histogram read. ``updated_at`` stays: the profile did
not change, and moving it on every buyer made each refresh re-read them all. Customers without orders keep
NULL: the models say nothing about people who never bought.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from siyu.analytics.clv import CLVInputError, customer_value_arrays, fit_clv, rfm_summary
from siyu.analytics.funnels import sql_timestamp
from siyu.analytics.projection import Projection
from siyu.customers.models import Customer
from siyu.kit.bulk import chunked, driver_datetime, executemany_raw
from siyu.kit.clock import ensure_utc, utcnow

WRITE_CHUNK = 5_000
CUSTOMERS = Customer.__table__


@dataclass(frozen=True, slots=True)
class CLVJobReport:
    """What a CLV run fitted and wrote."""

    org_id: int
    buyers: int
    repeat_buyers: int
    written: int
    bgnbd: dict[str, float]
    gamma_gamma: dict[str, float]
    converged: bool
    total_clv_fen: int


def run_clv(
    db: Session,
    projection: Projection,
    org_id: int,
    *,
    as_of: datetime | None = None,
    horizon_months: int = 12,
    monthly_discount_rate: float = 0.01,
    utc_offset_hours: float = 8.0,
) -> CLVJobReport:
    """Fit the models on one organization's orders and write each buyer's values (flushes, never commits)."""
    as_of = ensure_utc(as_of) if as_of is not None else utcnow()
    rows = projection.query(
        "SELECT customer_id, epoch_us(paid_at), greatest(amount_fen - refunded_fen, 0) FROM orders "
        f"WHERE org_id = {int(org_id)} AND paid_at <= {sql_timestamp(as_of)}",
        refresh=True,
    )
    if not rows:
        raise CLVInputError("this organization has no orders to fit a CLV model on", field="orders")
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    times = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)).astype("datetime64[us]")
    amounts = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
    summary = rfm_summary(
        ids,
        times,
        amounts,
        observation_end=as_of,
        period_days=1.0,
        bucket="day",
        utc_offset_hours=utc_offset_hours,
    )
    repeat = int(((summary.frequency > 0) & (summary.monetary_value > 0)).sum())
    if repeat < 2:
        raise CLVInputError(
            f"CLV needs at least 2 repeat buyers with paid repeat orders to fit spend; found {repeat}",
            field="orders",
        )
    bg, gg = fit_clv(summary)
    values = customer_value_arrays(
        summary,
        bg.params,
        gg.params,
        horizon_months=horizon_months,
        monthly_discount_rate=monthly_discount_rate,
    )
    to_db = driver_datetime(db)
    now = to_db(utcnow())
    stmt = (
        update(CUSTOMERS)
        .where(CUSTOMERS.c.id == bindparam("cid"), CUSTOMERS.c.org_id == bindparam("org"))
        .values(
            clv_fen=bindparam("clv"),
            p_alive=bindparam("p"),
            expected_purchases_365d=bindparam("e"),
            clv_updated_at=bindparam("now"),
            updated_at=CUSTOMERS.c.updated_at,  # as it was: overrides the column's onupdate stamp
        )
    )
    payload = [
        {"cid": int(c), "org": int(org_id), "clv": int(v), "p": float(p), "e": float(e), "now": now}
        for c, v, p, e in zip(
            values.customer_ids.tolist(),
            values.clv_fen.tolist(),
            values.p_alive.tolist(),
            values.expected_purchases.tolist(),
            strict=True,
        )
    ]
    written = 0
    for part in chunked(payload, WRITE_CHUNK):
        written += executemany_raw(db, stmt, list(part))
    db.flush()
    return CLVJobReport(
        org_id=org_id,
        buyers=len(summary),
        repeat_buyers=repeat,
        written=written,
        bgnbd={"r": bg.params.r, "alpha": bg.params.alpha, "a": bg.params.a, "b": bg.params.b},
        gamma_gamma={"p": gg.params.p, "q": gg.params.q, "gamma": gg.params.gamma},
        converged=bool(bg.converged and gg.converged),
        total_clv_fen=int(values.clv_fen.sum()),
    )
