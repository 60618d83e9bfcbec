"""Analytics console pages over HTTP (TestClient) on the sandbox brand: figures, CSV exports, forms, access."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from siyu.analytics.engines import DuckDBEngine
from siyu.analytics.models import ChannelCost
from siyu.analytics.rfm import rfm_report, rfm_sql
from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.demo.loader import LoadSummary, load_world
from siyu.demo.world import World, generate_world
from siyu.events.models import Event
from siyu.web.analytics_pages import period_start_after, repurchase_curve, rfm_grids, yuan_to_fen
from siyu.web.i18n import LANG_COOKIE

PAGES = ("funnel", "retention", "repurchase", "rfm", "clv", "roi")


@pytest.fixture(scope="module")
def sandbox() -> World:
    """The sandbox brand, generated once for the module (loading it per test is cheap, generating is not)."""
    return generate_world(customers=200, seed=1)


@pytest.fixture
def brand(engine: Engine, sandbox: World) -> LoadSummary:
    """The sandbox brand loaded into this test's database."""
    return load_world(engine, sandbox)


def login(client: TestClient, email: str, password: str) -> str:
    """Log in through the form; returns the session's CSRF token."""
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text)
    assert meta
    return meta.group(1)


@pytest.fixture
def admin(client: TestClient, brand: LoadSummary) -> str:
    """The client logged in as the brand's admin (English pages); returns the CSRF token."""
    client.cookies.set(LANG_COOKIE, "en")
    return login(client, brand.admin.email, brand.admin.password)


def chart_of(page: str) -> dict:  # type: ignore[type-arg]
    """The chart JSON embedded in an analytics page."""
    match = re.search(
        r'<script type="application/json" id="analytics-chart-data">(.*?)</script>', page, re.DOTALL
    )
    assert match, "no chart data on the page"
    return json.loads(match.group(1))


