"""Write-back to WeCom through the real path: the customers API (or a WeCom callback) changes a customer,
the outbox drains after commit (Huey immediate mode), and the fake WeCom server shows what was written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.wecom.conftest import Control, Wired, console_login, customer_of

from siyu.customers import writeback
from siyu.customers.models import Tag, TagGroup
from siyu.events import outbox
from siyu.events.models import OutboxItem
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.clock import utcnow
from siyu.wecom.sync import sync_org
from siyu.wecom.writeback import HANDLER, LINK
from siyu.worker.queue import sessions

EID = "wmXiaoLi0001"


@dataclass
class World:
    """A WeCom contact followed by zhangsan and lisi, synced into siyu, with the tag library mirrored."""

    wired: Wired
    customer_id: int
    tags: dict[str, int]  # siyu tag id by name
    wecom_tags: dict[str, str]  # WeCom tag id by name


@pytest.fixture
def world(wired: Wired, db: Session, app: Any) -> World:
    groups = wired.fake.post(
        "tags", {"groups": [{"group_name": "意向", "tags": ["高意向", "低意向", "已购"]}]}
    )
    wecom_tags = groups["groups"][0]["tags"]
    wired.fake.post(
        "contacts",
        {
            "contacts": [
                {
                    "external_userid": EID,
                    "name": "小李",
                    "follow": [
                        {"userid": "zhangsan", "tag_ids": [wecom_tags["已购"]]},
                        {"userid": "lisi"},
                    ],
                }
            ]
        },
    )
    sync_org(sessions(), wired.org_id, app.state.settings.resolved_secret_key())
    db.expire_all()
    tags = {t.name: t.id for t in db.scalars(select(Tag).where(Tag.org_id == wired.org_id))}
    assert {"高意向", "低意向", "已购"} <= set(tags)
    wired.fake.http.delete("/_control/calls")
    return World(wired, customer_of(db, wired.org_id, EID), tags, wecom_tags)


def _on_fake(fake: Control) -> dict[str, dict[str, Any]]:
    """What each member sees of the contact on the fake: tags (names), remark, mobiles."""
    res = fake.http.get(f"/_control/contacts/{EID}")
    assert res.status_code == 200, res.text
    return {f["userid"]: f for f in res.json()["follow"]}


def _rows(db: Session) -> list[OutboxItem]:
    db.expire_all()
    return list(db.scalars(select(OutboxItem).where(OutboxItem.handler == HANDLER).order_by(OutboxItem.id)))


def _make_due(db: Session) -> None:
    db.execute(update(OutboxItem).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.commit()


def test_a_tag_added_through_the_api_appears_on_wecom_and_a_removed_one_disappears(
    world: World, client: TestClient, tenant: Any, db: Session, wecom: WeComClient
) -> None:
    fake, cid = world.wired.fake, world.customer_id
    res = client.post(f"/api/v1/customers/{cid}/tags/{world.tags['高意向']}", headers=tenant.auth())
    assert res.status_code == 200, res.text
    seen = _on_fake(fake)
    assert set(seen["zhangsan"]["tags"]) == {"高意向", "已购"}
    assert set(seen["lisi"]["tags"]) == {"高意向", "已购"}  # siyu's tags, on every member's view
    # WeCom's own contact detail (externalcontact/get) shows them too.
    detail = wecom.get_contact(EID)
    assert {f.userid: set(f.tag_ids) for f in detail.follow_users}["lisi"] == {
        world.wecom_tags["高意向"],
        world.wecom_tags["已购"],
    }
    assert [r.status for r in _rows(db)] == ["done"]

    res = client.delete(f"/api/v1/customers/{cid}/tags/{world.tags['高意向']}", headers=tenant.auth())
    assert res.status_code == 200, res.text
    seen = _on_fake(fake)
    assert seen["zhangsan"]["tags"] == ["已购"] and seen["lisi"]["tags"] == ["已购"]
    assert [r.status for r in _rows(db)] == ["done", "done"]


def test_a_redelivered_row_converges_on_the_current_state_not_on_its_delta(
    world: World, client: TestClient, tenant: Any, db: Session
) -> None:
    cid, tag = world.customer_id, world.tags["低意向"]
    assert client.post(f"/api/v1/customers/{cid}/tags/{tag}", headers=tenant.auth()).status_code == 200
    assert client.delete(f"/api/v1/customers/{cid}/tags/{tag}", headers=tenant.auth()).status_code == 200
    added = _rows(db)[0]
    assert added.event_type == "tag_added"
    # At least once: the add is handled again after the removal (a lease ran out). It must not put the tag
    # back: the tag is no longer on the customer, so it is removed instead.
    writeback.converge(LINK, db, added)
    db.commit()
    assert all("低意向" not in f["tags"] for f in _on_fake(world.wired.fake).values())


def test_the_remark_is_written_with_the_mobile(
    world: World, client: TestClient, tenant: Any, db: Session
) -> None:
    res = client.patch(
        f"/api/v1/customers/{world.customer_id}", json={"mobile": "13812345678"}, headers=tenant.auth()
    )
    assert res.status_code == 200, res.text
    remark = client.get(f"/api/v1/customers/{world.customer_id}", headers=tenant.auth("owner")).json()[
        "remark"
    ]
    assert "13812345678" in remark and len(remark) <= 20
    for follow in _on_fake(world.wired.fake).values():
        assert follow["remark"] == remark
        assert follow["remark_mobiles"] == ["13812345678"]

    # A remark typed by hand (the mobile unchanged) is written as typed.
    res = client.patch(
        f"/api/v1/customers/{world.customer_id}", json={"remark": "老客户小李"}, headers=tenant.auth()
    )
    assert res.status_code == 200, res.text
    assert {f["remark"] for f in _on_fake(world.wired.fake).values()} == {"老客户小李"}

    # A new mobile under a hand-typed remark changes no remark (profile_changed only): written all the same.
    res = client.patch(
        f"/api/v1/customers/{world.customer_id}", json={"mobile": "13900001111"}, headers=tenant.auth()
    )
    assert res.status_code == 200, res.text
    for follow in _on_fake(world.wired.fake).values():
        assert (follow["remark"], follow["remark_mobiles"]) == ("老客户小李", ["13900001111"])


def test_a_change_that_came_from_a_wecom_callback_is_not_written_back(
    world: World, client: TestClient, tenant: Any, db: Session
) -> None:
    fake = world.wired.fake
    keep = [world.wecom_tags["已购"], world.wecom_tags["高意向"]]
    delivered = fake.post(
        f"contacts/{EID}/edit", {"userid": "zhangsan", "tag_ids": keep, "remark": "小李VIP"}
    )
    assert delivered["status"] == 200, delivered
    tags = client.get(f"/api/v1/customers/{world.customer_id}/tags", headers=tenant.auth()).json()
    assert {t["name"] for t in tags} == {"已购", "高意向"}  # the callback was applied in siyu
    assert _rows(db) == []
    assert fake.calls("externalcontact/mark_tag") == [] and fake.calls("externalcontact/remark") == []
    assert _on_fake(fake)["lisi"]["tags"] == []  # nothing echoed to the other member either


def test_45009_is_retried_after_a_minute_and_not_counted_as_a_failure(
    world: World, client: TestClient, tenant: Any, db: Session
) -> None:
    fake = world.wired.fake
    fake.post("faults", {"api": "externalcontact/mark_tag", "errcodes": [45009]})
    res = client.post(
        f"/api/v1/customers/{world.customer_id}/tags/{world.tags['高意向']}", headers=tenant.auth()
    )
    assert res.status_code == 200, res.text
    (row,) = _rows(db)
    assert (row.status, row.attempts) == ("pending", 0)
    assert "45009" in row.last_error
    assert row.next_attempt_at - utcnow() > timedelta(seconds=50)  # a minute, WeCom's counting window
    assert all("高意向" not in f["tags"] for f in _on_fake(fake).values())
    health = outbox.health(db, world.wired.org_id, HANDLER)
    assert (health.pending, health.retrying, health.failed) == (1, 0, 0)
    # Not due yet: a drain leaves it alone; once due it is written.
    assert outbox.drain(sessions()) == {}
    _make_due(db)
    assert outbox.drain(sessions()) == {"done": 1}
    assert all("高意向" in f["tags"] for f in _on_fake(fake).values())


def test_a_permanent_error_shows_on_the_settings_page_in_words_and_can_be_retried(
    world: World, client: TestClient, tenant: Any, db: Session
) -> None:
    fake = world.wired.fake
    fake.post("faults", {"api": "externalcontact/mark_tag", "errcodes": [48002]})
    res = client.post(
        f"/api/v1/customers/{world.customer_id}/tags/{world.tags['高意向']}", headers=tenant.auth()
    )
    assert res.status_code == 200, res.text
    _make_due(db)
    outbox.drain(sessions())
    # WeCom refused the request itself (no API permission): retrying cannot help, so it fails at once.
    (row,) = _rows(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "48002" in row.last_error and "api forbidden" in row.last_error

    client.cookies.set("lang", "zh_CN")
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    page = client.get("/wecom/settings").text
    assert _figure(page, "writeback-failed") == 1
    assert "企业微信应用无权修改客户标签或备注" in page
    assert 'data-errcode="48002"' in page
    assert "重试失败的回写" in page

    retried = client.post("/wecom/writeback/retry", data={"csrf_token": csrf})
    assert retried.status_code == 200 and 'data-retried="1"' in retried.text
    outbox.drain(sessions())  # the commit asked for a drain; this one finds the row done or does it
    assert all("高意向" in f["tags"] for f in _on_fake(fake).values())
    page = client.get("/wecom/settings").text
    assert _figure(page, "writeback-failed") == 0 and _figure(page, "writeback-done") == 1


def test_the_switch_turns_write_back_off(world: World, client: TestClient, tenant: Any, db: Session) -> None:
    client.cookies.set("lang", "en")
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    page = client.get("/wecom/settings").text
    assert re.search(r'name="enabled" value="on"\s+checked', page)  # on by default with credentials
    assert client.post("/wecom/writeback", data={"csrf_token": csrf}).status_code == 200
    assert not re.search(r'name="enabled" value="on"\s+checked', client.get("/wecom/settings").text)

    res = client.post(
        f"/api/v1/customers/{world.customer_id}/tags/{world.tags['高意向']}", headers=tenant.auth()
    )
    assert res.status_code == 200, res.text
    assert _rows(db) == []
    assert world.wired.fake.calls("externalcontact/mark_tag") == []

    assert client.post("/wecom/writeback", data={"csrf_token": csrf, "enabled": "on"}).status_code == 200
    res = client.delete(
        f"/api/v1/customers/{world.customer_id}/tags/{world.tags['高意向']}", headers=tenant.auth()
    )
    assert res.status_code == 200, res.text
    assert [r.status for r in _rows(db)] == ["done"]


def test_customers_without_wecom_are_not_queued(
    world: World, client: TestClient, tenant: Any, db: Session
) -> None:
    other = client.post("/api/v1/customers", json={"name": "王五"}, headers=tenant.auth()).json()["id"]
    res = client.post(f"/api/v1/customers/{other}/tags/{world.tags['高意向']}", headers=tenant.auth())
    assert res.status_code == 200, res.text
    assert _rows(db) == []
    assert world.wired.fake.calls("externalcontact/mark_tag") == []


def _library(wecom: WeComClient) -> dict[str, dict[str, str]]:
    """WeCom's tag library: tag ids by name, by group name."""
    return {g.group_name: {t.name: t.id for t in g.tags} for g in wecom.list_corp_tags()}


