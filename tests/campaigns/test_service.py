"""Mass messages: caps with who is left out and why, crash safety, splitting per sender, results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from tests.wecom.conftest import Control, CrashAfterCall, CrashBeforeCall

from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassCapPolicy, MassSend, SendStatus
from siyu.customers import profiles
from siyu.customers.models import CustomerIdentity, IdentityKind
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.db import make_sessionmaker, transaction
from siyu.kit.errors import Conflict, Invalid
from siyu.wecom.sync import full_sync

NOW = datetime(2026, 2, 10, 4, 0, tzinfo=UTC)  # February 2026: 28 days
pytestmark = pytest.mark.own_members  # these tests seed their own members


def _world(engine: Engine, org: int, fake: Control, wecom: WeComClient) -> dict[str, int]:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": "wm_a", "name": "a", "follow": [{"userid": "alice"}]},
                {"external_userid": "wm_b", "name": "b", "follow": [{"userid": "bob"}]},
                {"external_userid": "wm_c", "name": "c", "follow": [{"userid": "bob"}]},
            ]
        },
    )
    with transaction(make_sessionmaker(engine)) as db:
        full_sync(db, org, wecom, include_groups=False)
        ids = dict(
            db.execute(
                select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
                    CustomerIdentity.org_id == org,
                    CustomerIdentity.kind == IdentityKind.wecom_external_userid,
                )
            ).all()
        )
        for cid in ids.values():  # mass messages are marketing: they reach customers who agreed to it
            profiles.update_customer(db, org, cid, {"consent_marketing": True})
        stranger = profiles.create_customer(db, org, {"name": "no wecom", "consent_marketing": True})
        ids["stranger"] = stranger.id
    return ids


def _new(engine: Engine, org: int, ids: list[int], text: str = "新品上架") -> int:
    with transaction(make_sessionmaker(engine)) as db:
        return campaigns.create_message(db, org, text=text, customer_ids=ids).id


def test_cap_leaves_customers_out_and_says_why(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        campaigns.set_cap_policy(db, org, MassCapPolicy.day_1)
    first = campaigns.submit(factory, org, _new(engine, org, [c["wm_a"], c["wm_b"]]), wecom, now=NOW)
    assert first.submitted == 2 and len(first.msgids) == 2  # one WeCom task per sender member
    senders = sorted(
        call["sizes"]["external_userid"] for call in fake.calls("externalcontact/add_msg_template")
    )
    assert senders == [1, 1]
    second_id = _new(engine, org, [c["wm_a"], c["wm_b"], c["wm_c"], c["stranger"], 999_999], "第二条")
    with factory() as db:
        preview = campaigns.plan(
            db, org, campaigns.get_message(db, org, second_id), now=NOW + timedelta(hours=1)
        )
    reasons = {o.customer_id: o.reason for o in preview.left_out}
    assert reasons == {
        c["wm_a"]: "cap_reached",
        c["wm_b"]: "cap_reached",
        c["stranger"]: "no_wecom_id",
        999_999: "unknown_customer",
    }
    detail = next(o.detail for o in preview.left_out if o.customer_id == c["wm_a"])
    assert "already received 1 mass messages today" in detail and "1 a day" in detail
    assert preview.by_sender == {"bob": [(c["wm_c"], "wm_c")]}
    second = campaigns.submit(factory, org, second_id, wecom, now=NOW + timedelta(hours=1))
    assert second.submitted == 1 and {o.reason for o in second.left_out} >= {"cap_reached"}
    # The next day (Asia/Shanghai) the cap frees up again.
    with factory() as db:
        later = campaigns.plan(
            db,
            org,
            campaigns.get_message(db, org, _new(engine, org, [c["wm_a"]], "三")),
            now=NOW + timedelta(days=1),
        )
    assert later.recipients == 1 and not later.left_out
    # The default cap is as many a month as the month has days: February 2026 allows 28.
    assert campaigns.cap_window(MassCapPolicy.month_days, NOW)[1] == 28
    assert campaigns.cap_window(MassCapPolicy.week_7, NOW) == (datetime(2026, 2, 8, 16, 0, tzinfo=UTC), 7)
    with pytest.raises(Conflict):
        campaigns.submit(factory, org, second_id, wecom, now=NOW + timedelta(hours=2))


@pytest.mark.parametrize("crash", [CrashAfterCall, CrashBeforeCall])
def test_send_records_exist_before_the_call_and_rerun_never_double_sends(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient, crash: type[CrashAfterCall]
) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    mid = _new(engine, org, [c["wm_a"]])
    with pytest.raises(RuntimeError):
        campaigns.submit(factory, org, mid, crash(wecom), now=NOW)
    with factory() as db:
        rows = list(db.scalars(select(MassSend).where(MassSend.message_id == mid)))
        assert [(r.customer_id, r.status) for r in rows] == [(c["wm_a"], SendStatus.reserved)]
    result = campaigns.submit(factory, org, mid, wecom, now=datetime.now(UTC) + timedelta(minutes=1))
    assert len(fake.calls("externalcontact/add_msg_template")) == 1, "WeCom got the message exactly once"
    if crash is CrashAfterCall:
        assert result.recovered == 1 and result.submitted == 0
    else:
        assert result.submitted == 1 and result.recovered == 0
    with factory() as db:
        row = db.scalar(select(MassSend).where(MassSend.message_id == mid))
        assert row is not None and row.status == SendStatus.submitted and row.msgid


def test_results_are_read_back(engine: Engine, tenant: Any, fake: Control, wecom: WeComClient) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    mid = _new(engine, org, [c["wm_b"], c["wm_c"]])
    result = campaigns.submit(factory, org, mid, wecom, now=NOW)
    fake.post("contacts/wm_c/delete", {"userid": "bob"})
    fake.post(f"mass/{result.msgids[0]}/send", {"userid": "bob"})  # bob confirms on the phone
    with transaction(factory) as db:
        counts = campaigns.refresh_results(db, org, mid, wecom)
    assert counts == {"sent": 1, "not_friend": 1}


def test_bad_messages_are_refused(db: Session, tenant: Any) -> None:
    with pytest.raises(Invalid, match="text"):
        campaigns.create_message(db, tenant.org_id, text="  ", customer_ids=[1])
    with pytest.raises(Invalid, match="customer"):
        campaigns.create_message(db, tenant.org_id, text="hi", customer_ids=[])
    with pytest.raises(Invalid, match="mass_cap_policy"):
        campaigns.set_cap_policy(db, tenant.org_id, "twice_a_year")
