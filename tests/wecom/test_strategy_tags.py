"""Rule-group tags (规则组标签) through the fake WeCom server over HTTP.

WeCom keeps them out of the corp tag library: get_corp_tag_list never lists them, get_strategy_tag_list
does, and change_external_tag carries StrategyId when one changes. siyu mirrors them through the one tag
mirror, remembering each group's rule group; the full sync reads both lists, so it neither deletes nor
duplicates them, and keeps them when WeCom refuses to list them.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from wechatpy.session.memorystorage import MemoryStorage

from siyu.customers.models import CustomerTag, Tag, TagGroup
from siyu.events.models import Event
from siyu.integrations.wecom.client import WeComClient
from siyu.wecom.sync import full_sync, sync_org
from siyu.worker.queue import sessions

from .conftest import AES_KEY, SECRET, TOKEN, Control, Wired, customer_of

RULE_GROUP = 7


def _library(db: Session, org_id: int) -> dict[str, tuple[str, int | None, set[str]]]:
    """siyu's mirrored tag groups by WeCom id: (name, rule group, WeCom ids of its tags)."""
    db.expire_all()
    groups = db.scalars(select(TagGroup).where(TagGroup.org_id == org_id, TagGroup.external_id.is_not(None)))
    return {
        str(g.external_id): (
            g.name,
            g.strategy_id,
            {str(t) for t in db.scalars(select(Tag.external_id).where(Tag.group_id == g.id))},
        )
        for g in groups
    }


def _answered(fake: Control, api: str) -> list[dict[str, int]]:
    """The list sizes of each call WeCom answered (a token refreshed on the way is retried)."""
    return [c["sizes"] for c in fake.calls(api) if c["errcode"] == 0]


def _tag_names(db: Session, customer_id: int) -> set[str]:
    db.expire_all()
    return set(
        db.scalars(
            select(Tag.name)
            .join(CustomerTag, CustomerTag.tag_id == Tag.id)
            .where(CustomerTag.customer_id == customer_id)
        )
    )


def test_a_rule_group_tag_lives_through_callbacks_and_a_full_sync_keeps_it(
    wired: Wired, db: Session, app: Any
) -> None:
    fake = wired.fake
    corp = fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高意向"]}]})["groups"][0]
    # An admin makes a rule-group tag group: WeCom calls back with StrategyId and siyu mirrors it.
    made = fake.post(
        "strategy_tags", {"strategy_id": RULE_GROUP, "group_name": "会员等级", "tags": ["金卡", "银卡"]}
    )
    gold, silver = made["tags"]["金卡"], made["tags"]["银卡"]
    sent = [e["fields"] for e in fake.http.get("/_control/events").json()["events"]]
    assert sent[-1]["Event"] == "change_external_tag" and sent[-1]["StrategyId"] == RULE_GROUP
    assert sent[-1]["TagType"] == "tag_group" and sent[-1]["Id"] == made["group_id"]
    assert _library(db, wired.org_id) == {made["group_id"]: ("会员等级", RULE_GROUP, {gold, silver})}
    # WeCom's corp library does not hold them; siyu read them from the rule-group list.
    assert _answered(fake, "externalcontact/get_strategy_tag_list") == [{"group_id": 1}]

    # A tag added to the group, then a rename: one callback each.
    bronze = fake.post(
        "strategy_tags", {"strategy_id": RULE_GROUP, "group_id": made["group_id"], "tags": ["铜卡"]}
    )["tags"]["铜卡"]
    fake.post("strategy_tags/edit", {"id": gold, "name": "金卡会员"})
    assert _library(db, wired.org_id)[made["group_id"]] == ("会员等级", RULE_GROUP, {gold, silver, bronze})
    assert db.scalar(select(Tag.name).where(Tag.external_id == gold)) == "金卡会员"

    # A customer tagged with it in WeCom shows it.
    eid = fake.post(
        "contacts",
        {
            "emit": True,
            "contacts": [
                {
                    "name": "会员客",
                    "follow": [{"userid": "zhangsan", "tag_ids": [gold, corp["tags"]["高意向"]]}],
                }
            ],
        },
    )["external_userids"][0]
    customer = customer_of(db, wired.org_id, eid)
    assert _tag_names(db, customer) == {"金卡会员", "高意向"}

    # The full sync reads both lists: nothing deleted, nothing made twice, the customer keeps the tag.
    tags_before = db.scalar(select(func.count()).select_from(Tag).where(Tag.org_id == wired.org_id))
    report = sync_org(sessions(), wired.org_id, app.state.settings.resolved_secret_key())
    assert report.strategy_tags_error == ""
    assert db.scalar(select(func.count()).select_from(Tag).where(Tag.org_id == wired.org_id)) == tags_before
    assert _library(db, wired.org_id)[made["group_id"]] == ("会员等级", RULE_GROUP, {gold, silver, bronze})
    assert _tag_names(db, customer) == {"金卡会员", "高意向"}
    assert "tags" not in report.counts or report.counts["tags"].ended == 0

    # Deleted in WeCom: removed from the library and from the customer (tag_removed, origin wecom).
    fake.post("strategy_tags/delete", {"tag_ids": [gold]})
    assert gold not in _library(db, wired.org_id)[made["group_id"]][2]
    assert _tag_names(db, customer) == {"高意向"}
    removed = db.scalars(
        select(Event).where(Event.customer_id == customer, Event.type == "tag_removed")
    ).all()
    assert [(e.properties["external_id"], e.properties["origin"]) for e in removed] == [(gold, "wecom")]
    # The whole group deleted: gone, with its tags.
    fake.post("strategy_tags/delete", {"group_ids": [made["group_id"]]})
    assert made["group_id"] not in _library(db, wired.org_id)
    assert db.scalar(select(func.count()).select_from(Tag).where(Tag.external_id.in_([silver, bronze]))) == 0


