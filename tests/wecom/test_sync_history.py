"""History honestly dated: a first sync backfills WeCom's own dates; later syncs record news as events."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from wechatpy.session.memorystorage import MemoryStorage

from siyu.customers.models import Customer, CustomerIdentity, FollowRelation, IdentityKind, TagGroup
from siyu.events.models import Event
from siyu.integrations.channel import CorpTag, CorpTagGroup
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.clock import ensure_utc, utcnow
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal
from siyu.web import queries
from siyu.wecom.sync import full_sync
from siyu.wecom.tag_events import upsert_corp_tags

from .conftest import SECRET, Control

DAY = 86400


@pytest.fixture
def fake(plain_fake: Control) -> Control:
    """These tests seed their own members."""
    return plain_fake


@pytest.fixture
def wecom(fake: Control) -> WeComClient:
    return WeComClient(
        fake.corp_id, SECRET, base_url=fake.base_url, session=MemoryStorage(), sleep=lambda s: None
    )


def _types(db: Session, org_id: int, **where: Any) -> Counter[str]:
    stmt = select(Event.type, func.count()).where(Event.org_id == org_id).group_by(Event.type)
    for key, value in where.items():
        stmt = stmt.where(getattr(Event, key) == value)
    return Counter({str(t): int(n) for t, n in db.execute(stmt)})


def test_first_sync_of_old_contacts_is_backfill_dated_by_createtime_and_not_new_today(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    now = int(utcnow().timestamp())
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    tag = fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高意向"]}]})["groups"][0]["tags"][
        "高意向"
    ]
    contacts = []
    for i in range(300):
        # Followed between 60 and 359 days ago; every tenth also by bob, a month later.
        added = now - (60 + i) * DAY
        follows = [{"userid": "alice", "createtime": added, "tag_ids": [tag] if i % 3 == 0 else []}]
        if i % 10 == 0:
            follows.append({"userid": "bob", "createtime": added + 30 * DAY})
        contacts.append({"external_userid": f"wm_{i:03d}", "name": f"客户{i}", "follow": follows})
    fake.post("contacts", {"contacts": contacts})
    org = tenant.org_id
    full_sync(db, org, wecom, chunk_size=7)

    # Each follow starts at WeCom's createtime, each customer at their earliest follow.
    first_follow = dict(
        db.execute(
            select(CustomerIdentity.value, func.min(FollowRelation.since))
            .join(FollowRelation, FollowRelation.customer_id == CustomerIdentity.customer_id)
            .where(
                CustomerIdentity.org_id == org, CustomerIdentity.kind == IdentityKind.wecom_external_userid
            )
            .group_by(CustomerIdentity.value)
        ).all()
    )
    for i in (0, 10, 299):
        assert int(ensure_utc(first_follow[f"wm_{i:03d}"]).timestamp()) == now - (60 + i) * DAY
    created = dict(
        db.execute(
            select(CustomerIdentity.value, Customer.created_at)
            .join(Customer, Customer.id == CustomerIdentity.customer_id)
            .where(CustomerIdentity.org_id == org)
        ).all()
    )
    assert all(ensure_utc(created[eid]) == ensure_utc(first_follow[eid]) for eid in created)

    # The events: every one flagged backfill and dated in the past.
    assert _types(db, org) == Counter({"customer_added": 300, "follow_started": 330, "tag_added": 100})
    assert _types(db, org, backfill=False) == Counter()
    newest = db.scalar(
        select(func.max(Event.occurred_at)).where(Event.org_id == org, Event.type != "tag_added")
    )
    assert ensure_utc(newest) <= utcnow() - timedelta(days=29)  # type: ignore[arg-type]

    # The dashboard: nobody is new today, and the chart shows no spike.
    admin = Principal(org, tenant.admin_id, Role.admin)
    assert queries.headline(db, admin).new_today == 0
    series = queries.added_per_day(db, admin)
    assert max(series.totals) <= 2 and sum(series.totals[-7:]) == 0


def test_later_syncs_record_what_they_find_new_as_ordinary_events(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    now = int(utcnow().timestamp())
    fake.post("members", {"members": [{"userid": "alice"}]})
    old = now - 90 * DAY
    fake.post(
        "contacts",
        {
            "contacts": [
                {
                    "external_userid": "wm_old",
                    "name": "老客",
                    "follow": [{"userid": "alice", "createtime": old}],
                }
            ]
        },
    )
    org = tenant.org_id
    full_sync(db, org, wecom)
    assert _types(db, org, backfill=True) == Counter({"customer_added": 1, "follow_started": 1})
    # A contact added two hours ago whose callback was lost, and one added today.
    fake.post(
        "contacts",
        {
            "contacts": [
                {
                    "external_userid": "wm_new",
                    "name": "新客",
                    "follow": [{"userid": "alice", "createtime": now - 7200}],
                }
            ]
        },
    )
    full_sync(db, org, wecom)
    assert _types(db, org, backfill=False) == Counter({"customer_added": 1, "follow_started": 1})
    started = db.scalar(
        select(Event.occurred_at).where(
            Event.org_id == org, Event.type == "follow_started", Event.backfill.is_(False)
        )
    )
    assert int(ensure_utc(started).timestamp()) == now - 7200  # type: ignore[arg-type]
    admin = Principal(org, tenant.admin_id, Role.admin)
    expected = (
        1
        if (utcnow() - timedelta(hours=2)).astimezone(queries.ZoneInfo("Asia/Shanghai")).date()
        == (utcnow().astimezone(queries.ZoneInfo("Asia/Shanghai")).date())
        else 0
    )
    assert queries.headline(db, admin).new_today == expected
    # Deleted in WeCom: the next sync ends the follow as an ordinary event.
    fake.post("contacts/wm_new/delete", {"userid": "alice"})
    full_sync(db, org, wecom)
    assert _types(db, org, backfill=False)["follow_ended"] == 1


def test_events_written_by_a_sync_counted_by_type(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    tags = fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高意向", "低意向"]}]})["groups"][0][
        "tags"
    ]
    fake.post(
        "contacts",
        {
            "contacts": [
                {
                    "external_userid": "wm_a",
                    "name": "王芳",
                    "follow": [{"userid": "alice", "tag_ids": [tags["高意向"]]}],
                },
                {
                    "external_userid": "wm_b",
                    "name": "李强",
                    "follow": [{"userid": "alice"}, {"userid": "bob"}],
                },
                {
                    "external_userid": "wm_c",
                    "name": "张伟",
                    "follow": [{"userid": "bob", "tag_ids": [tags["低意向"]]}],
                },
            ]
        },
    )
    org = tenant.org_id
    full_sync(db, org, wecom)
    assert _types(db, org) == Counter({"customer_added": 3, "follow_started": 4, "tag_added": 2})
    # Re-running changes nothing and records nothing.
    full_sync(db, org, wecom)
    assert _types(db, org) == Counter({"customer_added": 3, "follow_started": 4, "tag_added": 2})
    # wm_c leaves bob, gets the other tag; wm_a loses hers.
    fake.post("contacts/wm_c/delete", {"userid": "bob"})
    fake.post("contacts/wm_a/edit", {"userid": "alice", "tag_ids": []})
    full_sync(db, org, wecom)
    counts = _types(db, org)
    assert counts["follow_ended"] == 1 and counts["tag_removed"] == 1
    # wm_c's only follow ended: the stage rules mark them lost, set-wise on the sync's batch.
    assert counts["stage_changed"] == 1


def test_one_clash_rule_for_mirrored_tag_names_on_every_path(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    # A callback mirrors two WeCom groups that share a name: the second gets "name (2)".
    upsert_corp_tags(
        db,
        org,
        [
            CorpTagGroup("g1", "意向", tags=[CorpTag("t1", "高")]),
            CorpTagGroup("g2", "意向", tags=[CorpTag("t2", "高"), CorpTag("t3", "中")]),
        ],
    )
    names = dict(db.execute(select(TagGroup.external_id, TagGroup.name).where(TagGroup.org_id == org)).all())
    assert names == {"g1": "意向", "g2": "意向 (2)"}
    # The sync mirrors the same library by the same rule: nothing renamed, the same groups.
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post(
        "tags",
        {"groups": [{"group_name": "来源", "tags": ["抖音"]}, {"group_name": "来源", "tags": ["淘宝"]}]},
    )
    report = full_sync(db, org, wecom)
    synced = sorted(db.scalars(select(TagGroup.name).where(TagGroup.org_id == org)))
    # g1/g2 are gone from WeCom (the sync read the whole library); its two 来源 groups clash the same way.
    assert synced == ["来源", "来源 (2)"]
    assert report.counts["tag_groups"].created == 2
