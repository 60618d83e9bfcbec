"""Mass messages to customer groups through the fake over HTTP: choosing groups, one task per owner and at
most 2,000 chat ids a task, per-group caps, stale ownership, crash safety, results, API and console."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session
from tests.wecom.conftest import Control, CrashAfterCall

from siyu.accounts.models import Account
from siyu.campaigns import group_messages
from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassCapPolicy, MassChatType, MassGroupSend, MassMessage, SendStatus
from siyu.groups.models import CustomerGroup, GroupStatus
from siyu.integrations.channel import MessageContent
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.db import make_sessionmaker, transaction
from siyu.kit.errors import Conflict, Invalid
from siyu.wecom.sync import full_sync

NOW = datetime(2026, 2, 10, 4, 0, tzinfo=UTC)
pytestmark = pytest.mark.own_members  # these tests seed their own members


@pytest.fixture
def w(engine: Engine, tenant: Any, fake: Control, wecom: WeComClient) -> dict[str, int]:
    """alice owns groups wr_a1 and wr_a2, bob owns wr_b1; siyu ids by chat id and member userid."""
    org = tenant.org_id
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": "wm_a", "name": "a", "follow": [{"userid": "alice"}]},
                {"external_userid": "wm_b", "name": "b", "follow": [{"userid": "bob"}]},
            ]
        },
    )
    fake.post(
        "groups",
        {
            "groups": [
                {"chat_id": "wr_a1", "owner": "alice", "name": "训练营一期", "members": ["wm_a"]},
                {"chat_id": "wr_a2", "owner": "alice", "name": "训练营二期", "members": ["wm_a"]},
                {"chat_id": "wr_b1", "owner": "bob", "name": "老客群", "members": ["wm_b"]},
            ]
        },
    )
    with transaction(make_sessionmaker(engine)) as db:
        full_sync(db, org, wecom)
        ids = dict(
            db.execute(
                select(CustomerGroup.chat_id, CustomerGroup.id).where(CustomerGroup.org_id == org)
            ).all()
        )
        ids.update(db.execute(select(Account.external_id, Account.id).where(Account.org_id == org)).all())
    return ids


def _sends(engine: Engine, message_id: int) -> dict[str, tuple[SendStatus, str]]:
    with make_sessionmaker(engine)() as db:
        return {
            s.chat_id: (s.status, s.msgid)
            for s in db.scalars(select(MassGroupSend).where(MassGroupSend.message_id == message_id))
        }


def test_groups_by_owner_or_list_go_out_one_task_per_owner_and_results_come_back(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient, w: dict[str, int]
) -> None:
    org = tenant.org_id
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        mine = group_messages.create_group_message(
            db, org, text="今晚八点直播", owner_account_id=w["alice"]
        ).id
        mixed = group_messages.create_group_message(
            db, org, text="周末活动", group_ids=[w["wr_a1"], w["wr_b1"]]
        ).id
    with factory() as db:
        assert sorted(campaigns.get_message(db, org, mine).group_ids) == sorted([w["wr_a1"], w["wr_a2"]])
        preview = group_messages.plan_groups(db, org, campaigns.get_message(db, org, mixed), now=NOW)
        assert preview.by_sender == {"alice": [(w["wr_a1"], "wr_a1")], "bob": [(w["wr_b1"], "wr_b1")]}
    first = campaigns.submit(factory, org, mine, wecom, now=NOW)
    assert (first.reserved, first.submitted, len(first.msgids)) == (2, 2, 1)
    calls = fake.calls("externalcontact/add_msg_template")
    assert [c["sizes"] for c in calls] == [{"chat_id_list": 2}]
    second = campaigns.submit(factory, org, mixed, wecom, now=NOW)
    assert second.submitted == 2 and len(second.msgids) == 2  # one task per owner
    # alice confirms on her phone but picks only one of her two groups.
    fake.post(f"mass/{first.msgids[0]}/send", {"userid": "alice", "only": ["wr_a1"]})
    with transaction(factory) as db:
        assert campaigns.refresh_results(db, org, mine, wecom) == {"sent": 1, "submitted": 1}
    status = _sends(engine, mine)
    assert status["wr_a1"][0] == SendStatus.sent and status["wr_a2"][0] == SendStatus.submitted
    with factory() as db:
        shown = {g["chat_id"]: g for g in group_messages.group_sends(db, org, mine)}
        assert shown["wr_a1"]["name"] == "训练营一期" and shown["wr_a1"]["sent_at"] is not None
        assert campaigns.send_counts(db, mine) == {"sent": 1, "submitted": 1}
    with pytest.raises(Conflict):
        campaigns.submit(factory, org, mine, wecom, now=NOW)


def test_more_than_2000_groups_are_split_into_tasks(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient, w: dict[str, int]
) -> None:
    org = tenant.org_id
    chat_ids = [f"wr_many{i:05d}" for i in range(2001)]
    fake.post("groups", {"groups": [{"chat_id": c, "owner": "alice", "name": c} for c in chat_ids]})
    with transaction(make_sessionmaker(engine)) as db:  # siyu's copy of the groups, as a sync would leave it
        db.execute(
            insert(CustomerGroup),
            [
                {
                    "org_id": org,
                    "chat_id": c,
                    "name": c,
                    "owner_account_id": w["alice"],
                    "owner_userid": "alice",
                    "status": GroupStatus.active,
                }
                for c in chat_ids
            ],
        )
        mid = group_messages.create_group_message(db, org, text="全员通知", owner_account_id=w["alice"]).id
    result = campaigns.submit(make_sessionmaker(engine), org, mid, wecom, now=NOW)
    assert result.submitted == 2003 and len(result.msgids) == 2
    assert [c["sizes"]["chat_id_list"] for c in fake.calls("externalcontact/add_msg_template")] == [2000, 3]


def test_cap_per_group_and_groups_wecom_refuses(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient, w: dict[str, int]
) -> None:
    org = tenant.org_id
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        campaigns.set_cap_policy(db, org, MassCapPolicy.day_1)
        first = group_messages.create_group_message(db, org, text="一", group_ids=[w["wr_a1"]]).id
    assert campaigns.submit(factory, org, first, wecom, now=NOW).submitted == 1
    with transaction(factory) as db:
        second = group_messages.create_group_message(
            db, org, text="二", group_ids=[w["wr_a1"], w["wr_b1"], 999_999]
        ).id
    result = campaigns.submit(factory, org, second, wecom, now=NOW + timedelta(hours=1))
    assert result.submitted == 1
    reasons = {o.group_id: o.reason for o in result.left_out}
    assert reasons == {w["wr_a1"]: "cap_reached", 999_999: "unknown_group"}
    detail = next(o.detail for o in result.left_out if o.group_id == w["wr_a1"])
    assert "already received 1 mass messages today" in detail and "1 a day" in detail
    # WeCom only takes the sender's own live groups; the fake answers the others in fail_list.
    answer = wecom.submit_mass_message(
        MessageContent(text="x"), chat_ids=["wr_a1", "wr_b1", "wr_nope"], sender="alice", chat_type="group"
    )
    assert answer.fail_list == ["wr_b1", "wr_nope"]
    # siyu's copy is stale (the group changed owner in WeCom since the last sync): the group is recorded failed.
    assert wecom.transfer_groups(["wr_a2"], "bob") == []
    with transaction(factory) as db:
        campaigns.set_cap_policy(db, org, MassCapPolicy.month_days)
        stale = group_messages.create_group_message(db, org, text="三", owner_account_id=w["alice"]).id
    outcome = campaigns.submit(factory, org, stale, wecom, now=NOW + timedelta(hours=2))
    assert (outcome.submitted, outcome.failed) == (1, 1)
    status, _ = _sends(engine, stale)["wr_a2"]
    assert status == SendStatus.failed
    with factory() as db:
        assert "not a live group owned by alice" in group_messages.group_sends(db, org, stale)[1]["error"]


def test_rerun_after_a_crash_never_sends_a_group_twice(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient, w: dict[str, int]
) -> None:
    org = tenant.org_id
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        mid = group_messages.create_group_message(
            db, org, text="别重复", group_ids=[w["wr_a1"], w["wr_b1"]]
        ).id
    with pytest.raises(RuntimeError):
        campaigns.submit(factory, org, mid, CrashAfterCall(wecom), now=NOW)
    assert {s for s, _ in _sends(engine, mid).values()} == {SendStatus.reserved}
    result = campaigns.submit(factory, org, mid, wecom, now=datetime.now(UTC) + timedelta(minutes=1))
    # The first owner's task reached WeCom before the crash and is found; the second owner's is sent now.
    assert (result.recovered, result.submitted) == (1, 1)
    assert len(fake.calls("externalcontact/add_msg_template")) == 2
    assert {s for s, m in _sends(engine, mid).values() if m} == {SendStatus.submitted}


def test_bad_group_messages_are_refused(db: Session, tenant: Any) -> None:
    with pytest.raises(Invalid, match="not both"):
        group_messages.create_group_message(db, tenant.org_id, text="hi", group_ids=[1], owner_account_id=1)
    with pytest.raises(Invalid) as empty:
        group_messages.create_group_message(db, tenant.org_id, text="hi", group_ids=[])
    assert empty.value.field == "group_ids"
    with pytest.raises(Invalid, match="text"):
        group_messages.create_group_message(db, tenant.org_id, text=" ", group_ids=[1])


def test_group_messages_through_the_api_and_the_console(
    client: Any,
    wired: Any,
    engine: Engine,
    db: Session,
    tenant: Any,
    fake: Control,
    wecom: WeComClient,
    w: dict[str, int],
) -> None:
    api = "/api/v1/wecom/mass-messages"
    both = client.post(
        f"{api}/groups",
        headers=tenant.auth(),
        json={"text": "x", "group_ids": [w["wr_a1"]], "owner_account_id": w["alice"]},
    )
    assert both.status_code == 422 and "group_ids" in both.text
    assert (
        client.post(f"{api}/groups", headers=tenant.auth(), json={"text": "x", "group_ids": []}).status_code
        == 422
    )
    created = client.post(
        f"{api}/groups", headers=tenant.auth(), json={"text": "新品试用", "owner_account_id": w["alice"]}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["chat_type"] == "group" and sorted(body["group_ids"]) == sorted([w["wr_a1"], w["wr_a2"]])
    preview = client.get(f"{api}/{body['id']}/preview", headers=tenant.auth()).json()
    assert (preview["chat_type"], preview["recipients"], preview["per_sender"]) == ("group", 2, {"alice": 2})
    submitted = client.post(f"{api}/{body['id']}/submit", headers=tenant.auth())
    assert submitted.status_code == 202 and submitted.json()["submitted"] == 2, submitted.text
    # A bulk send is an admin action in the audit log.
    audit = client.get("/api/v1/audit?action=mass_message_submitted", headers=tenant.auth()).json()["items"]
    assert [(a["target_id"], a["details"]["recipients"]) for a in audit] == [(str(body["id"]), 2)]
    fake.post(f"mass/{submitted.json()['msgids'][0]}/send", {"userid": "alice"})
    results = client.get(f"{api}/{body['id']}/results?refresh=true", headers=tenant.auth()).json()
    assert results["counts"] == {"sent": 2} and {g["status"] for g in results["groups"]} == {"sent"}
    assert (
        client.post(
            f"{api}/groups", headers=tenant.auth("operator"), json={"text": "x", "group_ids": [1]}
        ).status_code
        == 403
    )
    # The console: the group form next to the customer form, then the message's per-group delivery.
    client.cookies.set("lang", "en")
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    client.post(
        "/login",
        data={
            "email": f"admin@{tenant.slug}.test",
            "password": "password123",
            "csrf_token": token.group(1),
            "next": "/",
        },
        follow_redirects=False,
    )
    page = client.get("/wecom/mass-messages")
    assert page.status_code == 200 and "To customer groups" in page.text and "To customers" in page.text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert csrf
    sent = client.post(
        "/wecom/mass-messages/groups",
        data={"csrf_token": csrf.group(1), "text": "周五团购", "group_ids": [str(w["wr_b1"])]},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    shown = client.get(sent.headers["location"]).text
    assert "老客群" in shown and shown.count('data-status="submitted"') == 1
    none = client.post("/wecom/mass-messages/groups", data={"csrf_token": csrf.group(1), "text": "x"})
    assert none.status_code == 422 and "choose at least one customer group" in none.text
    with make_sessionmaker(engine)() as check:
        kinds = set(check.scalars(select(MassMessage.chat_type)))
    assert kinds == {MassChatType.group}
