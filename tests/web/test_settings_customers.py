"""Customers in the console: create, edit a profile, import a CSV with its row report, merge two by hand;
the API's schemas and services, refusals in words beside each field with what was typed kept."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.customers import follows, profiles
from siyu.customers.models import Customer, MergeAudit
from siyu.events.models import Event

from .settings_fixtures import console_login, field_error


def _customer(db: Session, **where: object) -> Customer:
    db.expire_all()
    stmt = select(Customer)
    for key, value in where.items():
        stmt = stmt.where(getattr(Customer, key) == value)
    return db.scalars(stmt).one()


def test_create_a_customer_refusals_then_the_profile(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    form = {"csrf_token": csrf, "name": "周女士", "mobile": "1381234", "gender": "female", "source": "douyin"}
    bad = client.post("/settings/customers", data=form | {"region": "长" * 61})
    assert bad.status_code == 422
    assert field_error(bad.text, "mobile") == "请填写 11 位大陆手机号，例如 138 1234 5678。"
    assert field_error(bad.text, "region") == "最多 60 个字符。"
    assert 'value="周女士"' in bad.text and 'value="1381234"' in bad.text
    assert db.scalar(select(Customer.id)) is None
    made = client.post(
        "/settings/customers",
        data=form | {"mobile": "138 1234 5678", "intent": "祛痘"},
        follow_redirects=False,
    )
    assert made.status_code == 303
    customer = _customer(db, name="周女士")
    assert made.headers["location"] == f"/customers/{customer.id}"
    assert (customer.mobile, customer.gender.value, customer.source, customer.intent) == (
        "13812345678",
        "female",
        "douyin",
        "祛痘",
    )
    added = db.scalars(
        select(Event).where(Event.customer_id == customer.id, Event.type == "customer_added")
    ).one()
    assert added.properties["origin"] == "console"


def test_an_operator_must_name_one_of_their_accounts(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    account = accounts.create_account(
        db,
        tenant.org_id,
        AccountIn(
            kind=AccountKind.personal_wechat,
            external_id="wx-op",
            name="运营号",
            operator_id=tenant.operator_id,
        ),
    )
    db.commit()
    csrf = console_login(client, f"operator@{tenant.slug}.test")
    refused = client.post("/settings/customers", data={"csrf_token": csrf, "name": "钱先生"})
    assert refused.status_code == 422
    assert field_error(refused.text, "account_id") == "请选择你负责的一个账号：新客户会挂在这个账号下。"
    made = client.post(
        "/settings/customers", data={"csrf_token": csrf, "name": "钱先生", "account_id": str(account.id)}
    )
    assert made.status_code == 200 and "钱先生" in made.text  # the redirect lands on the visible profile


def test_edit_a_profile_keeps_the_masked_mobile_of_an_operator(
    client: TestClient, tenant, db: Session
) -> None:  # type: ignore[no-untyped-def]
    account = accounts.create_account(
        db,
        tenant.org_id,
        AccountIn(
            kind=AccountKind.personal_wechat,
            external_id="wx-op",
            name="运营号",
            operator_id=tenant.operator_id,
        ),
    )
    customer = profiles.create_customer(
        db, tenant.org_id, {"name": "孙女士", "mobile": "13912345678", "region": "杭州", "source": "taobao"}
    )
    follows.follow(db, tenant.org_id, customer.id, account.id)
    db.commit()
    customer_id = customer.id
    csrf = console_login(client, f"operator@{tenant.slug}.test")
    page = client.get(f"/customers/{customer_id}")
    assert f'href="/customers/{customer_id}/edit"' in page.text
    form = client.get(f"/customers/{customer_id}/edit")
    assert 'value="139****5678"' in form.text and "13912345678" not in form.text
    data = {
        "csrf_token": csrf,
        "name": "孙丽",
        "mobile": "139****5678",
        "gender": "female",
        "region": "",
        "source": "taobao",
    }
    bad = client.post(f"/customers/{customer_id}/edit", data=data | {"mobile": "138****0000"})
    assert (
        bad.status_code == 422
        and field_error(bad.text, "mobile") == "请填写 11 位大陆手机号，例如 138 1234 5678。"
    )
    saved = client.post(
        f"/customers/{customer_id}/edit", data=data | {"intent": "面霜"}, follow_redirects=False
    )
    assert saved.status_code == 303
    after = _customer(db, id=customer_id)
    assert (after.name, after.mobile, after.region, after.intent, after.gender.value) == (
        "孙丽",
        "13912345678",
        None,
        "面霜",
        "female",
    )
    change = db.scalars(
        select(Event).where(Event.customer_id == customer_id, Event.type == "profile_changed")
    ).one()
    assert set(change.properties["fields"]) == {"name", "region", "intent", "gender"}


CSV = (
    "姓名,手机号,性别,标签,wecom_external_userid\n"
    "吴女士,13811112222,女,意向:高,\n"
    "郑先生,12345,男,,\n"
    "王女士,,女,,\n"
    "冯先生,13833334444,不知道,,\n"
    "陈女士,13855556666,女,意向:高;痛点:敏感肌,wm-chen\n"
)


def test_import_a_csv_and_see_each_skipped_row_in_words(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    nothing = client.post("/settings/customers/import", data={"csrf_token": csrf})
    assert nothing.status_code == 422 and field_error(nothing.text, "file") == "请选择要导入的 CSV 文件。"
    no_id = client.post(
        "/settings/customers/import",
        data={"csrf_token": csrf},
        files={"file": ("a.csv", "姓名\n吴女士\n".encode(), "text/csv")},
    )
    assert field_error(no_id.text, "file") == "表头需要有手机号一列，或 unionid 之类的外部 ID 列。"

    strict = client.post(
        "/settings/customers/import",
        data={"csrf_token": csrf, "strict": "on"},
        files={"file": ("customers.csv", CSV.encode("gbk"), "text/csv")},
    )
    assert strict.status_code == 422 and "本次没有导入任何数据" in strict.text
    assert db.scalar(select(Customer.id)) is None

    report = client.post(
        "/settings/customers/import",
        data={"csrf_token": csrf},
        files={"file": ("customers.csv", CSV.encode("gbk"), "text/csv")},
    )
    assert report.status_code == 422
    text = report.text
    assert (
        '<tr data-row="3"><td>3</td><td>手机号</td><td class="danger-text">不是 11 位大陆手机号。</td></tr>'
        in text
    )
    assert (
        '<tr data-row="4"><td>4</td><td>手机号</td><td class="danger-text">这一行既没有手机号也没有外部 ID'
        in text
    )
    assert (
        '<tr data-row="5"><td>5</td><td>性别</td><td class="danger-text">无法识别的性别：请填 男、女 或 未知。</td></tr>'
        in text
    )
    assert 'data-figure="created"><div class="kpi-label">新客户</div><div class="kpi-value">2</div>' in text
    assert sorted(db.scalars(select(Customer.name)).all()) == ["吴女士", "陈女士"]


def test_merge_two_duplicates_by_hand(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    old = profiles.create_customer(db, tenant.org_id, {"name": "李娜", "mobile": "13800001111"})
    new = profiles.create_customer(db, tenant.org_id, {"name": "李娜", "region": "成都"})
    db.commit()
    old_id, new_id = old.id, new.id
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    found = client.get("/settings/customers/merge?q=李娜")
    assert f'data-customer-id="{old_id}"' in found.text and f'data-customer-id="{new_id}"' in found.text
    picked = client.get(f"/settings/customers/merge?q=1111&survivor_id={old_id}&merged_id={new_id}")
    assert 'id="kept-name">李娜 · 13800001111' in picked.text
    same = client.post(
        "/settings/customers/merge",
        data={"csrf_token": csrf, "survivor_id": old_id, "merged_id": old_id, "reason": "x"},
    )
    assert same.status_code == 422 and field_error(same.text, "merged_id") == "请选择两个不同的客户。"
    no_reason = client.post(
        "/settings/customers/merge",
        data={"csrf_token": csrf, "survivor_id": old_id, "merged_id": new_id, "reason": ""},
    )
    assert no_reason.status_code == 422 and field_error(no_reason.text, "reason") == "请填写此项。"
    unknown = client.post(
        "/settings/customers/merge",
        data={"csrf_token": csrf, "survivor_id": old_id, "merged_id": 999, "reason": "同一人"},
    )
    assert (
        unknown.status_code == 404
        and field_error(unknown.text, "merged_id") == "没有这个 ID 的客户（或已被合并掉）。"
    )
    done = client.post(
        "/settings/customers/merge",
        data={"csrf_token": csrf, "survivor_id": old_id, "merged_id": new_id, "reason": "同一人换了微信"},
    )
    assert done.status_code == 200 and f"客户 {new_id} 已合并到客户 {old_id}。" in done.text
    assert _customer(db, id=old_id).region == "成都"
    assert _customer(db, id=new_id).merged_into_id == old_id
    audit = db.scalars(select(MergeAudit)).one()
    assert audit.reason == "同一人换了微信" and audit.actor_id == tenant.admin_id


@pytest.mark.parametrize("path", ["/settings/customers/import", "/settings/customers/merge"])
def test_operators_may_not_import_or_merge(client: TestClient, tenant, path: str) -> None:  # type: ignore[no-untyped-def]
    console_login(client, f"operator@{tenant.slug}.test")
    assert client.get(path).status_code == 403
