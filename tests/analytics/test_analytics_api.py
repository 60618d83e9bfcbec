"""Analytics API: admin-only, org-scoped, 422 naming the field, CSV output, channel-cost CRUD."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.events.models import Event

T0 = datetime(2026, 3, 2, 4, tzinfo=UTC)


def _seed(db: Session, org_id: int, n: int, source: str) -> None:
    """n customers who add the account; the first half also order (once, 1,000 fen)."""
    for i in range(n):
        c = Customer(org_id=org_id, source=source, created_at=T0)
        db.add(c)
        db.flush()
        db.add(
            Event(
                org_id=org_id,
                customer_id=c.id,
                type="customer_added",
                occurred_at=T0,
                idempotency_key=f"a{c.id}",
            )
        )
        if i < n // 2:
            db.add(
                Event(
                    org_id=org_id,
                    customer_id=c.id,
                    type="order_paid",
                    occurred_at=T0 + timedelta(hours=1),
                    idempotency_key=f"o{c.id}",
                )
            )
            db.add(
                Order(
                    org_id=org_id,
                    customer_id=c.id,
                    platform="p",
                    external_id=str(c.id),
                    amount_fen=1_000,
                    paid_at=T0 + timedelta(hours=1),
                )
            )
    db.commit()


def _csv(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


FUNNEL = {
    "steps": [{"event_type": "customer_added"}, {"event_type": "order_paid"}],
    "window_seconds": 86_400,
}


def test_funnel_json_csv_and_isolation(client, db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t, other = make_tenant(), make_tenant()
    _seed(db, t.org_id, 4, "douyin")
    _seed(db, other.org_id, 10, "taobao")
    r = client.post("/api/v1/analytics/funnel", json=FUNNEL, headers=t.auth())
    assert r.status_code == 200, r.text
    [res] = r.json()
    assert [s["count"] for s in res["steps"]] == [4, 2]
    assert res["steps"][1]["median_seconds_from_previous"] == 3600
    r = client.post(
        "/api/v1/analytics/funnel?format=csv", json={**FUNNEL, "breakdown": "source"}, headers=t.auth("owner")
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = _csv(r.text)
    assert [(x["breakdown_value"], x["step"], x["count"]) for x in rows] == [
        ("douyin", "1", "4"),
        ("douyin", "2", "2"),
    ]
    r = client.post("/api/v1/analytics/funnel", json=FUNNEL, headers=other.auth())
    assert [s["count"] for s in r.json()[0]["steps"]] == [10, 5]


def test_bad_requests_name_the_field(client, tenant) -> None:  # type: ignore[no-untyped-def]
    h = tenant.auth()
    cases = [
        ({**FUNNEL, "modes": ["sideways"]}, "modes"),
        ({**FUNNEL, "breakdown": "mobile"}, "breakdown"),
        ({**FUNNEL, "steps": [{"event_type": "a", "properties": {"bad key": "x"}}]}, "steps.0"),
        (
            {**FUNNEL, "date_from": "2026-03-02T00:00:00+00:00", "date_to": "2026-03-01T00:00:00+00:00"},
            "date_from",
        ),
    ]
    for body, field in cases:
        r = client.post("/api/v1/analytics/funnel", json=body, headers=h)
        assert r.status_code == 422, body
        assert r.json()["field"] == field, r.json()
    r = client.post("/api/v1/analytics/funnel", json={**FUNNEL, "steps": []}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "steps"
    r = client.get("/api/v1/analytics/commerce?by=tags", headers=h)
    assert r.status_code == 422 and r.json()["field"] == "by"
    r = client.get("/api/v1/analytics/commerce?date_from=2026-01-01T00:00:00", headers=h)
    assert r.status_code == 422 and r.json()["field"] == "date_from"
    r = client.post(
        "/api/v1/analytics/channel-costs",
        headers=h,
        json={"channel": "douyin", "period_start": "2026-02-01", "period_end": "2026-01-01", "cost_fen": 1},
    )
    assert r.status_code == 422


@pytest.mark.slow
def test_operators_are_refused(client, tenant) -> None:  # type: ignore[no-untyped-def]
    for method, url in (
        ("get", "/api/v1/analytics/commerce"),
        ("get", "/api/v1/analytics/rfm"),
        ("get", "/api/v1/analytics/clv"),
        ("get", "/api/v1/analytics/channel-costs"),
        ("get", "/api/v1/analytics/roi?date_from=2026-01-01&date_to=2026-01-31"),
    ):
        assert getattr(client, method)(url, headers=tenant.auth("operator")).status_code == 403, url
    assert (
        client.post("/api/v1/analytics/funnel", json=FUNNEL, headers=tenant.auth("operator")).status_code
        == 403
    )
    assert client.get("/api/v1/analytics/commerce").status_code == 401


def test_reports_and_csv(client, db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t, other = make_tenant(), make_tenant()
    _seed(db, t.org_id, 6, "douyin")
    _seed(db, other.org_id, 2, "taobao")
    h = t.auth()
    [row] = client.get("/api/v1/analytics/commerce", headers=h).json()
    assert (row["customers"], row["buyers"], row["orders"], row["revenue_fen"], row["aov_fen"]) == (
        6,
        3,
        3,
        3_000,
        1_000,
    )
    rows = _csv(client.get("/api/v1/analytics/commerce?by=source&format=csv", headers=h).text)
    assert [(x["group"], x["customers"], x["first_order_conversion"]) for x in rows] == [
        ("douyin", "6", "0.5")
    ]

    rfm = client.get("/api/v1/analytics/rfm?as_of=2026-04-01T00:00:00Z", headers=h).json()
    assert rfm["buyers"] == 3 and sum(rfm["segments"].values()) == 3
    cells = _csv(client.get("/api/v1/analytics/rfm?format=csv", headers=h).text)
    assert len(cells) == 25 and sum(int(c["buyers"]) for c in cells) == 3

    assert client.get("/api/v1/analytics/clv", headers=h).json() == {
        "customers": 0,
        "total_clv_fen": 0,
        "mean_clv_fen": None,
        "mean_p_alive": None,
        "bins": [],
    }

    ret = client.post(
        "/api/v1/analytics/retention",
        headers=h,
        json={
            "start": {"event_type": "customer_added"},
            "returning": {"event_type": "order_paid"},
            "period": "day",
            "periods": 1,
        },
    )
    assert ret.status_code == 200, ret.text
    assert [(c["size"], c["retained"]) for c in ret.json()] == [(6, [3, 0])]
    rows = _csv(
        client.post(
            "/api/v1/analytics/retention?format=csv",
            headers=h,
            json={
                "start": {"event_type": "customer_added"},
                "returning": {"event_type": "order_paid"},
                "period": "day",
                "periods": 1,
            },
        ).text
    )
    assert rows[0]["size"] == "6" and rows[0]["period_0"] == "3"
    r = client.post(
        "/api/v1/analytics/retention",
        headers=h,
        json={
            "start": {"event_type": "customer_added"},
            "returning": {"event_type": "x"},
            "breakdown": "nope",
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "breakdown"


def test_channel_costs_crud_roi_and_isolation(client, db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    t, other = make_tenant(), make_tenant()
    _seed(db, t.org_id, 4, "douyin")
    h = t.auth()
    r = client.post(
        "/api/v1/analytics/channel-costs",
        headers=h,
        json={
            "channel": "douyin",
            "period_start": "2026-03-01",
            "period_end": "2026-03-31",
            "cost_fen": 6_200,
            "note": "ads",
        },
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert client.get(f"/api/v1/analytics/channel-costs/{cid}", headers=other.auth()).status_code == 404
    assert (
        client.patch(
            f"/api/v1/analytics/channel-costs/{cid}", headers=other.auth(), json={"cost_fen": 1}
        ).status_code
        == 404
    )
    assert client.delete(f"/api/v1/analytics/channel-costs/{cid}", headers=other.auth()).status_code == 404
    assert client.get("/api/v1/analytics/channel-costs", headers=other.auth()).json() == []
    r = client.patch(f"/api/v1/analytics/channel-costs/{cid}", headers=h, json={"period_end": "2026-02-01"})
    assert r.status_code == 422 and r.json()["field"] == "period_end"
    r = client.patch(f"/api/v1/analytics/channel-costs/{cid}", headers=h, json={"cost_fen": 3_100})
    assert r.status_code == 200 and r.json()["cost_fen"] == 3_100

    roi = client.get("/api/v1/analytics/roi?date_from=2026-03-01&date_to=2026-03-31", headers=h).json()
    assert [(x["channel"], x["cost_fen"], x["customers"], x["revenue_fen"]) for x in roi] == [
        ("douyin", 3_100, 4, 2_000)
    ]
    assert roi[0]["roi"] == (2_000 - 3_100) / 3_100
    rows = _csv(
        client.get("/api/v1/analytics/roi?date_from=2026-03-01&date_to=2026-03-31&format=csv", headers=h).text
    )
    assert rows[0]["channel"] == "douyin" and rows[0]["cost_per_customer_fen"] == "775"
    assert (
        client.get(
            "/api/v1/analytics/roi?date_from=2026-03-01&date_to=2026-03-31", headers=other.auth()
        ).json()
        == []
    )
    assert len(_csv(client.get("/api/v1/analytics/channel-costs?format=csv", headers=h).text)) == 1

    assert client.delete(f"/api/v1/analytics/channel-costs/{cid}", headers=h).status_code == 204
    assert client.get(f"/api/v1/analytics/channel-costs/{cid}", headers=h).status_code == 404


def test_refresh_endpoint(client, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    _seed(db, tenant.org_id, 2, "douyin")
    r = client.post("/api/v1/analytics/refresh", headers=tenant.auth())
    assert r.status_code == 200 and r.json()["events"] == 3
