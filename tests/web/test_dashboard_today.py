"""The dashboard's "today" block: to-dos and each operator's numbers of the local day, nothing of yesterday."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.commerce import service as commerce
from siyu.commerce.schemas import OrderIn
from siyu.customers import follows, profiles
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal
from siyu.web.today import day_bounds, today

from .test_console import hidden_csrf

# 10:00 in Shanghai: the local day began at 16:00 UTC the day before.
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def test_day_bounds_are_the_local_calendar_day() -> None:
    start, end = day_bounds("Asia/Shanghai", NOW)
    assert start == datetime(2026, 11, 19, 16, 0, tzinfo=UTC) and end - start == timedelta(days=1)


def _arrange(db: Session, tenant) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The operator's account: 2 new friends today (one deleted them again today), 1 yesterday evening
    (local), an order today by a customer they follow, one yesterday; another account with no operator."""
    org = tenant.org_id
    mine = accounts.create_account(
        db,
        org,
        AccountIn(
            kind=AccountKind.wecom_member, external_id="m1", name="企微 1", operator_id=tenant.operator_id
        ),
    )
    nobody = accounts.create_account(
        db, org, AccountIn(kind=AccountKind.wecom_member, external_id="m2", name="企微 2")
    )
    today_1 = profiles.create_customer(db, org, {"name": "甲"})
    today_2 = profiles.create_customer(db, org, {"name": "乙"})
    yesterday = profiles.create_customer(db, org, {"name": "丙"})
    other = profiles.create_customer(db, org, {"name": "丁"})
    follows.follow(db, org, today_1.id, mine.id, since=NOW - timedelta(hours=1))
    follows.follow(db, org, today_2.id, mine.id, since=NOW - timedelta(hours=2))
    follows.unfollow(db, org, today_2.id, mine.id, by="customer", at=NOW - timedelta(minutes=30))
    # 23:30 local yesterday: the day before, though less than 24 hours ago.
    follows.follow(db, org, yesterday.id, mine.id, since=datetime(2026, 11, 19, 15, 30, tzinfo=UTC))
    follows.follow(db, org, other.id, nobody.id, since=NOW - timedelta(hours=1))
    for n, (who, at) in enumerate(
        ((today_1, NOW - timedelta(minutes=5)), (yesterday, NOW - timedelta(days=1)))
    ):
        commerce.create_order(
            db,
            Principal(org, tenant.admin_id, Role.admin),
            OrderIn(platform="taobao", external_id=f"o{n}", customer_id=who.id, amount_fen=8980, paid_at=at),
        )
    db.commit()
    return mine.id, nobody.id


def test_operator_numbers_count_today_only(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    _arrange(db, tenant)
    admin = Principal(tenant.org_id, tenant.admin_id, Role.admin)
    result = today(db, admin, "Asia/Shanghai", now=NOW)
    rows = {o.user_id: o for o in result.operators}
    assert set(rows) == {tenant.operator_id}
    me = rows[tenant.operator_id]
    assert (me.new_friends, me.deletions, me.deals, me.replies) == (2, 1, 1, 0)
    assert result.open_leads == 0 and result.failed_writebacks == 0 and result.waiting_transfers == 0
    # The operator sees their own row and no admin to-dos.
    mine = today(db, Principal(tenant.org_id, tenant.operator_id, Role.operator), "Asia/Shanghai", now=NOW)
    assert [o.user_id for o in mine.operators] == [tenant.operator_id]
    assert mine.failed_writebacks is None and mine.waiting_transfers is None


def test_dashboard_shows_the_today_block(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    _arrange(db, tenant)
    form = client.get("/login")
    client.post(
        "/login",
        data={
            "email": f"admin@{tenant.slug}.test",
            "password": "password123",
            "csrf_token": hidden_csrf(form.text),
        },
    )
    client.cookies.set("lang", "zh_CN")
    page = client.get("/").text
    assert "今日" in page and 'data-todo="open_leads"' in page and 'data-todo="waiting_transfers"' in page
    row = re.search(rf'<tr data-operator-id="{tenant.operator_id}">(.*?)</tr>', page, re.S)
    assert row is not None
    assert re.search(r'data-n="new_friends">(\d+)<', row.group(1)) is not None
