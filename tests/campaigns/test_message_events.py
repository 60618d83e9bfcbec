"""Mass messages leave one event per customer when their part settles: message_sent when WeCom reports it
sent, message_failed (with the reason in words) when WeCom refused it, the customer was no longer a
contact, or the organization's cap left them out. Sent through the fake WeCom server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from tests.campaigns.test_service import NOW, _new, _world
from tests.wecom.conftest import Control

from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassCapPolicy, MassSend
from siyu.customers.models import Customer, Stage
from siyu.events.models import Event
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.db import make_sessionmaker, transaction

pytestmark = pytest.mark.own_members  # these tests seed their own members


def _message_events(engine: Engine, org: int) -> list[tuple[str, int, dict[str, Any]]]:
    with make_sessionmaker(engine)() as db:
        return [
            (e.type, e.customer_id, e.properties)
            for e in db.scalars(
                select(Event)
                .where(Event.org_id == org, Event.type.in_(["message_sent", "message_failed"]))
                .order_by(Event.id)
            )
        ]


def test_each_recipient_leaves_one_event_when_their_send_settles(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        campaigns.set_cap_policy(db, org, MassCapPolicy.day_1)
    first = _new(engine, org, [c["wm_a"]])
    sent = campaigns.submit(factory, org, first, wecom, now=NOW)
    assert _message_events(engine, org) == []  # submitted is not sent: the member has to confirm
    fake.post(f"mass/{sent.msgids[0]}/send", {"userid": "alice"})
    for _ in range(2):  # read back twice (as the hourly task does): recorded once
        with transaction(factory) as db:
            campaigns.refresh_results(db, org, first, wecom)
    with factory() as db:
        alice = db.scalar(select(MassSend.account_id).where(MassSend.message_id == first))
        customer = db.get(Customer, c["wm_a"])
        assert customer is not None and customer.stage == Stage.contacted  # an outbound touch
    assert _message_events(engine, org) == [
        ("message_sent", c["wm_a"], {"campaign_id": first, "account_id": alice})
    ]

    fake.post("contacts/wm_c/delete", {"userid": "bob"})  # siyu has not heard yet: WeCom refuses wm_c
    second = _new(engine, org, [c["wm_a"], c["wm_b"], c["wm_c"]], "第二条")
    result = campaigns.submit(factory, org, second, wecom, now=NOW + timedelta(hours=1))
    assert (result.submitted, result.failed) == (1, 1)
    fake.post("contacts/wm_b/delete", {"userid": "bob"})  # before bob confirms: wm_b is not a friend
    fake.post(f"mass/{result.msgids[0]}/send", {"userid": "bob"})
    with transaction(factory) as db:
        assert campaigns.refresh_results(db, org, second, wecom) == {"failed": 1, "not_friend": 1}
    with transaction(factory) as db:
        campaigns.refresh_results(db, org, second, wecom)
    failed = {cid: props for kind, cid, props in _message_events(engine, org)[1:] if kind == "message_failed"}
    assert len(_message_events(engine, org)) == 4
    assert set(failed) == {c["wm_a"], c["wm_b"], c["wm_c"]}
    assert all(p["campaign_id"] == second for p in failed.values())
    assert "already received 1 mass messages today" in failed[c["wm_a"]]["reason"]
    assert "account_id" not in failed[c["wm_a"]]  # left out before a sender was chosen
    assert "no longer a contact" in failed[c["wm_b"]]["reason"]
    assert failed[c["wm_c"]]["reason"].startswith("WeCom refused") and failed[c["wm_c"]]["account_id"]
