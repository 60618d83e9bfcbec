"""Customer transfers on employee departure: batches of 100, the 90-day rule, polling to the end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.wecom.conftest import Control, console_login
from tests.wecom.conftest import customer_of as _cid

from siyu.accounts.departures import departure_summary, poll_transfers, request_transfer, transfer_groups
from siyu.accounts.models import Account, CustomerTransfer, TransferKind, TransferStatus
from siyu.customers.models import FollowRelation, FollowStatus
from siyu.events.models import Event
from siyu.groups.models import CustomerGroup
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.clock import utcnow
from siyu.kit.errors import Conflict, Invalid
from siyu.wecom.sync import full_sync

pytestmark = pytest.mark.own_members  # these tests seed their own members


def _setup(db: Session, org: int, fake: Control, wecom: WeComClient, n: int = 3) -> dict[str, int]:
    fake.post("members", {"members": [{"userid": "leaver"}, {"userid": "heir"}, {"userid": "third"}]})
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": f"wm_{i:04d}", "name": f"客户{i}", "follow": [{"userid": "leaver"}]}
                for i in range(n)
            ]
        },
    )
    fake.post("groups", {"groups": [{"owner": "leaver", "name": "g", "members": ["wm_0000"]}]})
    full_sync(db, org, wecom)
    return dict(db.execute(select(Account.external_id, Account.id).where(Account.org_id == org)).all())


def test_in_service_transfer_in_batches_of_100_completes_after_24h(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=150)
    assert departure_summary(db, org, acc["leaver"]) == {"customers": 150, "groups": 1}
    result = request_transfer(
        db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"], message="我是新的顾问"
    )
    db.commit()
    assert len(result.requested) == 150 and not result.left_out
    assert [c["sizes"]["external_userid"] for c in fake.calls("externalcontact/transfer_customer")] == [
        100,
        50,
    ]
    assert poll_transfers(db, org, wecom) == {"waiting": 150}
    fake.post("clock", {"advance": 24 * 3600 + 5})  # the customers' 24 hours to refuse pass
    assert poll_transfers(db, org, wecom) == {"succeeded": 150}
    row = db.scalar(select(CustomerTransfer).where(CustomerTransfer.org_id == org).limit(1))
    assert row is not None and row.handover_at is not None
    follows = dict(
        db.execute(
            select(FollowRelation.account_id, FollowRelation.status).where(
                FollowRelation.customer_id == _cid(db, org, "wm_0000")
            )
        ).all()
    )
    assert follows == {acc["leaver"]: FollowStatus.deleted_by_staff, acc["heir"]: FollowStatus.active}
    counts = dict(
        db.execute(select(Account.external_id, Account.friend_count).where(Account.org_id == org)).all()
    )
    assert counts["leaver"] == 0 and counts["heir"] == 150
    # The reconciliation agrees with the transfer: nothing left to repair.
    assert full_sync(db, org, wecom, include_groups=False).counts.get("follows") is None


def test_third_transfer_in_90_days_is_refused_with_a_clear_message(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=2)
    cid = _cid(db, org, "wm_0000")
    earlier = utcnow() - timedelta(days=80)
    for when in (earlier, earlier + timedelta(days=30)):
        db.add(
            CustomerTransfer(
                org_id=org,
                customer_id=cid,
                external_userid="wm_0000",
                from_account_id=acc["third"],
                to_account_id=acc["leaver"],
                kind=TransferKind.in_service,
                status=TransferStatus.succeeded,
                requested_at=when,
            )
        )
    db.flush()
    before = len(fake.calls("externalcontact/transfer_customer"))
    with pytest.raises(
        Conflict, match=r"already handed over 2 times in the last 90 days.*at most 2 transfers"
    ):
        request_transfer(
            db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"], customer_ids=[cid]
        )
    assert len(fake.calls("externalcontact/transfer_customer")) == before  # siyu never asked WeCom
    # With the whole book, the others move and the one is reported as left out, with the date it may move.
    result = request_transfer(db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"])
    assert [r.external_userid for r in result.requested] == ["wm_0001"]
    assert [(o.customer_id, o.reason) for o in result.left_out] == [(cid, "transfer_limit")]
    assert "next transfer is possible from" in result.left_out[0].detail
    # A refused hand-over still counts (WeCom counts requests it accepted); one WeCom refused on the spot does not.
    old = db.scalars(select(CustomerTransfer).where(CustomerTransfer.customer_id == cid)).first()
    assert old is not None
    old.status = TransferStatus.refused
    db.flush()
    with pytest.raises(Conflict, match="already handed over 2 times"):
        request_transfer(
            db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"], customer_ids=[cid]
        )
    old.status, old.errcode = TransferStatus.failed, 84061
    db.flush()
    again = request_transfer(
        db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"], customer_ids=[cid]
    )
    assert len(again.requested) == 1


def test_resigned_transfer_and_bad_requests(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=2)
    early = transfer_groups(
        db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"], kind="resigned"
    )
    assert early.moved == [] and early.failed[0]["errcode"] == 90500  # the owner has not resigned yet
    with pytest.raises(Invalid, match="must differ"):
        request_transfer(db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["leaver"])
    with pytest.raises(Invalid, match="no message"):
        request_transfer(
            db,
            org,
            wecom,
            from_account_id=acc["leaver"],
            to_account_id=acc["heir"],
            kind="resigned",
            message="hi",
        )
    fake.post("members/leaver/resign")
    result = request_transfer(
        db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"], kind=TransferKind.resigned
    )
    assert len(result.requested) == 2
    assert len(fake.calls("externalcontact/resigned/transfer_customer")) == 1
    fake.post("clock", {"advance": 24 * 3600 + 5})
    assert poll_transfers(db, org, wecom) == {"succeeded": 2}
    moved = transfer_groups(
        db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"], kind="resigned"
    )
    assert len(moved.moved) == 1 and not moved.failed
    assert len(fake.calls("externalcontact/groupchat/transfer")) == 2


def test_customer_wecom_rejects_is_recorded_as_failed(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=2)
    fake.post("contacts/wm_0001/delete", {"userid": "leaver"})  # the callback was lost: siyu still has it
    result = request_transfer(db, org, wecom, from_account_id=acc["leaver"], to_account_id=acc["heir"])
    assert [r.external_userid for r in result.failed] == ["wm_0001"]
    assert result.failed[0].errcode == 84061 and "not an external contact" in result.failed[0].detail
    # A failed request does not count against the 90-day rule.
    assert poll_transfers(db, org, wecom, now=utcnow() + timedelta(days=4)) == {"expired": 1}
    # The other customer's hand-over, left without an outcome, says so on their timeline.
    expired = db.scalars(
        select(CustomerTransfer).where(CustomerTransfer.status == TransferStatus.expired)
    ).one()
    event = db.scalars(
        select(Event).where(Event.customer_id == expired.customer_id, Event.type == "transfer_expired")
    ).one()
    assert event.properties == {
        "transfer_id": expired.id,
        "reason": "WeCom reported no outcome within 72 hours",
        "origin": "wecom",
    }
    assert poll_transfers(db, org, wecom, now=utcnow() + timedelta(days=5)) == {}


def test_departure_page_hands_over_and_shows_status(
    client: Any, wired: Any, db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    acc = _setup(db, org, fake, wecom, n=2)
    db.commit()
    client.cookies.set("lang", "en")
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    page = client.get(f"/wecom/departure?account_id={acc['leaver']}")
    assert page.status_code == 200 and "2 customers and 1 groups" in page.text
    done = client.post(
        "/wecom/departure",
        data={
            "csrf_token": csrf,
            "from_account_id": acc["leaver"],
            "to_account_id": acc["heir"],
            "kind": "in_service",
            "groups": "true",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    group = db.scalar(select(CustomerGroup).where(CustomerGroup.org_id == org))
    db.refresh(group)
    assert group is not None and group.owner_userid == "heir" and group.owner_account_id == acc["heir"]
    assert fake.calls("externalcontact/groupchat/onjob_transfer")[0]["sizes"] == {"chat_id_list": 1}
    # WeCom agrees: the reconciliation keeps the new owner, who joined the group as WeCom adds them.
    full_sync(db, org, wecom)
    db.commit()
    assert group.owner_userid == "heir" and group.member_count == 3
    status = client.get(f"/wecom/departure?account_id={acc['leaver']}").text
    assert status.count('data-status="waiting"') == 2
    # Asking again for the same customers is still allowed (2 in 90 days); a third time is not.
    client.post(
        "/wecom/departure",
        data={"csrf_token": csrf, "from_account_id": acc["leaver"], "to_account_id": acc["third"]},
    )
    third = client.post(
        "/wecom/departure",
        data={"csrf_token": csrf, "from_account_id": acc["leaver"], "to_account_id": acc["heir"]},
    )
    assert third.status_code == 409 and "at most 2 transfers" in third.text
    assert (
        client.post(
            "/wecom/departure", data={"from_account_id": acc["leaver"], "to_account_id": acc["heir"]}
        ).status_code
        == 403
    )  # no CSRF
    client.cookies.clear()
    console_login(client, f"operator@{tenant.slug}.test")
    assert client.get("/wecom/departure").status_code == 403
