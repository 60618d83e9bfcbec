"""The channels page counts every new friend, as the dashboard does: the chart used to read only adds through
siyu's own codes (ChannelAdd), so a brand whose friends came any other way saw "no new friends in 30 days"
next to a dashboard counting hundreds."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.channels import service as channels
from siyu.channels.models import CodeCarrier
from siyu.channels.schemas import CodeIn, MemberIn, PoolIn
from siyu.customers import follows, profiles
from siyu.integrations.sandbox.channel_codes import SandboxChannelCodes
from siyu.kit.clock import utcnow

from .test_console import hidden_csrf


def test_channel_chart_counts_friends_added_without_a_code(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    account = accounts.create_account(
        db, org, AccountIn(kind=AccountKind.wecom_member, external_id="m1", name="企微 1")
    )
    pool = channels.create_pool(db, org, PoolIn(name="池", members=[MemberIn(account_id=account.id)]))
    channels.create_code(
        db,
        org,
        CodeIn(
            name="门店海报", state="store-1", channel="offline", pool_id=pool.id, carrier=CodeCarrier.sandbox
        ),
        SandboxChannelCodes(),
    )
    now = utcnow()
    for n in range(3):  # added by search or a card: no code
        c = profiles.create_customer(db, org, {"name": f"客{n}"})
        follows.follow(db, org, c.id, account.id, since=now - timedelta(days=n + 1))
    through = profiles.create_customer(db, org, {"name": "扫码客"})
    follows.follow(db, org, through.id, account.id, since=now - timedelta(days=1), state="store-1")
    old = profiles.create_customer(db, org, {"name": "老客"})
    follows.follow(db, org, old.id, account.id, since=now - timedelta(days=40))
    db.commit()

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
    page = client.get("/channels").text
    data = re.search(r'<script type="application/json" id="added-chart-data">(.*?)</script>', page, re.S)
    assert data is not None
    chart = json.loads(data.group(1))
    by_name = {s["name"]: sum(s["data"]) for s in chart["series"]}
    assert by_name == {"门店海报": 1, "非渠道码添加": 3}
    assert sum(chart["totals"]) == 4
    # The alerts heading has something under it.
    assert 'data-empty="alerts"' in page
