"""Rules of customer groups: upsert from the carrier's snapshot, apply member joins and quits.

Services flush and never commit. Snapshots (``upsert_group``) are authoritative: members absent from the
snapshot are marked as having quit. Deltas (``apply_member_change``) come from callbacks and may arrive
out of order or twice; each is applied only when it is newer than what the member row already records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.accounts.service import ensure_wecom_account
from siyu.customers.merge import register_merge_hook
from siyu.customers.models import IdentityKind
from siyu.customers.profiles import find_or_create_by_identity
from siyu.events.bus import DomainEvent, emit_many
from siyu.events.vocabulary import EventType
from siyu.groups.models import MAX_GROUP_MEMBERS, CustomerGroup, GroupMember, GroupStatus, MemberKind
from siyu.integrations.channel import GroupChat
from siyu.kit.bulk import IN_LIST_SIZE, chunked, one_of
from siyu.kit.clock import ensure_utc, utcnow

__all__ = [
    "MAX_GROUP_MEMBERS",
    "Member",
    "apply_member_change",
    "customers_at",
    "dismiss_group",
    "ensure_group",
    "group_names",
    "membership_events",
    "record_membership_events",
    "record_memberships",
    "recount_members",
    "scene_in_words",
    "upsert_group",
]


def _is_staff(db: Session, org_id: int, userid: str, kind_hint: int | None) -> bool:
    # WeCom member type: 1 = member of the company, 2 = external contact. Without a hint, external userids
    # start with "wm"/"wo" (WeChat / WeCom users); anything else is treated as a member.
    if kind_hint in (1, 2):
        return kind_hint == 1
    if (
        db.scalar(
            select(Account.id).where(
                Account.org_id == org_id,
                Account.kind == AccountKind.wecom_member,
                Account.external_id == userid,
            )
        )
        is not None
    ):
        return True
    return not userid.startswith(("wm", "wo"))


def ensure_group(db: Session, org_id: int, chat_id: str) -> CustomerGroup:
    """The group row for a chat id, created empty when the first event about it arrives."""
    group = db.scalar(
        select(CustomerGroup).where(CustomerGroup.org_id == org_id, CustomerGroup.chat_id == chat_id)
    )
    if group is None:
        group = CustomerGroup(org_id=org_id, chat_id=chat_id)
        db.add(group)
        db.flush()
    return group


def _member_row(
    db: Session, group: CustomerGroup, userid: str, kind_hint: int | None, name: str = ""
) -> GroupMember:
    row = db.scalar(
        select(GroupMember).where(GroupMember.group_id == group.id, GroupMember.member_userid == userid)
    )
    if row is not None:
        return row
    if _is_staff(db, group.org_id, userid, kind_hint):
        account = ensure_wecom_account(db, group.org_id, userid)
        row = GroupMember(
            org_id=group.org_id,
            group_id=group.id,
            member_userid=userid,
            kind=MemberKind.staff,
            account_id=account.id,
        )
    else:
        customer, _ = find_or_create_by_identity(
            db, group.org_id, IdentityKind.wecom_external_userid, userid, {"name": name[:120]} if name else {}
        )
        row = GroupMember(
            org_id=group.org_id,
            group_id=group.id,
            member_userid=userid,
            kind=MemberKind.customer,
            customer_id=customer.id,
        )
    db.add(row)
    return row


#: WeCom's JoinScene / QuitScene in words, for the group_joined / group_left events.
JOIN_SCENES = {1: "invited", 2: "invite_link", 3: "qr_code"}
QUIT_SCENES = {0: "left", 1: "removed"}
#: The scene of a leave found by comparing a snapshot with what siyu held (WeCom does not say how).
SNAPSHOT_SCENE = "not_in_snapshot"
DISMISSED_SCENE = "dismissed"


class MemberRow(Protocol):
    """What the recorder reads of a member row: a ``GroupMember`` or a bulk writer's ``Member``."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> MemberKind: ...
    @property
    def customer_id(self) -> int | None: ...


class Member(NamedTuple):
    """A member row as a set-wise writer knows it (no ORM object loaded)."""

    id: int
    kind: MemberKind
    customer_id: int | None


#: A membership change of one member row: (the row, when, scene in words).
Change = tuple[MemberRow, datetime, str]


def scene_in_words(words: dict[int, str], scene: int | None) -> str:
    """A WeCom JoinScene / QuitScene number in words (``JOIN_SCENES`` / ``QUIT_SCENES``); "unknown" when
    WeCom gave none or a number it does not document (groupchat/get leaves join_scene 0 for some members)."""
    return words.get(scene, "unknown") if scene is not None else "unknown"


