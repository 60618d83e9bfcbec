"""group_joined / group_left for customer members: from WeCom's group callbacks (through the fake server
over HTTP) and from snapshots compared with what siyu held; staff members leave no events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.wecom.conftest import Wired, customer_of

from siyu.customers.models import Customer, Stage
from siyu.events.models import Event
from siyu.groups.models import CustomerGroup
from siyu.groups.service import dismiss_group, upsert_group
from siyu.integrations.channel import GroupChat
from siyu.integrations.channel import GroupMember as ChatMember

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _group_events(db: Session, org_id: int) -> list[tuple[str, int, dict[str, Any]]]:
    db.expire_all()
    return [
        (e.type, e.customer_id, e.properties)
        for e in db.scalars(
            select(Event)
            .where(Event.org_id == org_id, Event.type.in_(["group_joined", "group_left"]))
            .order_by(Event.id)
        )
    ]


def test_group_callbacks_record_joins_and_leaves_of_customers(wired: Wired, db: Session) -> None:
    contacts = [{"external_userid": e, "name": e, "follow": [{"userid": "zhangsan"}]} for e in ("wmA", "wmB")]
    wired.fake.post("contacts", {"contacts": contacts})
    chat = wired.fake.post(
        "groups",
        {"emit": True, "groups": [{"owner": "zhangsan", "name": "7 天训练营", "members": ["lisi", "wmA"]}]},
    )["chat_ids"][0]
    group = db.scalar(select(CustomerGroup).where(CustomerGroup.chat_id == chat))
    assert group is not None
    a = customer_of(db, wired.org_id, "wmA")
    where = {"group_id": group.id, "chat_id": chat}
    # The create callback's snapshot: wmA joined (invited by the owner); lisi and zhangsan are staff.
    assert _group_events(db, wired.org_id) == [("group_joined", a, {**where, "scene": "invited"})]
    wired.fake.post(f"groups/{chat}/join", {"userids": ["wmB", "lisi"], "join_scene": 3})
    b = customer_of(db, wired.org_id, "wmB")
    wired.fake.post(f"groups/{chat}/quit", {"userids": ["wmB"], "quit_scene": 1})
    assert _group_events(db, wired.org_id)[1:] == [
        ("group_joined", b, {**where, "scene": "qr_code"}),
        ("group_left", b, {**where, "scene": "removed"}),
    ]
    # Joining a group is taking part: the stage rules move the customer to engaged.
    db.expire_all()
    assert db.get(Customer, b).stage == Stage.engaged  # type: ignore[union-attr]


def _chat(*userids: str, at: datetime = T0) -> GroupChat:
    return GroupChat(
        chat_id="wrchat9",
        name="g",
        owner="zhangsan",
        created_at=T0,
        notice="",
        members=[
            ChatMember(userid=u, type=2 if u.startswith("wm") else 1, join_time=at, join_scene=2)
            for u in userids
        ],
        admins=[],
        member_version="1",
    )


def test_snapshots_record_the_difference_with_what_siyu_held(db: Session, tenant: Any) -> None:
    org = tenant.org_id
    upsert_group(db, org, _chat("zhangsan", "wmA", "wmB"), at=T0)
    upsert_group(db, org, _chat("zhangsan", "wmA", "wmB"), at=T0 + timedelta(hours=1))  # nothing changed
    later = T0 + timedelta(hours=2)
    upsert_group(db, org, _chat("zhangsan", "wmA"), at=later)  # wmB is gone: WeCom does not say how
    back = T0 + timedelta(hours=3)
    upsert_group(db, org, _chat("zhangsan", "wmA", "wmB", at=back), at=back)
    a, b = customer_of(db, org, "wmA"), customer_of(db, org, "wmB")
    events = _group_events(db, org)
    assert [(t, c, p["scene"]) for t, c, p in events] == [
        ("group_joined", a, "invite_link"),
        ("group_joined", b, "invite_link"),
        ("group_left", b, "not_in_snapshot"),
        ("group_joined", b, "invite_link"),
    ]
    db.expire_all()
    stored = db.scalars(
        select(Event).where(Event.customer_id == b, Event.type.like("group_%")).order_by(Event.id)
    )
    assert [e.occurred_at for e in stored] == [T0, later, back]
    dismiss_group(db, org, "wrchat9", at=back + timedelta(hours=1))
    assert [(t, p["scene"]) for t, _, p in _group_events(db, org)[4:]] == [
        ("group_left", "dismissed"),
        ("group_left", "dismissed"),
    ]
