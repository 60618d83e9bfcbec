"""Transfer outcomes other than success, through the fake over HTTP: the customer refuses (WeCom status 3)
and the receiving member is at their customer limit (status 4), by polling and by the transfer_fail callback."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.wecom.conftest import Control, console_login
from tests.wecom.conftest import customer_of as _cid

from siyu.accounts.departures import poll_transfers, request_transfer
from siyu.accounts.models import Account, CustomerTransfer, TransferStatus
from siyu.customers.models import FollowRelation, FollowStatus
from siyu.events.models import Event
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.errors import Conflict
from siyu.wecom.sync import full_sync

DAY = 24 * 3600
pytestmark = pytest.mark.own_members  # these tests seed their own members


def _setup(db: Session, org: int, fake: Control, wecom: WeComClient, n: int) -> dict[str, int]:
    fake.post(
        "members",
        {
            "members": [
                {"userid": "leaver", "name": "Leaver"},
                {"userid": "heir", "name": "Heir"},
                {"userid": "third", "name": "Third"},
            ]
        },
    )
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": f"wm_{i:04d}", "name": f"客户{i}", "follow": [{"userid": "leaver"}]}
                for i in range(n)
            ]
        },
    )
    full_sync(db, org, wecom, include_groups=False)
    db.commit()
    return dict(db.execute(select(Account.external_id, Account.id).where(Account.org_id == org)).all())


def _follows(db: Session, org: int, eid: str) -> dict[int, FollowStatus]:
    db.expire_all()
    return dict(
        db.execute(
            select(FollowRelation.account_id, FollowRelation.status).where(
                FollowRelation.customer_id == _cid(db, org, eid)
            )
        ).all()
    )


def _row(db: Session, org: int, eid: str) -> CustomerTransfer:
    db.expire_all()
    row = db.scalar(
        select(CustomerTransfer)
        .where(CustomerTransfer.org_id == org, CustomerTransfer.external_userid == eid)
        .order_by(CustomerTransfer.id.desc())
        .limit(1)
    )
    assert row is not None
    return row


def _fail_events(fake: Control) -> list[dict[str, Any]]:
    events = fake.http.get("/_control/events").json()["events"]
    return [e["fields"] for e in events if e["fields"].get("ChangeType") == "transfer_fail"]


def test_refused_transfer_keeps_the_customer_with_the_leaver_and_counts_in_90_days(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=2)
    request_transfer(db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"])
    db.commit()
    refused = fake.post("transfers/refuse", {"external_userid": "wm_0000"})
    assert (refused["status"], refused["takeover_userid"]) == (3, "heir")
    # WeCom's transfer_fail callback: the receiving member and the customer, FailReason customer_refused.
    [event] = _fail_events(fake)
    assert (event["FailReason"], event["UserID"], event["ExternalUserID"]) == (
        "customer_refused",
        "heir",
        "wm_0000",
    )
    assert poll_transfers(db, org, wecom) == {"refused": 1, "waiting": 1}
    fake.post("clock", {"advance": DAY + 5})
    assert poll_transfers(db, org, wecom) == {"succeeded": 1}
    db.commit()
    row = _row(db, org, "wm_0000")
    assert row.status == TransferStatus.refused and row.handover_at is None
    assert "refused to be handed over to heir" in row.detail and "stay a customer of leaver" in row.detail
    # The refusal moved nobody: the leaver keeps the customer, in siyu and in WeCom alike.
    assert _follows(db, org, "wm_0000") == {acc["leaver"]: FollowStatus.active}
    assert _follows(db, org, "wm_0001") == {
        acc["leaver"]: FollowStatus.deleted_by_staff,
        acc["heir"]: FollowStatus.active,
    }
    assert full_sync(db, org, wecom, include_groups=False).counts.get("follows") is None
    # The refused request used one of the customer's two transfers in 90 days: one more is possible ...
    again = request_transfer(
        db,
        org,
        wecom,
        from_account_id=acc["leaver"],
        to_account_id=acc["third"],
        customer_ids=[_cid(db, org, "wm_0000")],
    )
    assert len(again.requested) == 1
    db.commit()
    fake.post("transfers/refuse", {"external_userid": "wm_0000", "handover_userid": "leaver"})
    assert poll_transfers(db, org, wecom) == {"refused": 1}
    # ... and then siyu refuses a third itself, as WeCom would (the fake answers 40128 to a third request).
    with pytest.raises(Conflict, match="already handed over 2 times in the last 90 days"):
        request_transfer(
            db,
            org,
            wecom,
            from_account_id=acc["leaver"],
            to_account_id=acc["heir"],
            customer_ids=[_cid(db, org, "wm_0000")],
        )
    [outcome] = wecom.transfer_customers("leaver", "heir", ["wm_0000"])
    assert outcome.errcode == 40128


def test_receiver_at_customer_limit_ends_as_taker_full(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=3)
    assert fake.post("members/heir/customer_limit", {"customer_limit": 1})["customer_limit"] == 1
    bad = fake.http.post("/_control/members/heir/customer_limit", json={"customer_limit": -1})
    assert bad.status_code == 400 and "customer_limit" in bad.json()["error"]
    request_transfer(db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"])
    db.commit()
    assert poll_transfers(db, org, wecom) == {"waiting": 3}
    fake.post("clock", {"advance": DAY + 5})  # the 24 hours end: room for one customer only
    assert sorted(e["ExternalUserID"] for e in _fail_events(fake)) == ["wm_0001", "wm_0002"]
    assert {e["FailReason"] for e in _fail_events(fake)} == {"customer_limit_exceed"}
    assert poll_transfers(db, org, wecom) == {"succeeded": 1, "taker_full": 2}
    db.commit()
    full = _row(db, org, "wm_0002")
    assert full.status == TransferStatus.taker_full and full.handover_at is None
    assert "heir has reached WeCom's customer limit" in full.detail and "stays with leaver" in full.detail
    assert _follows(db, org, "wm_0002") == {acc["leaver"]: FollowStatus.active}
    counts = dict(
        db.execute(select(Account.external_id, Account.friend_count).where(Account.org_id == org)).all()
    )
    assert counts["leaver"] == 2 and counts["heir"] == 1
    assert full_sync(db, org, wecom, include_groups=False).counts.get("follows") is None
    # WeCom's default cap is back once the test lifts its own.
    assert fake.post("members/heir/customer_limit", {"customer_limit": None})["customer_limit"] == 50_000


def test_transfer_fail_callbacks_settle_rows_shown_in_api_and_console(
    client: Any, wired: Any, db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=3)
    fake.post("members/heir/customer_limit", {"customer_limit": 1})
    started = client.post(
        "/api/v1/wecom/transfers",
        headers=tenant.auth(),
        json={
            "from_account_id": acc["leaver"],
            "to_account_id": acc["heir"],
            "message": "您好，由同事接替服务",
        },
    )
    assert started.status_code == 201, started.text
    assert [r["status"] for r in started.json()["requested"]] == ["waiting"] * 3
    # The customer refuses: WeCom pushes transfer_fail (signed, encrypted) and siyu settles the row at once.
    refused = fake.post("transfers/refuse", {"external_userid": "wm_0000"})
    assert refused["deliveries"][0]["delivered"] is True, refused
    assert _row(db, org, "wm_0000").status == TransferStatus.refused
    # The 24 hours end with room for one: the other customer's hand-over fails, pushed the same way.
    moved = fake.post("clock", {"advance": DAY + 5})
    # The success is pushed to the leaver's side as del_external_contact Source=DELETE_BY_TRANSFER.
    assert [(d["fields"]["ChangeType"], d["delivered"]) for d in moved["deliveries"]] == [
        ("del_external_contact", True),
        ("transfer_fail", True),
    ]
    assert _row(db, org, "wm_0002").status == TransferStatus.taker_full
    # That callback ends the leaver's relation; the hand-over itself is settled by polling.
    assert _row(db, org, "wm_0001").status == TransferStatus.waiting
    listed = {
        r["external_userid"]: r for r in client.get("/api/v1/wecom/transfers", headers=tenant.auth()).json()
    }
    assert listed["wm_0000"]["status"] == "refused" and "客户拒绝" in listed["wm_0000"]["detail"]
    assert (
        listed["wm_0002"]["status"] == "taker_full" and "接替成员客户达到上限" in listed["wm_0002"]["detail"]
    )
    assert client.post("/api/v1/wecom/transfers/poll", headers=tenant.auth()).json() == {"succeeded": 1}
    assert _follows(db, org, "wm_0000") == {acc["leaver"]: FollowStatus.active}
    # The console's departure page says what happened to each customer, and why.
    client.cookies.set("lang", "en")
    console_login(client, f"admin@{tenant.slug}.test")
    page = client.get(f"/wecom/departure?account_id={acc['leaver']}").text
    assert page.count('data-status="refused"') == 1 and page.count('data-status="taker_full"') == 1
    assert "Refused by the customer" in page and "Receiver at customer limit" in page
    assert "heir has reached WeCom&#39;s customer limit" in page
    client.cookies.set("lang", "zh_CN")
    zh = client.get(f"/wecom/departure?account_id={acc['leaver']}").text
    assert "客户已拒绝接替" in zh and "接替成员客户已达上限" in zh


def _transfer_events(db: Session, org: int, eid: str) -> list[tuple[str, dict[str, Any]]]:
    """The customer's transfer events and the follow events from the first transfer on (what the sync
    wrote before is not this test's business)."""
    db.expire_all()
    rows = [
        (e.type, e.properties)
        for e in db.scalars(
            select(Event)
            .where(
                Event.customer_id == _cid(db, org, eid),
                Event.type.in_(
                    [
                        "transfer_requested",
                        "transfer_succeeded",
                        "transfer_refused",
                        "follow_started",
                        "follow_ended",
                    ]
                ),
            )
            .order_by(Event.id)
        )
    ]
    first = next(i for i, (kind, _) in enumerate(rows) if kind.startswith("transfer"))
    return rows[first:]