def membership_events(
    group: CustomerGroup,
    *,
    joined: Sequence[Change] = (),
    left: Sequence[Change] = (),
    backfill: bool = False,
) -> list[DomainEvent]:
    """The group_joined / group_left events of the customers among these member rows (staff are not
    customers; the rows' ids must be known), one per fact: keyed by member row and time, so the same news
    twice adds nothing. ``backfill``: history found late (a group's first sync), dated when it happened."""
    return [
        DomainEvent(
            org_id=group.org_id,
            customer_id=row.customer_id,
            type=type_,
            occurred_at=at,
            properties={"group_id": group.id, "chat_id": group.chat_id, "scene": scene},
            account_id=group.owner_account_id,
            key=f"{type_}:{row.id}:{int(ensure_utc(at).timestamp())}",
            backfill=backfill,
        )
        for type_, changes in ((EventType.group_joined, joined), (EventType.group_left, left))
        for row, at, scene in changes
        if row.kind == MemberKind.customer and row.customer_id is not None
    ]


def record_memberships(
    db: Session,
    group: CustomerGroup,
    *,
    joined: Sequence[Change] = (),
    left: Sequence[Change] = (),
    backfill: bool = False,
) -> None:
    """Record group_joined / group_left for the customers among these member rows of one group (see
    ``membership_events``)."""
    db.flush()  # new member rows get their ids
    emit_many(db, membership_events(group, joined=joined, left=left, backfill=backfill))


def record_membership_events(db: Session, events: Sequence[DomainEvent]) -> None:
    """Append ``membership_events`` gathered over many groups in one go (a sync): the stage rules then
    look at a customer once, not once for every group they are in."""
    emit_many(db, events)


def _leaving(db: Session, group: CustomerGroup, *, staying: set[str]) -> list[GroupMember]:
    """Customer members who have not quit and are not in ``staying``."""
    return list(
        db.scalars(
            select(GroupMember).where(
                GroupMember.group_id == group.id,
                GroupMember.quit_at.is_(None),
                GroupMember.kind == MemberKind.customer,
                GroupMember.member_userid.not_in(staying) if staying else GroupMember.id.is_not(None),
            )
        )
    )


def recount_members(db: Session, group: CustomerGroup) -> int:
    """Set member_count to the number of members who have not quit."""
    db.flush()
    group.member_count = int(
        db.scalar(
            select(func.count())
            .select_from(GroupMember)
            .where(GroupMember.group_id == group.id, GroupMember.quit_at.is_(None))
        )
        or 0
    )
    return group.member_count


def upsert_group(db: Session, org_id: int, chat: GroupChat, *, at: datetime | None = None) -> CustomerGroup:
    """Make the group match the carrier's snapshot: name, owner, notice and the full member list."""
    at = ensure_utc(at) if at is not None else utcnow()
    group = ensure_group(db, org_id, chat.chat_id)
    group.name = chat.name[:120]
    group.notice = chat.notice
    group.member_version = chat.member_version[:40]
    if chat.created_at is not None:
        group.created_at = chat.created_at
    if chat.owner:
        group.owner_userid = chat.owner[:64]
        group.owner_account_id = ensure_wecom_account(db, org_id, chat.owner).id
    present: set[str] = set()
    joins: list[Change] = []
    for member in chat.members:
        if not member.userid:
            continue
        present.add(member.userid)
        row = _member_row(db, group, member.userid, member.type, member.name)
        joined = member.join_time or at
        scene = scene_in_words(JOIN_SCENES, member.join_scene)
        if row.quit_at is not None and ensure_utc(row.quit_at) <= joined:
            row.quit_at, row.quit_scene = None, None  # rejoined after leaving
            joins.append((row, joined, scene))
        elif row.id is None:
            joins.append((row, joined, scene))
        if row.id is None or row.quit_at is None:
            row.joined_at = joined
            row.join_scene = member.join_scene
    db.flush()
    leaves: list[Change] = [(row, at, SNAPSHOT_SCENE) for row in _leaving(db, group, staying=present)]
    db.execute(
        update(GroupMember)
        .where(
            GroupMember.group_id == group.id,
            GroupMember.quit_at.is_(None),
            GroupMember.member_userid.not_in(present) if present else GroupMember.id.is_not(None),
        )
        .values(quit_at=at)
        .execution_options(synchronize_session="fetch")
    )
    record_memberships(db, group, joined=joins, left=leaves)
    recount_members(db, group)
    return group


