"""Group-change callbacks as WeCom sends them, through the fake WeCom server calling the live app.

The callback's JoinScene (0 invited by a member, 3 scanned the QR code) and groupchat/get's join_scene
(1 invited directly, 2 by link, 3 QR code) land in one column, in groupchat/get's terms. A member change
without MemChangeList is read from WeCom (groupchat/get) instead of being recorded as a change of nobody.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.groups.models import CustomerGroup, GroupMember

from .conftest import Wired

pytestmark = [pytest.mark.own_members, pytest.mark.slow]


def _scenes(db: Session, chat_id: str) -> dict[str, int | None]:
    db.expire_all()
    rows = db.execute(
        select(GroupMember.member_userid, GroupMember.join_scene)
        .join(CustomerGroup, CustomerGroup.id == GroupMember.group_id)
        .where(CustomerGroup.chat_id == chat_id, GroupMember.quit_at.is_(None))
    )
    return dict(rows.all())


def test_join_scenes_share_one_meaning_and_a_change_without_its_list_is_read(
    wired: Wired, db: Session
) -> None:
    fake = wired.fake
    fake.post("members", {"members": [{"userid": "owner"}]})
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": f"wm_{i}", "name": f"客户{i}", "follow": [{"userid": "owner"}]}
                for i in range(4)
            ]
        },
    )
    [chat] = fake.post(
        "groups", {"emit": True, "groups": [{"owner": "owner", "name": "训练营", "members": ["wm_0"]}]}
    )["chat_ids"]
    assert _scenes(db, chat) == {"owner": 1, "wm_0": 1}
    invited = fake.post(f"groups/{chat}/join", {"userids": ["wm_1"], "join_scene": 2})
    assert (
        invited["fields"]["JoinScene"] == 0 and invited["delivered"]
    )  # the callback's "invited by a member"
    scanned = fake.post(f"groups/{chat}/join", {"userids": ["wm_2"], "join_scene": 3})
    assert scanned["fields"]["JoinScene"] == 3
    # Callback 0 is stored as groupchat/get's 1 (invited; the callback cannot tell a link from a direct
    # invitation), 3 stays 3: one meaning per value whatever the source.
    assert _scenes(db, chat) == {"owner": 1, "wm_0": 1, "wm_1": 1, "wm_2": 3}

    silent = fake.post(
        f"groups/{chat}/join", {"userids": ["wm_3"], "join_scene": 2, "omit_mem_change_list": True}
    )
    assert "MemChangeList" not in silent["fields"] and silent["delivered"]
    # siyu read the group instead: wm_3 is a member, with groupchat/get's own scene (2, by link), and the
    # snapshot also told wm_1's invitation apart (by link) where the callback could not.
    assert _scenes(db, chat) == {"owner": 1, "wm_0": 1, "wm_1": 2, "wm_2": 3, "wm_3": 2}
    group = db.scalar(select(CustomerGroup).where(CustomerGroup.chat_id == chat))
    assert group is not None and group.member_count == 5
