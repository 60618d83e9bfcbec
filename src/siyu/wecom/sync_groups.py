"""Group part of the reconciliation: every customer group and its members, as WeCom lists them.

A group snapshot is applied set-based (the groups service's `upsert_group` resolves members one by
one, which is right for a callback but costs ~10 queries a member in a 100-group sync): customer
members are resolved with one identity query, staff members map to accounts, new member rows are
inserted together, members absent from the snapshot quit and returning ones re-join. A group whose
member_version, name, owner and notice did not change is skipped. Customers who joined, re-joined or
left get group_joined / group_left from the groups service's recorder (a group's first sync: backfill at
WeCom's join_time), appended many groups at once. Groups are listed owner by owner (100 members a call);
groups siyu has as active that WeCom no longer lists for their owner are dismissed.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from siyu.accounts.service import ensure_wecom_account
from siyu.customers.models import IdentityKind
from siyu.customers.resolution import resolve_identities
from siyu.events.bus import DomainEvent
from siyu.groups.models import CustomerGroup, GroupMember, GroupStatus, MemberKind
from siyu.groups.service import (
    JOIN_SCENES,
    SNAPSHOT_SCENE,
    Change,
    Member,
    dismiss_group,
    membership_events,
    record_membership_events,
    scene_in_words,
)
from siyu.integrations.channel import GroupChat
from siyu.kit.bulk import driver_datetime, insert_rows_returning
from siyu.kit.clock import ensure_utc, utcnow
from siyu.wecom.sync_report import Caller, SyncReport

MEMBERS: Table = GroupMember.__table__
OWNERS_PER_CALL = 100  # groupchat/list's owner_filter.userid_list takes at most 100 userids
#: Membership events gathered over groups before they are appended: few dispatches of the stage rules (a
#: customer is in several groups), bounded memory (a first sync may find millions of memberships).
EVENTS_PER_BATCH = 20_000


def list_chat_ids(call: Caller, client: Any, owners: list[str]) -> list[str]:
    """Every customer group of these owners (groupchat/list, 100 owners a call, cursor-paged), each once.

    WeCom refuses a listing without an owner filter (81017) once the app sees over 1,000 members."""
    chat_ids: list[str] = []
    for start in range(0, len(owners), OWNERS_PER_CALL):
        batch = owners[start : start + OWNERS_PER_CALL]
        cursor = ""
        while True:
            page = call(
                "externalcontact/groupchat/list",
                partial(client.list_groups, owner_userids=batch, cursor=cursor, limit=1000),
            )
            chat_ids.extend(g.chat_id for g in page.items if g.chat_id)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
    return list(dict.fromkeys(chat_ids))


def sync_groups(
    db: Session,
    org_id: int,
    chat_ids: list[str],
    chats: Iterable[GroupChat],
    report: SyncReport,
    accounts: dict[str, int],
    holders: dict[str, int] | None = None,
    owners: set[str] | None = None,
) -> None:
    """Upsert every listed group with its members; dismiss the active groups WeCom no longer lists.

    `owners`: the members whose groups were listed; an active group of another owner (a resigned member,
    whose groups WeCom lists only when asked by name) was not looked for, so it is not dismissed.

    `chats` yields the groupchat/get snapshot of each of `chat_ids`, in that order (the sync fetches
    them on a background thread while it writes the contacts). `holders` maps external_userids the
    contact sync already resolved to their customer (it is extended with the members resolved here), so
    most customer members cost no lookup.
    """
    holders = {} if holders is None else holders
    report.groups_seen = len(chat_ids)
    known = {g.chat_id: g for g in db.scalars(select(CustomerGroup).where(CustomerGroup.org_id == org_id))}
    pending: list[DomainEvent] = []
    for chat_id, chat in zip(chat_ids, chats, strict=True):
        group = known.get(chat_id)
        if (
            group is not None
            and group.status == GroupStatus.active
            and chat.member_version
            and group.member_version == chat.member_version[:40]
            and group.name == chat.name[:120]
            and group.owner_userid == chat.owner[:64]
            and group.notice == chat.notice
        ):
            continue
        group, joined, left = apply_snapshot(db, org_id, chat, group, accounts, holders, pending)
        if len(pending) >= EVENTS_PER_BATCH:
            record_membership_events(db, pending)
            pending.clear()
        if chat_id not in known:
            report.count("groups", "created")
            report.sample("groups", f"created {chat.name or chat_id}")
        else:
            report.count("groups", "updated")
            report.sample("groups", f"updated {chat.name or chat_id}")
        if joined:
            report.count("group_members", "created", joined)
        if left:
            report.count("group_members", "ended", left)
    record_membership_events(db, pending)
    listed = set(chat_ids)
    now = utcnow()
    for chat_id, group in known.items():
        asked = owners is None or not group.owner_userid or group.owner_userid in owners
        if chat_id not in listed and group.status == GroupStatus.active and asked:
            dismiss_group(db, org_id, chat_id, at=now)
            report.count("groups", "ended")
            report.sample("groups", f"dismissed {group.name or chat_id} (gone from WeCom)")
    db.flush()


def apply_snapshot(
    db: Session,
    org_id: int,
    chat: GroupChat,
    group: CustomerGroup | None,
    accounts: dict[str, int],
    holders: dict[str, int] | None = None,
    pending: list[DomainEvent] | None = None,
) -> tuple[CustomerGroup, int, int]:
    """Make one group match WeCom's snapshot with a handful of statements (`holders`: see `sync_groups`);
    returns the group and how many members joined and left.

    The customers who joined, re-joined or left get group_joined / group_left from the groups service's
    recorder, in the same transaction: added to `pending` (the caller appends them, many groups at once),
    else appended now. A join is dated by WeCom's join_time, a leave by this sync (WeCom does not say
    when). A group siyu did not know yet brings its members' history: their joins are backfill, as a first
    contact sync's follows are."""
    holders = {} if holders is None else holders
    now = utcnow()
    first = group is None
    if group is None:
        group = CustomerGroup(org_id=org_id, chat_id=chat.chat_id)
        db.add(group)
    group.name, group.notice, group.member_version = chat.name[:120], chat.notice, chat.member_version[:40]
    group.status, group.dismissed_at = GroupStatus.active, None
    if chat.created_at is not None:
        group.created_at = chat.created_at
    if chat.owner:
        group.owner_userid = chat.owner[:64]
        owner = accounts.get(chat.owner) or ensure_wecom_account(db, org_id, chat.owner).id
        accounts[chat.owner] = owner
        group.owner_account_id = owner
    db.flush()
    members = {m.userid: m for m in chat.members if m.userid}
    staff = [u for u, m in members.items() if m.type == 1]
    for userid in staff:
        if userid not in accounts:
            accounts[userid] = ensure_wecom_account(db, org_id, userid).id
    kind = IdentityKind.wecom_external_userid.value
    unknown = [(kind, u) for u, m in members.items() if m.type != 1 and u not in holders]
    if unknown:
        resolved, _ = resolve_identities(db, org_id, unknown, source="wecom_group")
        holders.update({value: cid for (_, value), cid in resolved.items()})
    existing = {
        row.member_userid: (Member(row.id, row.kind, row.customer_id), row.quit_at)
        for row in db.execute(
            select(
                MEMBERS.c.id,
                MEMBERS.c.member_userid,
                MEMBERS.c.kind,
                MEMBERS.c.customer_id,
                MEMBERS.c.quit_at,
            ).where(MEMBERS.c.group_id == group.id)
        )
    }
    stamp = driver_datetime(db)
    new_rows = []
    rejoined = []
    joins: list[Change] = []
    for userid, m in members.items():
        joined = m.join_time or now
        scene = scene_in_words(JOIN_SCENES, m.join_scene)
        if userid not in existing:
            is_staff = m.type == 1
            new_rows.append(
                {
                    "org_id": org_id,
                    "group_id": group.id,
                    "member_userid": userid,
                    "kind": (MemberKind.staff if is_staff else MemberKind.customer).value,
                    "customer_id": None if is_staff else holders[userid],
                    "account_id": accounts[userid] if is_staff else None,
                    "joined_at": stamp(ensure_utc(joined)),
                    "join_scene": m.join_scene,
                    "quit_at": None,
                    "quit_scene": None,
                }
            )
        elif existing[userid][1] is not None:
            rejoined.append({"uid": userid, "joined": joined, "scene": m.join_scene})
            joins.append((existing[userid][0], joined, scene))
    if new_rows:
        # Only the rows that went in are news: one a concurrent callback wrote was recorded by it.
        by_userid = {row["member_userid"]: row for row in new_rows}
        for member_id, userid in insert_rows_returning(
            db, MEMBERS, new_rows, ["group_id", "member_userid"], ["id", "member_userid"]
        ):
            row = by_userid[userid]
            m = members[userid]
            joins.append(
                (
                    Member(int(member_id), MemberKind(row["kind"]), row["customer_id"]),
                    m.join_time or now,
                    scene_in_words(JOIN_SCENES, m.join_scene),
                )
            )
    if rejoined:
        db.execute(
            update(MEMBERS)
            .where(MEMBERS.c.group_id == group.id, MEMBERS.c.member_userid == bindparam("uid"))
            .values(
                quit_at=None, quit_scene=None, joined_at=bindparam("joined"), join_scene=bindparam("scene")
            ),
            rejoined,
        )
    gone = [u for u, (_, quit_at) in existing.items() if quit_at is None and u not in members]
    if gone:
        db.execute(
            update(MEMBERS)
            .where(MEMBERS.c.group_id == group.id, MEMBERS.c.member_userid == bindparam("uid"))
            .values(quit_at=now),
            [{"uid": u} for u in gone],
        )
    group.member_count = len(members)
    leaves: list[Change] = [(existing[u][0], now, SNAPSHOT_SCENE) for u in gone]
    events = membership_events(group, joined=joins, left=leaves, backfill=first)
    if pending is None:
        record_membership_events(db, events)
    else:
        pending.extend(events)
    db.flush()
    return group, len(joins), len(gone)