def test_transfers_leave_events_and_move_the_follow_through_the_customer_hub(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=2)
    request_transfer(db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"])
    db.commit()
    fake.post("transfers/refuse", {"external_userid": "wm_0000"})
    fake.post("clock", {"advance": DAY + 5})
    assert poll_transfers(db, org, wecom) == {"refused": 1, "succeeded": 1}
    db.commit()
    assert poll_transfers(db, org, wecom) == {}  # settled rows are not settled (nor recorded) twice
    refused_row, moved_row = _row(db, org, "wm_0000"), _row(db, org, "wm_0001")
    refused = _transfer_events(db, org, "wm_0000")
    assert [t for t, _ in refused] == ["transfer_requested", "transfer_refused"]
    assert refused[0][1] == {
        "transfer_id": refused_row.id,
        "from_account_id": acc["leaver"],
        "to_account_id": acc["heir"],
        "origin": "wecom",
    }
    assert refused[1][1]["transfer_id"] == refused_row.id
    assert "refused to be handed over to heir" in refused[1][1]["reason"]
    moved = _transfer_events(db, org, "wm_0001")
    assert [t for t, _ in moved] == [
        "transfer_requested",
        "follow_started",
        "follow_ended",
        "transfer_succeeded",
    ]
    assert moved[1][1]["account_id"] == acc["heir"]
    assert (moved[2][1]["account_id"], moved[2][1]["by"]) == (acc["leaver"], "transfer")
    assert moved[3][1]["transfer_id"] == moved_row.id
    # Handed over, the customer never looked lost to the stage rules.
    stages = db.scalars(
        select(Event.properties).where(
            Event.customer_id == _cid(db, org, "wm_0001"), Event.type == "stage_changed"
        )
    ).all()
    assert all(p["to"] != "lost" for p in stages)


def test_a_hand_over_wecom_refuses_on_the_spot_is_recorded_refused(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=1)
    fake.post("contacts/wm_0000/delete", {"userid": "leaver"})  # the callback was lost: siyu still has it
    result = request_transfer(db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"])
    db.commit()
    assert len(result.failed) == 1
    [(kind, props)] = [e for e in _transfer_events(db, org, "wm_0000") if e[0].startswith("transfer")]
    assert kind == "transfer_refused" and "not an external contact" in props["reason"]