def _siyu_tag(client: TestClient, tenant: Any, group_id: int, name: str) -> int:
    res = client.post("/api/v1/tags", json={"group_id": group_id, "name": name}, headers=tenant.auth())
    assert res.status_code == 201, res.text
    return int(res.json()["id"])


def _group_of(db: Session, tag_id: int) -> TagGroup:
    db.expire_all()
    tag = db.get(Tag, tag_id)
    assert tag is not None
    group = db.get(TagGroup, tag.group_id)
    assert group is not None
    return group


def test_a_tag_made_only_in_siyu_is_put_in_wecoms_library_then_on_the_contact(
    world: World, client: TestClient, tenant: Any, db: Session, wecom: WeComClient
) -> None:
    fake, cid = world.wired.fake, world.customer_id
    # A new group made in the console, and a tag made in siyu inside the group mirrored from WeCom (as
    # customers.ensure_tag makes 意向/求资料 on a lead conversion).
    group = client.post(
        "/api/v1/tag-groups", json={"name": "私域", "tags": ["只在私域"]}, headers=tenant.auth()
    ).json()
    siyu_only = group["tags"][0]["id"]
    intent = _siyu_tag(client, tenant, _group_of(db, world.tags["高意向"]).id, "求资料")
    res = client.put(
        f"/api/v1/customers/{cid}/tags",
        json={"tag_ids": [siyu_only, intent, world.tags["已购"]]},
        headers=tenant.auth(),
    )
    assert res.status_code == 200, res.text

    library = _library(wecom)
    assert library["私域"] == {"只在私域": library["私域"]["只在私域"]}  # a new group, named as in siyu
    assert set(library["意向"]) == {"高意向", "低意向", "已购", "求资料"}  # added to the mirrored group
    seen = _on_fake(fake)
    assert set(seen["zhangsan"]["tags"]) == set(seen["lisi"]["tags"]) == {"只在私域", "求资料", "已购"}
    db.expire_all()
    assert db.get(Tag, siyu_only).external_id == library["私域"]["只在私域"]  # type: ignore[union-attr]
    assert db.get(Tag, intent).external_id == library["意向"]["求资料"]  # type: ignore[union-attr]
    assert _group_of(db, siyu_only).external_id == wecom.list_corp_tags()[-1].group_id
    assert {r.status for r in _rows(db)} == {"done"}
    created = len(fake.calls("externalcontact/add_corp_tag"))
    assert created == 2  # one call per group, not per event or per member

    # Idempotent: every row again (a redelivery), and a removal and re-add through the API, create nothing.
    for row in _rows(db):
        writeback.converge(LINK, db, row)
    db.commit()
    cid_path = f"/api/v1/customers/{cid}/tags/{siyu_only}"
    assert client.delete(cid_path, headers=tenant.auth()).status_code == 200
    assert "只在私域" not in _on_fake(fake)["zhangsan"]["tags"]
    assert client.post(cid_path, headers=tenant.auth()).status_code == 200
    assert "只在私域" in _on_fake(fake)["lisi"]["tags"]
    assert len(fake.calls("externalcontact/add_corp_tag")) == created
    assert _library(wecom) == library
    assert {r.status for r in _rows(db)} == {"done"}


