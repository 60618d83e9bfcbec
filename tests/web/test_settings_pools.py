"""Routing pools and accounts in the console: the API's schemas and services, refusals in words beside each
field with what was typed kept."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.channels import service as channels
from siyu.channels.models import RoutingPool
from siyu.channels.schemas import MemberIn, PoolPatch

from .settings_fixtures import Setup, console_login, field_error, setup_org


@pytest.fixture
def org(db: Session, tenant) -> Setup:  # type: ignore[no-untyped-def]
    return setup_org(db, tenant)


def test_pool_refusals_and_a_new_pool_with_a_backup(client: TestClient, org: Setup, db: Session) -> None:
    csrf = console_login(client, f"admin@{org.tenant.slug}.test")  # type: ignore[attr-defined]
    form = {"csrf_token": csrf, "name": "抖音池", "rule": "round_robin", "daily_cap": "0", "warmup": "20, x"}
    bad = client.post("/settings/pools", data=form)
    assert bad.status_code == 422
    assert field_error(bad.text, "daily_cap") == "请填写不小于 1 的数字。"
    assert field_error(bad.text, "warmup") == "请填写不小于 1 的整数，用逗号分隔，例如 20, 40, 80。"
    assert 'value="20, x"' in bad.text
    bad = client.post("/settings/pools", data=form | {"daily_cap": "50", "warmup": "0, 10"})
    assert field_error(bad.text, "warmup") == "请填写不小于 1 的整数，用逗号分隔，例如 20, 40, 80。"
    dup = client.post("/settings/pools", data=form | {"daily_cap": "50", "warmup": "10，20"})
    assert dup.status_code == 409 and field_error(dup.text, "name") == "已有同名的分流池。"
    made = client.post(
        "/settings/pools",
        data=form
        | {
            "name": "直播池",
            "daily_cap": "50",
            "warmup": "10，20",
            "members": [str(org.account_id)],
            "backups": [str(org.account_id)],
        },
        follow_redirects=False,
    )
    assert made.status_code == 303
    pool = db.scalars(select(RoutingPool).where(RoutingPool.name == "直播池")).one()
    out = channels.pool_out(db, pool)
    assert (out.rule.value, out.daily_cap, out.warmup) == ("round_robin", 50, [10, 20])
    assert [(m.account_id, m.is_backup) for m in out.members] == [(org.account_id, True)]
    listing = client.get("/settings/pools")
    assert "轮流分配" in listing.text and "10 → 20" in listing.text


def test_editing_members_keeps_their_working_hours(client: TestClient, org: Setup, db: Session) -> None:
    pool = channels.get_pool(db, org.tenant.org_id, org.pool_id)  # type: ignore[attr-defined]
    channels.update_pool(
        db,
        pool,
        PoolPatch(members=[MemberIn(account_id=org.account_id, hours={"0": [9, 18]}, regions=["上海"])]),
    )
    db.commit()
    csrf = console_login(client, f"admin@{org.tenant.slug}.test")  # type: ignore[attr-defined]
    page = client.get(f"/settings/pools/{org.pool_id}/edit")
    assert 'value="抖音池"' in page.text and "checked" in page.text
    saved = client.post(
        f"/settings/pools/{org.pool_id}",
        data={
            "csrf_token": csrf,
            "name": "抖音一组",
            "rule": "schedule",
            "daily_cap": "80",
            "warmup": "20 40",
            "members": [str(org.account_id)],
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    db.expire_all()
    out = channels.pool_out(db, channels.get_pool(db, org.tenant.org_id, org.pool_id))  # type: ignore[attr-defined]
    assert (out.name, out.rule.value, out.warmup) == ("抖音一组", "schedule", [20, 40])
    assert out.members[0].hours == {"0": [9, 18]} and out.members[0].regions == ["上海"]


def test_accounts_get_an_operator_and_caps(client: TestClient, org: Setup, db: Session) -> None:
    csrf = console_login(client, f"admin@{org.tenant.slug}.test")  # type: ignore[attr-defined]
    operator_id = org.tenant.operator_id  # type: ignore[attr-defined]
    form = {"csrf_token": csrf, "name": "张三的企微", "operator_id": str(operator_id), "status": "active"}
    bad = client.post(
        f"/settings/accounts/{org.account_id}", data=form | {"soft_cap": "3000", "hard_cap": "2000"}
    )
    assert bad.status_code == 422 and field_error(bad.text, "soft_cap") == "软上限不能高于硬上限。"
    assert 'value="3000"' in bad.text
    bad = client.post(
        f"/settings/accounts/{org.account_id}", data=form | {"soft_cap": "abc", "hard_cap": "2000"}
    )
    assert field_error(bad.text, "soft_cap") == "请填写整数。"
    saved = client.post(
        f"/settings/accounts/{org.account_id}",
        data=form | {"soft_cap": "1500", "hard_cap": "2000"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    db.expire_all()
    account = db.get(Account, org.account_id)
    assert account is not None
    assert (account.operator_id, account.soft_cap, account.hard_cap) == (operator_id, 1500, 2000)
    unassigned = client.post(
        f"/settings/accounts/{org.account_id}",
        data=form | {"operator_id": "", "soft_cap": "1500", "hard_cap": "2000"},
        follow_redirects=False,
    )
    assert unassigned.status_code == 303
    db.expire_all()
    assert db.get(Account, org.account_id).operator_id is None  # type: ignore[union-attr]

    new = {
        "csrf_token": csrf,
        "kind": "personal_wechat",
        "external_id": "wx-new",
        "name": "新个人号",
        "status": "active",
    }
    too_big = client.post("/settings/accounts", data=new | {"hard_cap": "6000"})
    assert (
        too_big.status_code == 422
        and field_error(too_big.text, "hard_cap") == "个人微信号最多只能有 5,000 个好友。"
    )
    made = client.post(
        "/settings/accounts", data=new | {"operator_id": str(operator_id)}, follow_redirects=False
    )
    assert made.status_code == 303
    dup = client.post("/settings/accounts", data=new)
    assert dup.status_code == 409 and field_error(dup.text, "external_id") == "这个账号已经添加过了。"
    account = db.scalars(select(Account).where(Account.external_id == "wx-new")).one()
    assert (account.operator_id, account.hard_cap) == (operator_id, 5000)
