"""Channel codes in the console: the API's validation in the reader's words beside each field, values kept;
a valid form issues the code (through the same service as the API) and shows its QR sheet."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels.models import ChannelCode

from .settings_fixtures import Setup, console_login, field_error, setup_org


@pytest.fixture
def org(db: Session, tenant) -> Setup:  # type: ignore[no-untyped-def]
    return setup_org(db, tenant)


def _form(org: Setup, csrf: str, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "csrf_token": csrf,
        "name": "春季包裹卡",
        "state": "parcel-spring",
        "channel": "taobao_parcel_card",
        "pool_id": str(org.pool_id),
        "carrier": "sandbox",
        "tag_ids": [str(org.tag_ids[1])],
        "remark_template": "{name}-{channel}",
        "welcome_message": "你好，送你一张优惠券",
        "cost": "1,200.50",
    }
    data.update(changes)
    return data


def test_bad_fields_are_refused_in_chinese_beside_each_field_with_the_values_kept(
    client: TestClient, org: Setup, db: Session
) -> None:
    csrf = console_login(client, f"admin@{org.tenant.slug}.test")  # type: ignore[attr-defined]
    page = client.post(
        "/settings/channel-codes",
        data=_form(
            org, csrf, name="", state="bad state!", remark_template="{phone}", cost="12.345", pool_id=""
        ),
    )
    assert page.status_code == 422
    text = page.text
    assert field_error(text, "name") == "请填写此项。"
    assert field_error(text, "state") == "只能使用字母、数字、_ - 和 .（最多 30 个字符）。"
    assert "{phone}" in text and "bad state!" in text  # what was typed stays in the form
    assert field_error(text, "remark_template").startswith("备注模板只能使用")  # type: ignore[union-attr]
    assert field_error(text, "cost") == "请填写以元为单位的金额，例如 500 或 12.50。"
    assert field_error(text, "pool_id") == "请选择一个至少有一个在用账号的分流池。"
    assert 'value="你好，送你一张优惠券"' not in text and "你好，送你一张优惠券</textarea>" in text
    assert db.scalar(select(ChannelCode.id)) is None


def test_a_duplicate_code_id_is_named_in_english_too(client: TestClient, org: Setup) -> None:
    csrf = console_login(client, f"admin@{org.tenant.slug}.test", lang="en")  # type: ignore[attr-defined]
    assert (
        client.post("/settings/channel-codes", data=_form(org, csrf), follow_redirects=False).status_code
        == 303
    )
    again = client.post("/settings/channel-codes", data=_form(org, csrf, name="again"))
    assert again.status_code == 409
    assert field_error(again.text, "state") == "Another code already uses this code ID: choose another."
    assert 'value="again"' in again.text


def test_create_edit_and_print_a_code(client: TestClient, org: Setup, db: Session) -> None:
    csrf = console_login(client, f"admin@{org.tenant.slug}.test")  # type: ignore[attr-defined]
    created = client.post("/settings/channel-codes", data=_form(org, csrf), follow_redirects=False)
    assert created.status_code == 303
    code = db.scalars(select(ChannelCode)).one()
    assert created.headers["location"] == f"/settings/channel-codes/{code.id}/qr?created=1"
    assert (code.name, code.channel, code.pool_id, code.tag_ids) == (
        "春季包裹卡",
        "taobao_parcel_card",
        org.pool_id,
        [org.tag_ids[1]],
    )
    assert (code.cost_fen, code.remark_template, code.welcome_message) == (
        120050,
        "{name}-{channel}",
        "你好，送你一张优惠券",
    )
    sheet = client.get(created.headers["location"])
    assert sheet.status_code == 200 and "渠道活码已创建" in sheet.text
    assert f"/api/v1/channels/codes/{code.id}/qr.png" in sheet.text
    png = client.get(f"/api/v1/channels/codes/{code.id}/qr.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

    form = client.get(f"/settings/channel-codes/{code.id}/edit")
    assert "1200.50" in form.text and "parcel-spring" in form.text
    bad = client.post(
        f"/settings/channel-codes/{code.id}", data=_form(org, csrf, cost="-3", welcome_message="新欢迎语")
    )
    assert bad.status_code == 422 and field_error(bad.text, "cost") and "新欢迎语" in bad.text
    saved = client.post(
        f"/settings/channel-codes/{code.id}",
        data=_form(org, csrf, cost="88", tag_ids=[str(t) for t in org.tag_ids], status="archived"),
        follow_redirects=False,
    )
    assert saved.status_code == 303
    db.expire_all()
    code = db.scalars(select(ChannelCode)).one()
    assert code.cost_fen == 8800 and code.tag_ids == org.tag_ids and code.status.value == "archived"
    listing = client.get("/settings/channel-codes")
    assert "春季包裹卡" in listing.text and "淘宝包裹卡" in listing.text and "¥88.00" in listing.text


def test_operators_may_not_manage_codes(client: TestClient, org: Setup) -> None:
    console_login(client, f"operator@{org.tenant.slug}.test")  # type: ignore[attr-defined]
    assert client.get("/settings/channel-codes").status_code == 403
    assert client.get("/settings", follow_redirects=False).headers["location"] == "/settings/tokens"