def test_a_name_already_in_wecoms_library_is_linked_not_created_twice(
    world: World, client: TestClient, tenant: Any, db: Session, wecom: WeComClient
) -> None:
    fake, cid = world.wired.fake, world.customer_id
    # Made in WeCom after the last sync, so siyu does not know them: a group of its own, and a tag in the
    # group siyu mirrors.
    made = fake.post("tags", {"groups": [{"group_name": "活动", "tags": ["双11"]}]})["groups"][0]
    intent_group = _group_of(db, world.tags["高意向"])
    assert intent_group.external_id
    repeat_id = wecom.add_corp_tag(["复购"], group_id=intent_group.external_id).tags[0].id
    fake.http.delete("/_control/calls")
    # The same names made in siyu.
    group = client.post(
        "/api/v1/tag-groups", json={"name": "活动", "tags": ["双11"]}, headers=tenant.auth()
    ).json()
    double11 = group["tags"][0]["id"]
    repeat = _siyu_tag(client, tenant, intent_group.id, "复购")
    res = client.put(
        f"/api/v1/customers/{cid}/tags",
        json={"tag_ids": [double11, repeat, world.tags["已购"]]},
        headers=tenant.auth(),
    )
    assert res.status_code == 200, res.text

    # WeCom answered 40071 for both groups; write-back read the library and took the existing ids.
    assert {r.status for r in _rows(db)} == {"done"}
    db.expire_all()
    assert db.get(Tag, double11).external_id == made["tags"]["双11"]  # type: ignore[union-attr]
    assert _group_of(db, double11).external_id == made["group_id"]
    assert db.get(Tag, repeat).external_id == repeat_id  # type: ignore[union-attr]
    assert fake.calls("externalcontact/get_corp_tag_list")
    library = _library(wecom)
    assert library["活动"] == {"双11": made["tags"]["双11"]}
    assert list(library["意向"]).count("复购") == 1
    for follow in _on_fake(fake).values():
        assert {"双11", "复购"} <= set(follow["tags"])


def test_a_tag_deleted_in_wecom_is_not_created_again(
    world: World, client: TestClient, tenant: Any, db: Session, wecom: WeComClient
) -> None:
    fake = world.wired.fake
    # An admin deletes 低意向 in WeCom and the callback is lost: siyu still holds it with its old id.
    fake.post(f"tags/{world.wecom_tags['低意向']}/delete")
    res = client.post(
        f"/api/v1/customers/{world.customer_id}/tags/{world.tags['低意向']}", headers=tenant.auth()
    )
    assert res.status_code == 200, res.text
    (row,) = _rows(db)
    assert row.status == "failed" and "40068" in row.last_error  # settings page: sync to refresh the tags
    assert fake.calls("externalcontact/add_corp_tag") == []
    assert "低意向" not in _library(wecom)["意向"]


def _figure(html: str, name: str) -> int:
    found = re.search(
        rf'data-figure="{name}">\s*<div class="kpi-label">[^<]*</div>\s*<div class="kpi-value[^"]*">([\d,]+)</div>',
        html,
    )
    assert found, html
    return int(found.group(1).replace(",", ""))