def apply_member_change(
    db: Session,
    org_id: int,
    chat_id: str,
    userids: Sequence[str],
    *,
    joined: bool,
    at: datetime,
    scene: int | None = None,
) -> CustomerGroup:
    """Record members joining (``joined``) or quitting at ``at``; older news than the row holds is ignored."""
    at = ensure_utc(at)
    group = ensure_group(db, org_id, chat_id)
    change: Change
    changes: list[Change] = []
    for userid in dict.fromkeys(u for u in userids if u):
        row = _member_row(db, group, userid, None)
        change = (row, at, scene_in_words(JOIN_SCENES if joined else QUIT_SCENES, scene))
        if row.id is None:
            db.flush()
            if joined:
                row.joined_at, row.join_scene = at, scene
            else:
                # The quit arrived before the join: remember both at the quit time so a late join is stale.
                row.joined_at, row.quit_at, row.quit_scene = at, at, scene
            changes.append(change)
            continue
        if joined:
            if row.quit_at is not None and ensure_utc(row.quit_at) < at:
                row.quit_at, row.quit_scene, row.joined_at, row.join_scene = None, None, at, scene
                changes.append(change)
            elif row.quit_at is None and ensure_utc(row.joined_at) > at:
                row.joined_at, row.join_scene = at, scene  # an earlier join than recorded
        elif row.quit_at is None and ensure_utc(row.joined_at) <= at:
            row.quit_at, row.quit_scene = at, scene
            changes.append(change)
    if joined:
        record_memberships(db, group, joined=changes)
    else:
        record_memberships(db, group, left=changes)
    recount_members(db, group)
    return group


def dismiss_group(db: Session, org_id: int, chat_id: str, *, at: datetime) -> CustomerGroup:
    """Mark a group dismissed; its remaining members quit at the same time."""
    at = ensure_utc(at)
    group = ensure_group(db, org_id, chat_id)
    group.status, group.dismissed_at = GroupStatus.dismissed, at
    leaves: list[Change] = [(row, at, DISMISSED_SCENE) for row in _leaving(db, group, staying=set())]
    db.execute(
        update(GroupMember)
        .where(GroupMember.group_id == group.id, GroupMember.quit_at.is_(None))
        .values(quit_at=at)
        .execution_options(synchronize_session="fetch")
    )
    record_memberships(db, group, left=leaves)
    recount_members(db, group)
    return group


def _move_members(db: Session, org_id: int, survivor_id: int, merged_id: int) -> int:
    """Merge hook: group memberships of a merged-away customer move to the survivor."""
    result = db.execute(
        update(GroupMember)
        .where(GroupMember.org_id == org_id, GroupMember.customer_id == merged_id)
        .values(customer_id=survivor_id)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


register_merge_hook("group_members", _move_members)


def forget_person(db: Session, org_id: int, customer_ids: Sequence[int], identifiers: Sequence[str]) -> int:
    """Erasure: a person's group memberships keep their dates for the group's counts but lose the WeCom
    user id; returns rows changed."""
    rows = list(
        db.scalars(
            select(GroupMember).where(
                GroupMember.org_id == org_id,
                (GroupMember.customer_id.in_(customer_ids)) | (GroupMember.member_userid.in_(identifiers)),
            )
        )
    )
    for member in rows:
        # Unique per group: each erased member keeps a distinct placeholder.
        member.member_userid = f"erased:{member.id}"
    db.flush()
    return len(rows)


def memberships_of(db: Session, org_id: int, customer_id: int) -> list[tuple[GroupMember, CustomerGroup]]:
    """A customer's group memberships with their groups, earliest first (for a data export)."""
    rows = db.execute(
        select(GroupMember, CustomerGroup)
        .join(CustomerGroup, CustomerGroup.id == GroupMember.group_id)
        .where(GroupMember.org_id == org_id, GroupMember.customer_id == customer_id)
        .order_by(GroupMember.joined_at, GroupMember.id)
    ).all()
    return [(m, g) for m, g in rows]


def customers_at(db: Session, org_id: int, moments: Mapping[int, datetime]) -> dict[int, list[int]]:
    """The customers who were members of each group (id -> moment) at its moment: joined by then and not
    yet quit; staff members are not customers."""
    found: dict[int, list[int]] = {gid: [] for gid in moments}
    for part in chunked(sorted(moments), IN_LIST_SIZE):
        for gid, cid, joined_at, quit_at in db.execute(
            select(GroupMember.group_id, GroupMember.customer_id, GroupMember.joined_at, GroupMember.quit_at)
            .where(
                GroupMember.org_id == org_id,
                one_of(db, GroupMember.group_id, part),
                GroupMember.kind == MemberKind.customer,
            )
            .order_by(GroupMember.group_id, GroupMember.id)
        ):
            at = ensure_utc(moments[gid])
            if (
                cid is not None
                and ensure_utc(joined_at) <= at
                and (quit_at is None or ensure_utc(quit_at) > at)
            ):
                found[gid].append(int(cid))
    return found


def group_names(db: Session, org_id: int, group_ids: Iterable[int]) -> dict[int, str]:
    """The names of these groups of the organization (a group without a name: its chat id)."""
    names: dict[int, str] = {}
    for part in chunked(sorted(set(group_ids)), IN_LIST_SIZE):
        for gid, name, chat_id in db.execute(
            select(CustomerGroup.id, CustomerGroup.name, CustomerGroup.chat_id).where(
                CustomerGroup.org_id == org_id, one_of(db, CustomerGroup.id, part)
            )
        ):
            names[int(gid)] = name or chat_id
    return names
