"""A completed in-service hand-over, as WeCom reports it: del_external_contact with Source=DELETE_BY_TRANSFER.

Through the fake WeCom server calling the live app back: the handing-over member's relation ends as a
hand-over (follow_ended by=transfer) and raises no "a staff member deleted a customer" alert; a real
staff deletion still does.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.departures import request_transfer
from siyu.accounts.models import Account
from siyu.channels.models import AccountAlert, AlertKind
from siyu.customers.models import FollowRelation, FollowStatus
from siyu.events.models import Event
from siyu.integrations.wecom.client import WeComClient
from siyu.wecom.models import InboxItem
from siyu.wecom.sync import full_sync

from .conftest import Wired, customer_of

pytestmark = [pytest.mark.own_members, pytest.mark.slow]
DAY = 24 * 3600


def test_a_completed_hand_over_is_no_staff_deletion(wired: Wired, db: Session, wecom: WeComClient) -> None:
    fake, org = wired.fake, wired.org_id
    fake.post("members", {"members": [{"userid": "leaver"}, {"userid": "heir"}, {"userid": "third"}]})
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": "wm_0", "name": "王芳", "follow": [{"userid": "leaver"}]},
                {"external_userid": "wm_1", "name": "李强", "follow": [{"userid": "leaver"}]},
                {"external_userid": "wm_2", "name": "张伟", "follow": [{"userid": "third"}]},
            ]
        },
    )
    full_sync(db, org, wecom, include_groups=False)
    db.commit()
    accounts = dict(db.execute(select(Account.external_id, Account.id).where(Account.org_id == org)).all())
    request_transfer(db, org, wecom, from_account_id=accounts["leaver"], to_account_id=accounts["heir"])
    db.commit()

    # 24 hours later WeCom completes the hand-over and tells the leaver's side, marked DELETE_BY_TRANSFER.
    deliveries = fake.post("clock", {"advance": DAY + 5})["deliveries"]
    assert [(d["fields"]["ChangeType"], d["fields"]["Source"], d["delivered"]) for d in deliveries] == [
        ("del_external_contact", "DELETE_BY_TRANSFER", True)
    ] * 2
    db.expire_all()
    processed = db.execute(
        select(InboxItem.processed_at, InboxItem.error).where(InboxItem.org_id == org)
    ).all()
    assert len(processed) == 2 and all(at is not None and not error for at, error in processed)
    for eid in ("wm_0", "wm_1"):
        cid = customer_of(db, org, eid)
        rel = db.scalar(
            select(FollowRelation).where(
                FollowRelation.customer_id == cid, FollowRelation.account_id == accounts["leaver"]
            )
        )
        assert rel is not None and rel.status != FollowStatus.active
        ended = db.scalars(select(Event).where(Event.customer_id == cid, Event.type == "follow_ended")).all()
        assert [e.properties["by"] for e in ended] == ["transfer"]
    assert db.scalars(select(AccountAlert).where(AccountAlert.org_id == org)).all() == []

    # A member deleting a customer is still a staff deletion, and alerts.
    fake.post("contacts/wm_2/delete", {"userid": "third", "by": "member"})
    db.expire_all()
    alerts = db.scalars(select(AccountAlert).where(AccountAlert.org_id == org)).all()
    assert [(a.account_id, a.kind) for a in alerts] == [(accounts["third"], AlertKind.deleted_by_staff)]
