"""The reconciliation sync records group_joined / group_left for customer members, through the fake WeCom
server: a first sync of a group backfills its members' joins at WeCom's join_time, later syncs record what
changed between two snapshots, a sync that finds nothing new records nothing, and staff leave no events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers.models import Customer, Stage
from siyu.events.models import Event
from siyu.groups.models import CustomerGroup
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.clock import ensure_utc
from siyu.wecom.sync import full_sync

from .conftest import Control, customer_of

JOINED = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)  # long before the first sync


def _group_events(db: Session, org_id: int) -> list[tuple[str, int, datetime, bool, dict[str, Any]]]:
    db.expire_all()
    return [
        (e.type, e.customer_id, ensure_utc(e.occurred_at), e.backfill, e.properties)
        for e in db.scalars(
            select(Event)
            .where(Event.org_id == org_id, Event.type.in_(["group_joined", "group_left"]))
            .order_by(Event.id)
        )
    ]


@pytest.fixture
def seeded(fake: Control) -> str:
    """Customers wmA, wmB, wmC of zhangsan; his group (lisi, wmA, wmB in it since JOINED); its chat id."""
    contacts = [
        {"external_userid": e, "name": e, "follow": [{"userid": "zhangsan"}]} for e in ("wmA", "wmB", "wmC")
    ]
    fake.post("contacts", {"contacts": contacts})
    return str(
        fake.post(
            "groups",
            {
                "groups": [
                    {
                        "owner": "zhangsan",
                        "name": "7 天训练营",
                        "members": ["lisi", "wmA", "wmB"],
                        "join_time": int(JOINED.timestamp()),
                    }
                ]
            },
        )["chat_ids"][0]
    )


def test_a_first_sync_backfills_joins_at_wecom_join_time_and_a_quiet_sync_records_nothing(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient, seeded: str
) -> None:
    org = tenant.org_id
    full_sync(db, org, wecom)
    group = db.scalar(select(CustomerGroup).where(CustomerGroup.chat_id == seeded))
    assert group is not None
    a, b = customer_of(db, org, "wmA"), customer_of(db, org, "wmB")
    where = {"group_id": group.id, "chat_id": seeded, "scene": "invited"}
    # zhangsan (owner) and lisi are staff: only the two customers, at their real join time, as history.
    assert sorted(_group_events(db, org), key=lambda e: e[1]) == sorted(
        [("group_joined", a, JOINED, True, where), ("group_joined", b, JOINED, True, where)],
        key=lambda e: e[1],
    )
    # Joining a group is taking part, history or not.
    assert db.get(Customer, a).stage == Stage.engaged  # type: ignore[union-attr]
    full_sync(db, org, wecom)
    assert len(_group_events(db, org)) == 2


def test_later_syncs_record_joins_leaves_and_rejoins_of_customers_once(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient, seeded: str
) -> None:
    org = tenant.org_id
    full_sync(db, org, wecom)
    group_id = db.scalar(select(CustomerGroup.id).where(CustomerGroup.chat_id == seeded))
    a, c = customer_of(db, org, "wmA"), customer_of(db, org, "wmC")
    before = len(_group_events(db, org))

    # Callbacks are lost (none is wired here): only the sync can see these.
    fake.post("members", {"members": [{"userid": "wangwu", "name": "王五"}]})
    fake.post(f"groups/{seeded}/join", {"userids": ["wmC", "wangwu"], "join_scene": 3})
    joined_at = next(m.join_time for m in wecom.get_group(seeded).members if m.userid == "wmC")
    report = full_sync(db, org, wecom)
    news = _group_events(db, org)[before:]
    assert news == [
        ("group_joined", c, joined_at, False, {"group_id": group_id, "chat_id": seeded, "scene": "qr_code"})
    ]
    assert report.counts["group_members"].created == 2  # wmC and the member wangwu

    fake.post(f"groups/{seeded}/quit", {"userids": ["wmA", "lisi"]})
    full_sync(db, org, wecom)
    news = _group_events(db, org)[before + 1 :]
    assert [(t, cid, backfill, p) for t, cid, _, backfill, p in news] == [
        ("group_left", a, False, {"group_id": group_id, "chat_id": seeded, "scene": "not_in_snapshot"})
    ]
    full_sync(db, org, wecom)
    assert len(_group_events(db, org)) == before + 2

    fake.post(f"groups/{seeded}/join", {"userids": ["wmA"], "join_scene": 2})
    full_sync(db, org, wecom)
    news = _group_events(db, org)[before + 2 :]
    assert [(t, cid, backfill, p["scene"]) for t, cid, _, backfill, p in news] == [
        ("group_joined", a, False, "invite_link")
    ]