def read_csv(response) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """Check a CSV download's headers and BOM, and parse it."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM, for Excel
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_operator_is_refused_and_sees_no_analytics_nav(client: TestClient, brand: LoadSummary) -> None:
    login(client, brand.operator.email, brand.operator.password)
    assert 'href="/analytics"' not in client.get("/").text
    for name in PAGES:
        assert client.get(f"/analytics/{name}").status_code == 403
        assert client.get(f"/analytics/{name}.csv").status_code == 403


def test_logged_out_goes_to_login(client: TestClient, brand: LoadSummary) -> None:
    response = client.get("/analytics/rfm", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fanalytics%2Frfm"


def test_funnel_counts_match_the_operational_events(
    client: TestClient, admin: str, brand: LoadSummary, db: Session
) -> None:
    assert 'href="/analytics"' in client.get("/").text
    page = client.get("/analytics/funnel?step=customer_added&step=order_paid&window_days=366")
    assert page.status_code == 200
    chart = chart_of(page.text)
    added = db.scalar(
        select(func.count(func.distinct(Event.customer_id))).where(
            Event.org_id == brand.org_id, Event.type == "customer_added"
        )
    )
    counts = chart["series"][0]["counts"]
    assert counts[0] == added > 0
    assert 0 < counts[1] <= counts[0]
    assert chart["steps"] == ["Customer added", "Order paid"]

    rows = read_csv(client.get("/analytics/funnel.csv?step=customer_added&step=order_paid&window_days=366"))
    # Console CSVs speak the reader's language (the API's keep machine names).
    assert rows[0] == [
        "Breakdown",
        "Step",
        "Event",
        "Count",
        "From first step",
        "From previous step",
        "Median seconds from the previous step",
    ]
    assert rows[1][2] == "Customer added"
    assert [int(r[3]) for r in rows[1:]] == counts
    assert float(rows[2][6]) > 0  # a median time from adding to ordering


def test_funnel_breakdown_splits_the_total_and_bad_forms_say_why(client: TestClient, admin: str) -> None:
    whole = chart_of(client.get("/analytics/funnel?step=customer_added&step=order_paid").text)
    split = chart_of(
        client.get("/analytics/funnel?step=customer_added&step=order_paid&breakdown=source").text
    )
    assert len(split["series"]) > 1
    assert sum(s["counts"][0] for s in split["series"]) == whole["series"][0]["counts"][0]
    assert "Douyin comment" in [s["name"] for s in split["series"]]

    one = client.get("/analytics/funnel?step=customer_added")
    assert "Choose at least two steps." in one.text
    assert 'id="analytics-chart-data"' not in one.text
    wide = client.get("/analytics/funnel?step=customer_added&step=order_paid&window_days=400")
    assert "The window must be 1 to 366 days." in wide.text


def test_default_funnel_picks_steps_the_brand_records(client: TestClient, admin: str) -> None:
    chart = chart_of(client.get("/analytics/funnel").text)
    assert chart["steps"][0] == "Customer added" and len(chart["steps"]) >= 2
    assert chart["series"][0]["counts"][0] > 0


def test_retention_cohorts_hold_every_starting_customer_once(
    client: TestClient, admin: str, brand: LoadSummary, db: Session
) -> None:
    query = "start=customer_added&returning=order_paid&period=month&periods=3"
    page = client.get(f"/analytics/retention?{query}")
    assert page.status_code == 200
    assert page.text.count('<td class="cell') == len(chart_of(page.text)["cohorts"]) * 4
    rows = read_csv(client.get(f"/analytics/retention.csv?{query}"))
    assert rows[0] == ["Cohort", "Cohort size", "Period 0", "Period 1", "Period 2", "Period 3"]
    added = db.scalar(
        select(func.count(func.distinct(Event.customer_id))).where(
            Event.org_id == brand.org_id, Event.type == "customer_added"
        )
    )
    assert sum(int(r[1]) for r in rows[1:]) == added
    later = read_csv(client.get(f"/analytics/retention.csv?{query}&mode=on_or_after"))
    # "In that period or later" can only count more customers than "in that period".
    for on, after in zip(rows[1:], later[1:], strict=True):
        assert all(int(b) >= int(a) for a, b in zip(on[2:], after[2:], strict=True))


def test_rfm_grids_equal_the_report_and_the_cells_in_sql() -> None:
    """One pass gives rfm_report's figures and each cell's SQL count, sum and round(avg) (halves away from 0)."""
    import random

    rng = random.Random(0)
    eng = DuckDBEngine()
    eng.create_schema()
    t0 = datetime(2026, 1, 1)
    oid = 0
    for cid in range(1, 400):
        for _ in range(rng.choice((1, 1, 1, 2, 3, 6))):
            oid += 1
            amount = rng.choice((100, 101, 250, 999, 5_000))  # odd amounts make means end in .5
            eng.con.execute(
                "INSERT INTO orders VALUES (9, ?, ?, NULL, 'taobao', ?, ?, NULL, ?)",
                [oid, cid, amount, rng.choice((0, 0, 1, amount)), t0 + timedelta(days=rng.randrange(60))],
            )
    as_of = datetime(2026, 3, 15, tzinfo=UTC)
    report, cells = rfm_grids(eng, 9, as_of)
    assert report == rfm_report(eng, 9, as_of=as_of)
    rows = eng.query(
        f"WITH x AS ({rfm_sql(9, as_of)}) SELECT r_score, f_score, count(*), sum(m), round(avg(m)) "
        "FROM x GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert cells == [tuple(int(v) for v in row) for row in rows]
    assert any(total % n and (2 * total) % n == 0 for _, _, n, total, _ in cells)  # a half was rounded
    eng.close()


def test_repurchase_curve_by_hand() -> None:
    eng = DuckDBEngine()
    eng.create_schema()
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    t0 = datetime(2026, 1, 1)
    orders = [  # (order_id, customer, paid_at)
        (1, 1, t0),
        (2, 1, t0 + timedelta(days=10)),
        (3, 1, t0 + timedelta(days=20)),  # again after 10 days
        (4, 2, t0),  # never again
        (5, 3, datetime(2026, 2, 24)),
        (6, 3, datetime(2026, 2, 25)),  # again after 1 day, first order 5 days ago
        (7, 4, datetime(2026, 3, 2)),  # after as_of: ignored
    ]
    for oid, cid, at in orders:
        eng.con.execute(
            "INSERT INTO orders VALUES (7, ?, ?, NULL, 'taobao', 100, 0, NULL, ?)", [oid, cid, at]
        )
    for cid, source in ((1, "douyin"), (2, "douyin"), (3, "taobao")):
        eng.con.execute(
            "INSERT INTO customers VALUES (7, ?, ?, NULL, NULL, NULL, NULL, ?)", [cid, source, t0]
        )
    curve = repurchase_curve(eng, 7, by=None, max_days=12, as_of=as_of)[None]
    assert curve[0] == (0, 3, 0)
    assert curve[1] == (1, 3, 1)
    assert curve[9] == (9, 2, 0)  # buyer 3 is only 5 days into their life: not observable at day 9
    assert curve[10] == (10, 2, 1)
    by_source = repurchase_curve(eng, 7, by="source", max_days=12, as_of=as_of)
    assert by_source["douyin"][10] == (10, 2, 1)
    assert by_source["taobao"][1] == (1, 1, 1)
    with pytest.raises(ValueError, match="breakdown"):
        repurchase_curve(eng, 7, by="mobile; DROP TABLE orders", max_days=3, as_of=as_of)


def test_repurchase_page_and_csv(client: TestClient, admin: str, brand: LoadSummary, db: Session) -> None:
    page = client.get("/analytics/repurchase?by=source&days=60")
    chart = chart_of(page.text)
    assert chart["series"][0]["name"] == "All buyers" and len(chart["series"]) > 1
    assert len(chart["days"]) == 61
    assert max(v for v in chart["series"][0]["data"] if v is not None) > 0
    rows = read_csv(client.get("/analytics/repurchase.csv?by=source&days=60"))
    assert rows[0] == ["Group", "Day", "Buyers observable", "Bought again", "Share"]
    buyers = db.scalar(
        select(func.count(func.distinct(Order.customer_id))).where(Order.org_id == brand.org_id)
    )
    assert sum(int(r[2]) for r in rows[1:] if r[1] == "0") == buyers
    overall = read_csv(client.get("/analytics/repurchase.csv?by=&days=30"))
    assert len(overall) == 1 + 31 and overall[1][0] == ""


def test_rfm_grid_covers_every_buyer(client: TestClient, admin: str, brand: LoadSummary, db: Session) -> None:
    page = client.get("/analytics/rfm")
    chart = chart_of(page.text)
    buyers = db.scalar(
        select(func.count(func.distinct(Order.customer_id))).where(Order.org_id == brand.org_id)
    )
    assert sum(c[2] for c in chart["cells"]) == buyers > 0
    segments = re.findall(r'<tr data-segment="(\w+)"><td>[^<]+</td><td class="num">([\d,]+)</td>', page.text)
    assert len(segments) == 11 and sum(int(n.replace(",", "")) for _, n in segments) == buyers
    rows = read_csv(client.get("/analytics/rfm.csv"))
    assert rows[0] == [
        "Recency score",
        "Frequency score",
        "Buyers",
        "Total net spend (yuan)",
        "Mean net spend (yuan)",
    ]
    net = db.scalar(
        select(func.sum(Order.amount_fen - Order.refunded_fen)).where(Order.org_id == brand.org_id)
    )
    assert sum(round(float(r[3]) * 100) for r in rows[1:]) == net  # yuan with two decimals


def test_clv_recompute_fills_the_histogram(
    client: TestClient, admin: str, brand: LoadSummary, db: Session, inline_worker: object
) -> None:
    before = client.get("/analytics/clv")
    assert "CLV has not been computed yet." in before.text and chart_of(before.text)["bins"] == []
    assert read_csv(client.get("/analytics/clv.csv")) == [["CLV from (yuan)", "CLV to (yuan)", "Customers"]]

    assert client.post("/analytics/clv/recompute", data={}).status_code == 403  # no CSRF token
    done = client.post("/analytics/clv/recompute", data={"csrf_token": admin}, follow_redirects=False)
    # The worker fits (inline here); the page only asked for it.
    assert done.status_code == 303 and done.headers["location"] == "/analytics/clv?queued=1"
    page = client.get(done.headers["location"])
    assert "being recomputed in the background" in page.text and "CLV last computed at" in page.text
    with_clv = db.scalar(
        select(func.count()).where(Customer.org_id == brand.org_id, Customer.clv_fen.is_not(None))
    )
    assert with_clv > 0
    assert sum(b[2] for b in chart_of(page.text)["bins"]) == with_clv
    rows = read_csv(client.get("/analytics/clv.csv"))
    assert sum(int(r[2]) for r in rows[1:]) == with_clv


def test_roi_cost_form_saves_fen_and_shows_in_the_table(
    client: TestClient, admin: str, brand: LoadSummary, db: Session
) -> None:
    first = db.scalar(select(func.min(Customer.created_at)).where(Customer.org_id == brand.org_id))
    assert first is not None
    start = (first + timedelta(hours=8)).date()
    end = start + timedelta(days=29)
    form = {
        "csrf_token": admin,
        "channel": "douyin_comment",
        "dimension": "source",
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "cost_yuan": "1,500.50",
        "note": "投流",
    }
    saved = client.post("/analytics/roi/costs", data=form, follow_redirects=False)
    assert saved.status_code == 303
    cost = db.scalars(select(ChannelCost).where(ChannelCost.org_id == brand.org_id)).one()
    assert (cost.cost_fen, cost.channel, cost.note) == (150_050, "douyin_comment", "投流")

    query = f"date_from={start.isoformat()}&date_to={end.isoformat()}&dimension=source"
    page = client.get(f"/analytics/roi?{query}")
    row = re.search(r'<tr data-channel="douyin_comment">(.*?)</tr>', page.text, re.DOTALL)
    assert row and "¥1,500.50" in row.group(1)
    rows = read_csv(client.get(f"/analytics/roi.csv?{query}"))
    assert rows[0] == [
        "Channel",
        "Cost (yuan)",
        "Customers",
        "Cost per customer (yuan)",
        "Revenue to date (yuan)",
        "Predicted CLV (yuan)",
        "ROI",
        "ROI with CLV",
        "Name",
    ]
    douyin = next(r for r in rows[1:] if r[0] == "douyin_comment")
    assert douyin[1] == "1500.50" and int(douyin[2]) > 0
    assert "Douyin comment" in chart_of(page.text)["channels"]
    assert all(f'<option value="{b}"' in page.text for b in ("source", "channel", "code", "account"))
    by_account = read_csv(client.get(f"/analytics/roi.csv?{query.replace('=source', '=account')}"))
    # Account rows are keyed by id and named by the account (the cost shared over its customers).
    assert sum(round(float(r[1]) * 100) for r in by_account[1:]) == 150_050
    assert all(r[8] and r[8] != r[0] for r in by_account[1:] if r[0])

    bad = client.post("/analytics/roi/costs", data={**form, "cost_yuan": "lots"})
    assert bad.status_code == 422 and "is not a number" in bad.text
    backwards = client.post("/analytics/roi/costs", data={**form, "period_end": "2000-01-01"})
    assert backwards.status_code == 422 and "period_end must not be before period_start" in backwards.text
    assert db.scalar(select(func.count()).select_from(ChannelCost)) == 1


def test_pages_render_in_both_languages(client: TestClient, admin: str) -> None:
    for name in PAGES:
        assert "Export CSV" in client.get(f"/analytics/{name}").text
    client.cookies.set(LANG_COOKIE, "zh_CN")
    page = client.get("/analytics/funnel")
    assert "导出 CSV" in page.text and "转化漏斗" in page.text
    assert chart_of(page.text)["steps"][0] == "新增客户"
    assert "数据分析" in page.text


def test_period_start_after() -> None:
    assert period_start_after(date(2026, 1, 31), "day", 1) == date(2026, 2, 1)
    assert period_start_after(date(2026, 1, 26), "week", 2) == date(2026, 2, 9)
    assert period_start_after(date(2026, 11, 1), "month", 3) == date(2027, 2, 1)
    assert period_start_after(date(2026, 1, 1), "month", 0) == date(2026, 1, 1)


def test_yuan_to_fen() -> None:
    assert yuan_to_fen("12") == 1200
    assert yuan_to_fen(" ¥1,234.5 ") == 123_450
    assert yuan_to_fen("0.01") == 1
    for bad, why in (
        ("1.234", "two decimals"),
        ("-3", "zero or more"),
        ("abc", "not a number"),
        ("NaN", "zero or more"),
    ):
        with pytest.raises(ValueError, match=why):
            yuan_to_fen(bad)


def test_an_organization_without_data_gets_empty_pages(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    client.cookies.set(LANG_COOKIE, "en")
    csrf = login(client, f"admin@{tenant.slug}.test", "password123")
    for name in PAGES:
        page = client.get(f"/analytics/{name}")
        assert page.status_code == 200, (name, page.text[:500])
        assert len(read_csv(client.get(f"/analytics/{name}.csv"))) == 1  # the header only
    assert chart_of(client.get("/analytics/rfm").text)["cells"] == []
    refused = client.post("/analytics/clv/recompute", data={"csrf_token": csrf})
    assert refused.status_code == 422 and "no orders" in refused.text


def test_rfm_cells_open_as_customer_lists(client: TestClient, admin: str, brand: LoadSummary) -> None:
    page = client.get("/analytics/rfm").text
    cells = {
        tuple(int(x) for x in rf.split("-")): int(n.replace(",", ""))
        for rf, n in re.findall(r'data-cell="(\d-\d)">([\d,]+)</a>', page)
    }
    assert cells and sum(cells.values()) == sum(c[2] for c in chart_of(page)["cells"])
    (r, f), n = max(cells.items(), key=lambda kv: kv[1])
    listing = client.get(f"/analytics/rfm/customers?r={r}&f={f}")
    assert listing.status_code == 200
    assert f'data-total="{n}"' in listing.text
    assert len(re.findall(r'<tr data-customer-id="\d+"><td><a href="/customers/\d+">', listing.text)) == min(
        n, 200
    )
    assert client.get("/analytics/rfm/customers?r=6&f=1").status_code == 422


def test_rfm_frequency_columns_count_orders(  # type: ignore[no-untyped-def]
    client: TestClient, admin: str, brand: LoadSummary, db: Session
) -> None:
    # The sandbox brand's buyers mostly ordered once; each column of the grid holds the buyers with that
    # many orders (5 or more in the last), so columns 2 and 3 are filled whenever such buyers exist.
    orders = (
        select(Order.customer_id, func.count().label("n"))
        .where(Order.org_id == brand.org_id, Order.paid_at <= datetime.now(UTC))
        .group_by(Order.customer_id)
        .subquery()
    )
    by_count = dict(db.execute(select(orders.c.n, func.count()).group_by(orders.c.n)).all())
    expected = {f: sum(k for n, k in by_count.items() if min(n, 5) == f) for f in range(1, 6)}
    assert expected[1] > sum(expected.values()) / 2 and expected[2] > 0 and expected[3] > 0
    page = client.get("/analytics/rfm").text
    columns = dict.fromkeys(range(1, 6), 0)
    for rf, n in re.findall(r'data-cell="(\d-\d)">([\d,]+)</a>', page):
        columns[int(rf[-1])] += int(n.replace(",", ""))
    assert columns == expected
    assert "1 order scores 1" in page


def test_csv_exports_in_chinese_with_yuan(client: TestClient, admin: str) -> None:
    client.cookies.set("lang", "zh_CN")
    rows = read_csv(client.get("/analytics/rfm.csv"))
    assert rows[0] == ["最近购买得分", "购买频次得分", "购买客户", "净消费总额（元）", "平均净消费（元）"]
    assert all(re.fullmatch(r"-?\d+\.\d\d", r[3]) for r in rows[1:]) and len(rows) > 1
    assert read_csv(client.get("/analytics/clv.csv"))[0] == [
        "预测价值下限（元）",
        "预测价值上限（元）",
        "客户",
    ]
