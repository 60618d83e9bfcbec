"""Tag groups, tags and lead reply templates in the console: the API's rules with reasons in words, beside the
form that was refused, with what was typed kept."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers import customer_tagging, profiles
from siyu.customers.models import CustomerTag, Tag, TagGroup
from siyu.leads import service as leads

from .settings_fixtures import console_login, field_error


def _group(db: Session, name: str) -> TagGroup:
    db.expire_all()
    return db.scalars(select(TagGroup).where(TagGroup.name == name)).one()


def _errors_in_form(page: str, action: str) -> list[str]:
    """The error messages inside the form posting to ``action``."""
    form = re.search(rf'<form method="post" action="{re.escape(action)}".*?</form>', page, re.S)
    assert form, action
    return re.findall(r'data-error-for="[^"]+">([^<]*)<', form.group(0))


def test_groups_and_tags_are_created_renamed_and_deleted(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    made = client.post(
        "/settings/tags/groups", data={"csrf_token": csrf, "name": "痛点", "tags": "痘痘，敏感肌\n干皮"}
    )
    assert made.status_code == 200
    group = _group(db, "痛点")
    group_id = group.id
    names = db.scalars(select(Tag.name).where(Tag.group_id == group.id).order_by(Tag.sort_order)).all()
    assert names == ["痘痘", "敏感肌", "干皮"]

    dup = client.post("/settings/tags/groups", data={"csrf_token": csrf, "name": "痛点", "tags": "a,a"})
    assert dup.status_code == 422
    assert _errors_in_form(dup.text, "/settings/tags/groups") == ["标签名称须为 1 到 60 个字符，且不能重复。"]
    dup = client.post("/settings/tags/groups", data={"csrf_token": csrf, "name": "痛点", "tags": "油皮"})
    assert dup.status_code == 409 and field_error(dup.text, "name") == "这个名称已被使用，请换一个。"
    assert "油皮</textarea>" in dup.text

    added = client.post(f"/settings/tags/groups/{group.id}/tags", data={"csrf_token": csrf, "name": "痘痘"})
    assert added.status_code == 409
    assert _errors_in_form(added.text, f"/settings/tags/groups/{group.id}/tags") == [
        "这个名称已被使用，请换一个。"
    ]
    added = client.post(f"/settings/tags/groups/{group.id}/tags", data={"csrf_token": csrf, "name": "黑头"})
    assert added.status_code == 200 and '<span class="tag"' in added.text and "黑头" in added.text

    tag = db.scalars(select(Tag).where(Tag.name == "干皮")).one()
    tag_id = tag.id
    customer = profiles.create_customer(db, tenant.org_id, {"name": "赵女士"})
    customer_tagging.change_tags(db, tenant.org_id, customer.id, add=[tag_id])
    db.commit()
    customer_id = customer.id
    too_long = client.post(f"/settings/tags/{tag_id}", data={"csrf_token": csrf, "name": "长" * 61})
    assert too_long.status_code == 422
    assert _errors_in_form(too_long.text, f"/settings/tags/{tag_id}") == ["最多 60 个字符。"]
    assert (
        client.post(f"/settings/tags/{tag_id}", data={"csrf_token": csrf, "name": "干性皮肤"}).status_code
        == 200
    )
    db.expire_all()
    assert db.get(Tag, tag_id).name == "干性皮肤"  # type: ignore[union-attr]
    assert client.post(f"/settings/tags/{tag_id}/delete", data={"csrf_token": csrf}).status_code == 200
    db.expire_all()
    assert db.get(Tag, tag_id) is None
    assert db.scalar(select(CustomerTag.tag_id).where(CustomerTag.customer_id == customer_id)) is None

    renamed = client.post(f"/settings/tags/groups/{group_id}", data={"csrf_token": csrf, "name": "皮肤问题"})
    assert renamed.status_code == 200 and _group(db, "皮肤问题").id == group_id
    assert (
        client.post(f"/settings/tags/groups/{group_id}/delete", data={"csrf_token": csrf}).status_code == 200
    )
    db.expire_all()
    assert db.scalar(select(Tag.id).where(Tag.group_id == group_id)) is None


def test_reply_templates_are_checked_like_the_api(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    page = client.get("/settings/reply-templates")
    assert page.status_code == 200 and "<h2>购买意向</h2>" in page.text
    bad = client.post("/settings/reply-templates/purchase", data={"csrf_token": csrf, "body": "加我 {phone}"})
    assert bad.status_code == 422
    assert _errors_in_form(bad.text, "/settings/reply-templates/purchase") == [
        "花括号里只能用 {code}（添加我们的链接）和 {name}（评论者昵称）。"
    ]
    assert "加我 {phone}</textarea>" in bad.text
    empty = client.post("/settings/reply-templates/purchase", data={"csrf_token": csrf, "body": "   "})
    assert empty.status_code == 422
    assert _errors_in_form(empty.text, "/settings/reply-templates/purchase") == ["请填写此项。"]
    assert (
        client.post("/settings/reply-templates/nonsense", data={"csrf_token": csrf, "body": "x"}).status_code
        == 422
    )
    ok = client.post(
        "/settings/reply-templates/purchase", data={"csrf_token": csrf, "body": "{name}您好，戳 {code} 下单"}
    )
    assert ok.status_code == 200 and "已保存：" in ok.text
    assert leads.reply_templates(db, tenant.org_id)["purchase"] == "{name}您好，戳 {code} 下单"


def test_operators_may_not_change_tags(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"operator@{tenant.slug}.test")
    assert client.post("/settings/tags/groups", data={"csrf_token": csrf, "name": "x"}).status_code == 403
    assert client.get("/settings/reply-templates").status_code == 403
