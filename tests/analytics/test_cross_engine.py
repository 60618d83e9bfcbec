"""Commerce, RFM, CLV histogram and ROI queries give the same answers on DuckDB and on ClickHouse (chdb)."""

from __future__ import annotations

import itertools
import math
from dataclasses import astuple
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from siyu.analytics.commerce import COMMERCE_GROUPS, commerce_metrics
from siyu.analytics.engines import ChdbEngine, DuckDBEngine
from siyu.analytics.rfm import customer_rfm, rfm_report
from siyu.analytics.roi import ROIDimension, acquired_groups, allocate_costs, roi_report
from siyu.analytics.service import clv_distribution

Engines = tuple[DuckDBEngine, ChdbEngine]

# Far from the conftest counter (1000 upwards) so the two never share an organization.
_org_ids = itertools.count(900_000, 2)
T0 = datetime(2024, 3, 1)
N_CUSTOMERS = 40


def _build(org_id: int) -> dict[str, dict[str, Any]]:
    """A seeded dataset with NULL dimensions, refunds, unknown costs, ties and month-boundary times."""
    rng = np.random.default_rng(20240301)
    n = N_CUSTOMERS
    cids = np.arange(1, n + 1, dtype=np.int64)

    def pick(values: list[Any], size: int) -> np.ndarray:
        return np.array([values[i] for i in rng.integers(0, len(values), size)], dtype=object)

    # Customers first seen across March-May 2024; a few at 17:00 UTC on the last of a month,
    # which is already the next month in Asia/Shanghai.
    first_seen = T0 + rng.integers(0, 90 * 24, n) * timedelta(hours=1)
    first_seen = np.array(first_seen, dtype="datetime64[us]")
    first_seen[:3] = np.array(
        [datetime(2024, 3, 31, 17), datetime(2024, 4, 30, 17), datetime(2024, 3, 1)], dtype="datetime64[us]"
    )
    customers = {
        "org_id": np.full(n, org_id, dtype=np.int64),
        "customer_id": cids,
        "source": pick(["douyin", "taobao", "wecom", None], n),
        "channel": pick(["qr_a", "qr_b", None], n),
        "stage": pick(["lead", "customer", "vip", None], n),
        "account_id": pick([11, 12, None], n),
        "operator_id": pick([7, 8, 9, None], n),
        "first_seen_at": first_seen,
    }

    # 0..4 orders per customer (about a quarter never buy); amounts repeat so RFM ranks tie.
    per_customer = rng.choice([0, 1, 1, 2, 3, 4], n)
    owner = np.repeat(cids, per_customer)
    m = len(owner)
    amount = rng.choice([1_000, 2_500, 2_500, 9_900, 30_000], m).astype(np.int64)
    refunded = np.where(rng.random(m) < 0.2, amount // 2, 0).astype(np.int64)
    cost = np.array([None if rng.random() < 0.3 else int(a * 0.4) for a in amount], dtype=object)
    # Whole days, so recency ties between customers too; some land on month ends at 17:00 UTC.
    paid = T0 + rng.integers(0, 120, m) * timedelta(days=1) + timedelta(hours=17)
    orders = {
        "org_id": np.full(m, org_id, dtype=np.int64),
        "order_id": np.arange(1, m + 1, dtype=np.int64),
        "customer_id": owner.astype(np.int64),
        "account_id": pick([11, 12, None], m),
        "platform": pick(["douyin", "taobao", "wecom"], m),
        "amount_fen": amount,
        "refunded_fen": refunded,
        "cost_fen": cost,
        "paid_at": np.array(paid, dtype="datetime64[us]"),
    }

    valued = cids[rng.random(n) < 0.8]
    k = len(valued)
    values = {
        "org_id": np.full(k, org_id, dtype=np.int64),
        "customer_id": valued,
        "clv_fen": rng.integers(0, 250_000, k).astype(np.int64),
        "p_alive": np.array(
            [None if rng.random() < 0.2 else float(rng.random()) for _ in range(k)], dtype=object
        ),
        "expected_purchases": rng.random(k) * 3,
    }
    return {"customers": customers, "orders": orders, "customer_values": values}


@pytest.fixture(scope="module")
def org(engines: Engines) -> int:
    """One organization loaded identically into both engines, plus a shifted decoy copy next to it."""
    org_id = next(_org_ids)
    data = _build(org_id)
    decoy = _build(org_id + 1)
    decoy["orders"]["amount_fen"] = decoy["orders"]["amount_fen"] * 7  # must never leak into org_id's figures
    for engine in engines:
        for dataset in (data, decoy):
            for table, columns in dataset.items():
                engine.load(table, columns)
    return org_id


def _same(a: Any, b: Any, where: str = "") -> None:
    """Structural equality with a relative tolerance on floats (engines sum floats in different orders)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{where}: {a!r} != {b!r}"
        assert math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b and type(a) is type(b), (
            f"{where}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
        )


@pytest.mark.parametrize("by", [None, *COMMERCE_GROUPS])
@pytest.mark.parametrize(
    "span",
    [(None, None), (datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 5, 15, tzinfo=UTC))],
    ids=["all", "range"],
)
def test_commerce_metrics_agree(
    engines: Engines, org: int, by: str | None, span: tuple[datetime | None, datetime | None]
) -> None:
    date_from, date_to = span
    got = [commerce_metrics(e, org, by=by, date_from=date_from, date_to=date_to) for e in engines]
    # The rows come sorted by group, so equal lists mean equal groups and figures.
    _same([astuple(r) for r in got[0]], [astuple(r) for r in got[1]], f"by={by}")
    # Guards against both engines agreeing on nothing: the dataset has buyers, refunds and NULL groups.
    assert sum(r.orders for r in got[0]) > 0 and sum(r.refunded_fen for r in got[0]) > 0
    if by not in (None, "month"):
        assert any(r.group is None for r in got[0])


@pytest.mark.parametrize("as_of", [datetime(2024, 5, 1, 12, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC)])
def test_rfm_agrees(engines: Engines, org: int, as_of: datetime) -> None:
    duck_rows, ch_rows = (customer_rfm(e, org, as_of=as_of) for e in engines)
    _same([astuple(r) for r in duck_rows], [astuple(r) for r in ch_rows], "customer_rfm")
    assert len(duck_rows) > 10 and len({r.segment for r in duck_rows}) > 2
    duck_rep, ch_rep = (rfm_report(e, org, as_of=as_of) for e in engines)
    assert duck_rep == ch_rep
    assert duck_rep.buyers == len(duck_rows)


@pytest.mark.parametrize("bins", [1, 7, 20])
def test_clv_distribution_agrees(engines: Engines, org: int, bins: int) -> None:
    duck, ch = (clv_distribution(e, org, bins) for e in engines)
    _same(duck.model_dump(), ch.model_dump(), f"bins={bins}")
    assert duck.customers > 0 and sum(b.customers for b in duck.bins) == duck.customers


def test_clv_distribution_agrees_when_empty(engines: Engines) -> None:
    empty = next(_org_ids)
    duck, ch = (clv_distribution(e, empty, 5) for e in engines)
    assert duck == ch and duck.customers == 0


@pytest.mark.parametrize("dimension", ["source", "channel", "code", "account"])
def test_roi_engine_query_agrees(engines: Engines, org: int, db: Session, dimension: str) -> None:
    # No channel costs for this organization: roi_report's cost side is Python over the OLTP
    # database; what differs between engines is its acquired/revenue/CLV query.
    duck, ch = (
        roi_report(db, e, org, date_from=date(2024, 3, 1), date_to=date(2024, 4, 30), dimension=dimension)
        for e in engines
    )
    _same([astuple(r) for r in duck], [astuple(r) for r in ch], dimension)
    assert sum(r.customers for r in duck) > 0 and sum(r.predicted_clv_fen for r in duck) > 0
    assert any(r.channel is None for r in duck)


@pytest.mark.parametrize("dimension", list(ROIDimension))
def test_roi_cost_allocation_agrees(engines: Engines, org: int, dimension: ROIDimension) -> None:
    # Costs on both ledgers, shared over the groups each engine returns: the same groups give the same fen.
    start, end = datetime(2024, 3, 1), datetime(2024, 5, 1)
    groups = [sorted(acquired_groups(e, org, start, end), key=repr) for e in engines]
    assert groups[0] == groups[1] and groups[0]
    ledgers = (
        {"douyin": Fraction(10_000), "nobody": Fraction(7)},
        {"qr_a": Fraction(3_000), "qr_b": Fraction(4_001), "qr_unused": Fraction(50)},
        {"qr_a", "qr_unused"},
    )
    duck, ch = (allocate_costs(g, dimension, *ledgers) for g in groups)
    assert duck == ch
    if dimension in (ROIDimension.source, ROIDimension.account):
        assert sum(duck[0].values()) <= 10_000 + 7 + 3_000 + 4_001 + 50


@pytest.fixture(scope="module")
def org_without_orders(engines: Engines) -> int:
    """An organization with customers but no orders and no CLV values (every outer join finds nothing)."""
    org_id = next(_org_ids)
    customers = _build(org_id)["customers"]
    for engine in engines:
        engine.load("customers", customers)
    return org_id


@pytest.mark.parametrize("by", [None, "source", "month"])
def test_sparse_organizations_agree(engines: Engines, org_without_orders: int, by: str | None) -> None:
    empty = next(_org_ids)
    for org_id in (org_without_orders, empty):
        duck, ch = (commerce_metrics(e, org_id, by=by) for e in engines)
        _same([astuple(r) for r in duck], [astuple(r) for r in ch], f"org={org_id} by={by}")
        assert sum(r.orders for r in duck) == 0
    assert sum(r.customers for r in commerce_metrics(engines[0], org_without_orders, by=by)) == N_CUSTOMERS
    as_of = datetime(2024, 6, 1, tzinfo=UTC)
    for org_id in (org_without_orders, empty):
        assert (
            customer_rfm(engines[0], org_id, as_of=as_of)
            == customer_rfm(engines[1], org_id, as_of=as_of)
            == []
        )
        assert rfm_report(engines[0], org_id, as_of=as_of) == rfm_report(engines[1], org_id, as_of=as_of)


def test_roi_agrees_without_orders(engines: Engines, org_without_orders: int, db: Session) -> None:
    duck, ch = (
        roi_report(db, e, org_without_orders, date_from=date(2024, 3, 1), date_to=date(2024, 6, 30))
        for e in engines
    )
    _same([astuple(r) for r in duck], [astuple(r) for r in ch], "roi")
    assert sum(r.customers for r in duck) == N_CUSTOMERS and all(r.revenue_fen == 0 for r in duck)
