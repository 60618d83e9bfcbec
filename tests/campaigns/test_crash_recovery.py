"""Crash-safe mass messages, through the fake WeCom server: a crashed call is recognised by its own recipients
(never by sender and text, and never by `creator`, which WeCom does not return for API-created tasks); a
message left "submitting" resumes by itself; one sender WeCom refuses does not stop the others; marketing
messages honour consent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from tests.campaigns.test_service import NOW, _new, _world
from tests.wecom.conftest import Control, CrashAfterCall, CrashBeforeCall

from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassChatType, MassMessage, MassMessageStatus, MassSend, SendStatus
from siyu.customers import profiles
from siyu.events.models import Event
from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComError
from siyu.kit.db import make_sessionmaker, transaction

pytestmark = pytest.mark.own_members  # these tests seed their own members


def _in_wecom(wecom: WeComClient) -> dict[str, int]:
    """How many WeCom tasks hold each external userid (what customers would receive once members confirm)."""
    held: dict[str, int] = {}
    start, end = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1)
    records, cursor = [], ""
    while True:
        page = wecom.list_mass_messages(start, end, cursor=cursor)
        records.extend(page.items)
        if not (cursor := page.next_cursor):
            break
    for record in records:
        for task in wecom.list_mass_tasks(record.msgid).items:
            for result in wecom.list_mass_send_results(record.msgid, task.userid).items:
                held[result.external_userid] = held.get(result.external_userid, 0) + 1
    return held


def _rows(engine: Engine, message_id: int) -> dict[int, tuple[SendStatus, str, str]]:
    with make_sessionmaker(engine)() as db:
        return {
            r.customer_id: (r.status, r.msgid, r.error)
            for r in db.scalars(select(MassSend).where(MassSend.message_id == message_id))
        }


@pytest.mark.slow
def test_a_second_message_with_the_same_text_is_not_recorded_under_the_first_ones_task(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    first = _new(engine, org, [c["wm_b"]], "周末大促")
    campaigns.submit(factory, org, first, wecom)
    second = _new(engine, org, [c["wm_c"]], "周末大促")  # same sender (bob), same text
    with pytest.raises(RuntimeError):
        campaigns.submit(factory, org, second, CrashBeforeCall(wecom))
    result = campaigns.submit(factory, org, second, wecom)
    assert (result.recovered, result.submitted) == (0, 1)
    held = _in_wecom(wecom)
    assert held == {"wm_b": 1, "wm_c": 1}, "each customer is in exactly one WeCom task"
    first_msgid = _rows(engine, first)[c["wm_b"]][1]
    status, msgid, _ = _rows(engine, second)[c["wm_c"]]
    assert status == SendStatus.submitted and msgid and msgid != first_msgid


@pytest.mark.slow
def test_a_call_that_reached_wecom_before_the_crash_is_found_without_creator(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    earlier = _new(engine, org, [c["wm_b"]], "会员日")  # a same-text task of the same sender exists
    campaigns.submit(factory, org, earlier, wecom)
    mid = _new(engine, org, [c["wm_a"], c["wm_c"]], "会员日")
    with pytest.raises(RuntimeError):
        campaigns.submit(factory, org, mid, CrashAfterCall(wecom))
    listed = wecom.list_mass_messages(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
    assert listed.items and all(r.creator == "" for r in listed.items)  # WeCom keeps no creator for API tasks
    result = campaigns.submit(factory, org, mid, wecom)
    # The first sender's call reached WeCom before the crash: recognised by its recipients, not sent again.
    assert (result.recovered, result.submitted) == (1, 1)
    assert _in_wecom(wecom) == {"wm_a": 1, "wm_b": 1, "wm_c": 1}
    assert len(fake.calls("externalcontact/add_msg_template")) == 3


def test_a_sender_wecom_refuses_fails_in_words_and_the_others_go_out(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    fake.post("members/alice/resign")  # alice left; siyu has not synced since
    mid = _new(engine, org, [c["wm_a"], c["wm_b"], c["wm_c"]])
    result = campaigns.submit(factory, org, mid, wecom, now=NOW)
    assert (result.submitted, result.failed) == (2, 1)
    rows = _rows(engine, mid)
    assert rows[c["wm_b"]][0] == rows[c["wm_c"]][0] == SendStatus.submitted
    status, _, error = rows[c["wm_a"]]
    assert status == SendStatus.failed and "40003" in error and "left the company" in error
    with make_sessionmaker(engine)() as db:
        msg = db.get(MassMessage, mid)
        assert msg is not None and msg.status == MassMessageStatus.submitted
        failed = db.scalars(select(Event).where(Event.org_id == org, Event.type == "message_failed")).all()
        assert [(e.customer_id, "left the company" in e.properties["reason"]) for e in failed] == [
            (c["wm_a"], True)
        ]


def test_marketing_messages_leave_out_customers_without_consent(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        profiles.update_customer(db, org, c["wm_c"], {"consent_marketing": False})
        marketing = campaigns.create_message(db, org, text="双十一", customer_ids=[c["wm_b"], c["wm_c"]]).id
        notice = campaigns.create_message(
            db, org, text="物流通知", customer_ids=[c["wm_b"], c["wm_c"]], marketing=False
        ).id
    result = campaigns.submit(factory, org, marketing, wecom, now=NOW)
    assert result.submitted == 1
    assert [(o.customer_id, o.reason) for o in result.left_out] == [(c["wm_c"], "no_consent")]
    assert "has not agreed to receive marketing messages" in result.left_out[0].detail
    assert set(_rows(engine, marketing)) == {c["wm_b"]}
    with make_sessionmaker(engine)() as db:
        msg = db.get(MassMessage, marketing)
        assert msg is not None and msg.left_out["items"][0]["reason"] == "no_consent"
    assert campaigns.submit(factory, org, notice, wecom, now=NOW).submitted == 2  # not marketing: both


@pytest.mark.slow
def test_a_message_left_submitting_resumes_by_itself_and_can_be_cancelled(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient, app: Any, client: Any, inline_worker: Any
) -> None:
    from tests.wecom.conftest import AES_KEY, SECRET, TOKEN

    from siyu.campaigns import tasks  # the worker's tasks
    from siyu.wecom.credentials import save_credentials
    from siyu.wecom.schemas import CredentialsIn

    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        save_credentials(
            db,
            org,
            CredentialsIn(
                corp_id=fake.corp_id,
                secret=SECRET,
                token=TOKEN,
                encoding_aes_key=AES_KEY,
                base_url=fake.base_url,
            ),  # type: ignore[arg-type]
            app.state.settings.resolved_secret_key(),
        )
    stuck = _new(engine, org, [c["wm_a"], c["wm_b"]])
    with pytest.raises(RuntimeError):  # the worker died after alice's call reached WeCom
        campaigns.submit(factory, org, stuck, CrashAfterCall(wecom), now=NOW)
    with factory() as db:
        msg = db.get(MassMessage, stuck)
        assert msg is not None and msg.status == MassMessageStatus.submitting
    assert tasks.resume_mass_messages.call_local() == 1  # what the worker runs at start-up and every minute
    with factory() as db:
        msg = db.get(MassMessage, stuck)
        assert msg is not None and msg.status == MassMessageStatus.submitted
    assert _in_wecom(wecom) == {"wm_a": 1, "wm_b": 1}
    assert tasks.resume_mass_messages.call_local() == 0

    # Cancelled while stalled: the call that was under way is settled, the rest never goes out and stops
    # counting against the cap.
    cancelled = _new(engine, org, [c["wm_a"], c["wm_c"]], "第二条")
    with pytest.raises(RuntimeError):
        campaigns.submit(factory, org, cancelled, CrashBeforeCall(wecom), now=NOW)
    answer = client.post(f"/api/v1/wecom/mass-messages/{cancelled}/cancel", headers=tenant.auth())
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "cancelled"
    assert {s for s, _, _ in _rows(engine, cancelled).values()} == {SendStatus.cancelled}
    assert _in_wecom(wecom) == {"wm_a": 1, "wm_b": 1}
    again = client.post(f"/api/v1/wecom/mass-messages/{cancelled}/cancel", headers=tenant.auth())
    assert again.status_code == 409


def test_wecom_refuses_a_task_list_over_a_month_so_siyu_asks_a_window_at_a_time(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    campaigns.submit(make_sessionmaker(engine), org, _new(engine, org, [c["wm_b"]], "三个月"), wecom, now=NOW)
    now = datetime.now(UTC)
    with pytest.raises(WeComError) as refused:
        wecom.list_mass_messages(now - timedelta(days=40), now)
    assert refused.value.errcode == 40058 and "one month" in refused.value.errmsg
    from siyu.campaigns.submission import listed_tasks

    found = list(
        listed_tasks(wecom, now - timedelta(days=90), now + timedelta(minutes=1), MassChatType.single)
    )
    assert [r.text for r in found] == ["三个月"]
    calls = fake.calls("externalcontact/get_groupmsg_list_v2")
    assert [call["errcode"] for call in calls] == [40058, 0, 0, 0, 0]  # refused, then four windows of 28 days


def test_a_submission_a_live_process_holds_is_left_to_it(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    from siyu.campaigns import submission
    from siyu.kit.locks import process_lock

    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    factory = make_sessionmaker(engine)
    mid = _new(engine, org, [c["wm_b"]])
    campaigns.start_submission(factory, org, mid)
    # Another worker is on it: the lock is held on its own database connection (PostgreSQL) or file (SQLite).
    with process_lock(engine, submission.LOCK, mid) as taken:
        assert taken
        assert submission.stalled(factory) == []
        assert campaigns.run_submission(factory, org, mid, wecom) is None
        assert fake.calls("externalcontact/add_msg_template") == []
    assert submission.stalled(factory) == [(org, mid)]  # released (as a dead process's lock is)
    result = campaigns.run_submission(factory, org, mid, wecom)
    assert result is not None and result.submitted == 1
    assert submission.stalled(factory) == []
