"""Customer groups: snapshots, out-of-order member changes, dismissal, and merges moving memberships."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers import merge, profiles
from siyu.customers.models import IdentityKind
from siyu.groups.models import GroupMember, GroupStatus, MemberKind
from siyu.groups.service import (
    JOIN_SCENES,
    QUIT_SCENES,
    apply_member_change,
    dismiss_group,
    scene_in_words,
    upsert_group,
)
from siyu.integrations.channel import GroupChat
from siyu.integrations.channel import GroupMember as ChatMember

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _chat(*members: tuple[str, int]) -> GroupChat:
    return GroupChat(
        chat_id="wrchat1",
        name="减脂训练营 7 天",
        owner="zhangsan",
        created_at=T0,
        notice="",
        members=[ChatMember(userid=u, type=k, join_time=T0, join_scene=3) for u, k in members],
        admins=[],
        member_version="3",
    )


def _members(db: Session) -> dict[str, GroupMember]:
    db.expire_all()
    return {m.member_userid: m for m in db.scalars(select(GroupMember))}


def test_snapshot_creates_staff_and_customers_and_marks_absent_members_quit(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    group = upsert_group(db, tenant.org_id, _chat(("zhangsan", 1), ("wmAAA", 2), ("wmBBB", 2)), at=T0)
    assert group.member_count == 3 and group.owner_account_id is not None
    members = _members(db)
    assert members["zhangsan"].kind == MemberKind.staff and members["zhangsan"].account_id is not None
    assert members["wmAAA"].kind == MemberKind.customer and members["wmAAA"].customer_id is not None
    later = T0 + timedelta(hours=1)
    group = upsert_group(db, tenant.org_id, _chat(("zhangsan", 1), ("wmAAA", 2)), at=later)
    assert group.member_count == 2
    assert _members(db)["wmBBB"].quit_at == later


def test_quit_arriving_before_join_leaves_the_member_out(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    quit_at, joined_at = T0 + timedelta(minutes=5), T0
    apply_member_change(db, tenant.org_id, "wrchat2", ["wmLATE"], joined=False, at=quit_at, scene=0)
    group = apply_member_change(db, tenant.org_id, "wrchat2", ["wmLATE"], joined=True, at=joined_at, scene=3)
    assert group.member_count == 0
    assert _members(db)["wmLATE"].quit_at == quit_at
    # A real rejoin, later than the quit, brings them back; the same news twice changes nothing more.
    for _ in range(2):
        group = apply_member_change(
            db, tenant.org_id, "wrchat2", ["wmLATE"], joined=True, at=quit_at + timedelta(minutes=1), scene=3
        )
    assert group.member_count == 1 and _members(db)["wmLATE"].quit_at is None


def test_dismiss_ends_every_membership(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    upsert_group(db, tenant.org_id, _chat(("zhangsan", 1), ("wmAAA", 2)), at=T0)
    group = dismiss_group(db, tenant.org_id, "wrchat1", at=T0 + timedelta(days=7))
    assert group.status == GroupStatus.dismissed and group.member_count == 0
    assert all(m.quit_at is not None for m in _members(db).values())


def test_merging_customers_moves_their_group_memberships(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    upsert_group(db, tenant.org_id, _chat(("zhangsan", 1), ("wmAAA", 2)), at=T0)
    member = _members(db)["wmAAA"]
    older, _ = profiles.find_or_create_by_identity(db, tenant.org_id, IdentityKind.mobile, "13800138000", {})
    assert older.id != member.customer_id
    assert member.customer_id is not None
    audit = merge.merge_customers(db, tenant.org_id, older.id, member.customer_id, reason="same person")
    assert audit.moved["group_members"] == 1
    assert _members(db)["wmAAA"].customer_id == older.id


def test_scenes_in_words_never_show_a_bare_number() -> None:
    """A scene WeCom does not document (join_scene 0 from groupchat/get) reads "unknown", not "0"."""
    assert scene_in_words(JOIN_SCENES, 3) == "qr_code"
    assert scene_in_words(QUIT_SCENES, 1) == "removed"
    assert scene_in_words(JOIN_SCENES, 0) == "unknown"
    assert scene_in_words(QUIT_SCENES, 7) == "unknown"
    assert scene_in_words(JOIN_SCENES, None) == "unknown"