def test_a_contact_with_a_rule_group_tag_siyu_missed_gets_it_from_the_rule_group_list(
    wired: Wired, db: Session
) -> None:
    fake = wired.fake
    # The callback of the new rule-group tag is lost.
    fake.post("config", {"callback": None})
    made = fake.post("strategy_tags", {"strategy_id": RULE_GROUP, "group_name": "会员等级", "tags": ["金卡"]})
    fake.post(
        "config", {"callback": {"url": wired.callback_url, "token": TOKEN, "encoding_aes_key": AES_KEY}}
    )
    assert _library(db, wired.org_id) == {}
    eid = fake.post(
        "contacts",
        {
            "emit": True,
            "contacts": [
                {"name": "会员客", "follow": [{"userid": "zhangsan", "tag_ids": [made["tags"]["金卡"]]}]}
            ],
        },
    )["external_userids"][0]
    # Not in the corp library: siyu asked the rule-group list for the unknown tag, mirrored it and applied it.
    assert _answered(fake, "externalcontact/get_strategy_tag_list") == [{"tag_id": 1}]
    assert _library(db, wired.org_id) == {made["group_id"]: ("会员等级", RULE_GROUP, {made["tags"]["金卡"]})}
    assert _tag_names(db, customer_of(db, wired.org_id, eid)) == {"金卡"}


def test_the_full_sync_mirrors_rule_group_tags_and_keeps_them_when_wecom_refuses_the_list(
    plain_fake: Control, db: Session, tenant: Any
) -> None:
    fake = plain_fake
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高意向"]}]})
    made = fake.post(
        "strategy_tags", {"strategy_id": RULE_GROUP, "group_name": "会员等级", "tags": ["金卡", "银卡"]}
    )
    gold = made["tags"]["金卡"]
    fake.post(
        "contacts",
        {
            "contacts": [
                {
                    "external_userid": "wm_vip",
                    "name": "会员客",
                    "follow": [{"userid": "alice", "tag_ids": [gold]}],
                }
            ]
        },
    )
    client = WeComClient(
        fake.corp_id, SECRET, base_url=fake.base_url, session=MemoryStorage(), sleep=lambda s: None
    )
    report = full_sync(db, tenant.org_id, client)
    db.commit()
    library = _library(db, tenant.org_id)
    assert library[made["group_id"]] == ("会员等级", RULE_GROUP, {gold, made["tags"]["银卡"]})
    assert [v[1] for k, v in library.items() if k != made["group_id"]] == [None]  # the corp group
    customer = customer_of(db, tenant.org_id, "wm_vip")
    assert _tag_names(db, customer) == {"金卡"}
    assert report.counts["tags"].created == 3

    # WeCom stops listing rule-group tags to this app (48002): the sync says so and deletes none of them.
    fake.post("config", {"forbidden_apis": ["externalcontact/get_strategy_tag_list"]})
    again = full_sync(db, tenant.org_id, client)
    db.commit()
    assert again.strategy_tags_error.startswith("48002")
    assert _library(db, tenant.org_id) == library
    assert _tag_names(db, customer) == {"金卡"}
    # Listed again, one of them gone meanwhile: now the sync removes that one, and only that one.
    fake.post("config", {"forbidden_apis": []})
    fake.post("strategy_tags/delete", {"tag_ids": [made["tags"]["银卡"]]})
    third = full_sync(db, tenant.org_id, client)
    db.commit()
    assert third.strategy_tags_error == "" and third.counts["tags"].ended == 1
    assert _library(db, tenant.org_id)[made["group_id"]] == ("会员等级", RULE_GROUP, {gold})


def test_tagging_a_customer_with_a_rule_group_tag_in_siyu_writes_it_back_by_its_wecom_id(
    wired: Wired, db: Session, client: TestClient, tenant: Any, app: Any
) -> None:
    fake = wired.fake
    made = fake.post("strategy_tags", {"strategy_id": RULE_GROUP, "group_name": "会员等级", "tags": ["金卡"]})
    fake.post(
        "contacts",
        {"contacts": [{"external_userid": "wm_vip", "name": "会员客", "follow": [{"userid": "zhangsan"}]}]},
    )
    sync_org(sessions(), wired.org_id, app.state.settings.resolved_secret_key())
    db.expire_all()
    tag_id = db.scalar(select(Tag.id).where(Tag.external_id == made["tags"]["金卡"]))
    customer = customer_of(db, wired.org_id, "wm_vip")
    res = client.post(f"/api/v1/customers/{customer}/tags/{tag_id}", headers=tenant.auth())
    assert res.status_code == 200, res.text
    # mark_tag with the rule-group tag's own id: nothing created in the corp library.
    assert fake.calls("externalcontact/add_corp_tag") == []
    seen = fake.http.get("/_control/contacts/wm_vip").json()["follow"]
    assert seen[0]["tag_ids"] == [made["tags"]["金卡"]] and seen[0]["tags"] == ["金卡"]
