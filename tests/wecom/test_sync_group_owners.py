"""Customer groups listed owner by owner (groupchat/list's owner_filter), through the fake WeCom server.

Without owner_filter WeCom answers 81017 once the app sees over 1,000 members, and it lists a resigned
member's groups only when the filter names them.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.groups.models import CustomerGroup, GroupStatus
from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.wecom.sync import full_sync

from .conftest import Control

pytestmark = pytest.mark.own_members


def _statuses(db: Session, org_id: int) -> dict[str, GroupStatus]:
    rows = db.execute(select(CustomerGroup.name, CustomerGroup.status).where(CustomerGroup.org_id == org_id))
    return dict(rows.all())


@pytest.mark.slow
def test_groups_sync_in_an_organization_of_over_1000_members(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    fake.post("generate", {"members": 1001, "contacts": 300, "groups": 5, "seed": 7})
    # The fake refuses the unfiltered listing as WeCom does, and more than 100 owners a call.
    with pytest.raises(WeComError) as refused:
        wecom.list_groups()
    assert refused.value.errcode == 81017
    with pytest.raises(WeComInputError):
        wecom.list_groups(owner_userids=[f"u{i}" for i in range(101)])

    fake.http.delete("/_control/calls")
    report = full_sync(db, tenant.org_id, wecom)
    assert report.groups_seen == 5
    assert len(_statuses(db, tenant.org_id)) == 5
    calls = fake.calls("externalcontact/groupchat/list")
    assert len(calls) == 11 and {c["errcode"] for c in calls} == {0}  # 1,001 owners, 100 a call


def test_a_resigned_owners_group_is_not_dismissed(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    fake.post(
        "contacts", {"contacts": [{"external_userid": "wm_a", "name": "王芳", "follow": [{"userid": "bob"}]}]}
    )
    fake.post(
        "groups",
        {
            "groups": [
                {"owner": "alice", "name": "alice 的群", "members": ["wm_a"]},
                {"owner": "bob", "name": "bob 的群", "members": ["wm_a"]},
            ]
        },
    )
    full_sync(db, tenant.org_id, wecom)
    assert _statuses(db, tenant.org_id) == {"alice 的群": GroupStatus.active, "bob 的群": GroupStatus.active}
    # bob resigns: WeCom stops listing him as a follow user, and lists his group only when asked by name.
    fake.post("members/bob/resign")
    full_sync(db, tenant.org_id, wecom)
    assert _statuses(db, tenant.org_id) == {"alice 的群": GroupStatus.active, "bob 的群": GroupStatus.active}
    # A group its (listed) owner no longer has is still dismissed.
    chat = db.scalar(select(CustomerGroup.chat_id).where(CustomerGroup.name == "alice 的群"))
    fake.post(f"groups/{chat}/dismiss")
    full_sync(db, tenant.org_id, wecom)
    assert _statuses(db, tenant.org_id)["alice 的群"] == GroupStatus.dismissed
