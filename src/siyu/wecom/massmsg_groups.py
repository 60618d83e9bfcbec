"""Mass messages to customer groups (WeCom add_msg_template with chat_type "group").

The groups are chosen as a list of siyu group ids or as "every active group this member owns"; the choice is
stored on the message (`group_ids`). WeCom sends a group message through the group's owner (`sender` is
required and every chat id must be a group the sender owns), so `submit_groups` makes one task per owner
and at most 2,000 chat ids a task, splitting larger sets.

Caps: WeCom caps what a customer group receives exactly as it caps a customer ("每位客户/每个客户群每月最多可接收
条数为当月天数", adjustable to 7 a week or 1 a day), so the organization's cap policy applies per group, counted
over this table's reserved, submitted and sent rows. WeCom documents no other per-group rate.

Crash safety is that of customer messages (see `massmsg`): send rows are committed before WeCom is called,
and a re-run first looks for tasks WeCom already has from the same sender with the same text, reading their
per-group results to learn which groups they cover, so no group gets the message twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.groups.models import CustomerGroup, GroupStatus
from siyu.integrations.channel import MassMessenger, MessageContent
from siyu.integrations.channel import SendStatus as WeComSendStatus
from siyu.kit.bulk import IN_LIST_SIZE, chunked, insert_ignore
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.db import transaction
from siyu.kit.errors import Conflict, Invalid, NotFound
from siyu.wecom.massmsg import COUNTED, PERIOD_WORDS, POLICY_WORDS, cap_window, get_message, org_settings
from siyu.wecom.models_ops import (
    MassChatType,
    MassGroupSend,
    MassMessage,
    MassMessageStatus,
    SendStatus,
)

MAX_CHATS_PER_TASK = 2_000
MAX_GROUPS = 20_000


@dataclass
class ExcludedGroup:
    """A customer group the message will not reach, and why."""

    group_id: int
    reason: str  # unknown_group, dismissed, no_owner, cap_reached, already_sent
    detail: str


@dataclass
class GroupPlan:
    """Which groups get the message through which owner (member userid -> [(group id, chat id)])."""

    by_sender: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    sender_accounts: dict[str, int] = field(default_factory=dict)
    left_out: list[ExcludedGroup] = field(default_factory=list)
    cap: int = 0
    period_start: datetime | None = None

    @property
    def recipients(self) -> int:
        """How many groups the plan reaches."""
        return sum(len(v) for v in self.by_sender.values())


@dataclass
class GroupSubmitResult:
    """What a group submission did."""

    message_id: int
    reserved: int = 0
    submitted: int = 0
    recovered: int = 0
    failed: int = 0
    msgids: list[str] = field(default_factory=list)
    left_out: list[ExcludedGroup] = field(default_factory=list)


def _owned_groups(db: Session, org_id: int, account_id: int) -> list[int]:
    account = db.scalar(select(Account).where(Account.id == account_id, Account.org_id == org_id))
    if account is None:
        raise NotFound("account not found", field="owner_account_id")
    if account.kind != AccountKind.wecom_member:
        raise Invalid("only WeCom members own customer groups", field="owner_account_id")
    ids = list(db.scalars(select(CustomerGroup.id).where(
        CustomerGroup.org_id == org_id, CustomerGroup.owner_account_id == account.id,
        CustomerGroup.status == GroupStatus.active).order_by(CustomerGroup.id)))
    if not ids:
        raise Invalid(f"{account.name} owns no active customer groups", field="owner_account_id")
    return ids


def create_group_message(
    db: Session, org_id: int, *, text: str, group_ids: Sequence[int] | None = None,
    owner_account_id: int | None = None, attachments: Sequence[dict[str, Any]] = (), actor_id: int | None = None,
) -> MassMessage:
    """Store a draft to customer groups: the listed `group_ids`, or every active group `owner_account_id` owns."""
    text = text.strip()
    if not text and not attachments:
        raise Invalid("a mass message needs text or attachments", field="text")
    if len(text) > 4000:
        raise Invalid("the text has at most 4,000 characters", field="text")
    if len(attachments) > 9:
        raise Invalid("at most 9 attachments", field="attachments")
    if (group_ids is None) == (owner_account_id is None):
        raise Invalid("choose the groups (group_ids) or the member whose groups get it (owner_account_id), "
                      "not both", field="group_ids")
    if owner_account_id is not None:
        ids = _owned_groups(db, org_id, owner_account_id)
    else:
        ids = list(dict.fromkeys(int(g) for g in group_ids or ()))
        if not ids:
            raise Invalid("choose at least one customer group", field="group_ids")
    if len(ids) > MAX_GROUPS:
        raise Invalid(f"at most {MAX_GROUPS:,} groups per message", field="group_ids")
    msg = MassMessage(org_id=org_id, text=text, attachments=[dict(a) for a in attachments], customer_ids=[],
                      group_ids=ids, chat_type=MassChatType.group, created_by=actor_id,
                      status=MassMessageStatus.draft)
    db.add(msg)
    db.flush()
    return msg


def plan_groups(db: Session, org_id: int, msg: MassMessage, *, now: datetime | None = None) -> GroupPlan:
    """Which groups the message reaches through which owner, and which are left out and why (writes nothing)."""
    now = ensure_utc(now) if now is not None else utcnow()
    policy = org_settings(db, org_id).mass_cap_policy
    start, cap = cap_window(policy, now)
    result = GroupPlan(cap=cap, period_start=start)
    ids = [int(g) for g in msg.group_ids]
    groups: dict[int, tuple[str, GroupStatus, str | None, int | None]] = {}
    already: set[int] = set()
    counts: dict[int, int] = defaultdict(int)
    for part in chunked(ids, IN_LIST_SIZE):
        for gid, chat_id, status, userid, aid in db.execute(
            select(CustomerGroup.id, CustomerGroup.chat_id, CustomerGroup.status, Account.external_id, Account.id)
            .outerjoin(Account, (Account.id == CustomerGroup.owner_account_id)
                       & (Account.kind == AccountKind.wecom_member) & (Account.status == AccountStatus.active))
            .where(CustomerGroup.org_id == org_id, CustomerGroup.id.in_(part))
        ):
            groups[gid] = (chat_id, status, userid, aid)
        already.update(db.scalars(select(MassGroupSend.group_id).where(
            MassGroupSend.message_id == msg.id, MassGroupSend.group_id.in_(part))))
        for gid, n in db.execute(
            select(MassGroupSend.group_id, func.count()).where(
                MassGroupSend.org_id == org_id, MassGroupSend.group_id.in_(part),
                MassGroupSend.status.in_(COUNTED), MassGroupSend.reserved_at >= start,
                MassGroupSend.message_id != msg.id,
            ).group_by(MassGroupSend.group_id)
        ):
            counts[gid] = int(n)
    for gid in ids:
        found = groups.get(gid)
        if found is None:
            result.left_out.append(ExcludedGroup(gid, "unknown_group", f"customer group {gid} does not exist"))
            continue
        chat_id, status, userid, aid = found
        if gid in already:
            result.left_out.append(ExcludedGroup(gid, "already_sent", f"group {gid} is already in this message"))
        elif status != GroupStatus.active:
            result.left_out.append(ExcludedGroup(gid, "dismissed", f"group {gid} was dismissed"))
        elif userid is None or aid is None:
            result.left_out.append(ExcludedGroup(
                gid, "no_owner", f"group {gid} has no owner who is an active WeCom member; hand it over first"))
        elif counts[gid] >= cap:
            result.left_out.append(ExcludedGroup(
                gid, "cap_reached",
                f"group {gid} already received {counts[gid]} mass messages {PERIOD_WORDS[policy]}; "
                f"the organization allows {POLICY_WORDS[policy]} ({cap})"))
        else:
            result.by_sender.setdefault(userid, []).append((gid, chat_id))
            result.sender_accounts[userid] = aid
    return result


def _covered(client: MassMessenger, sender: str, text: str, since: datetime, now: datetime) -> dict[str, str]:
    """chat id -> msgid of tasks WeCom already has from this sender with this text since `since`."""
    out: dict[str, str] = {}
    start = ensure_utc(since) - timedelta(minutes=10)  # allow for clock skew between siyu and WeCom
    end = max(ensure_utc(now), start) + timedelta(days=1)
    cursor = ""
    msgids: list[str] = []
    while True:
        page = client.list_mass_messages(start, end, chat_type="group", creator=sender, cursor=cursor)
        msgids += [r.msgid for r in page.items if r.creator == sender and r.text == text]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    for msgid in msgids:
        cursor = ""
        while True:
            sends = client.list_mass_send_results(msgid, sender, cursor=cursor)
            for s in sends.items:
                if s.chat_id:
                    out.setdefault(s.chat_id, msgid)
            if not sends.next_cursor:
                break
            cursor = sends.next_cursor
    return out


def _mark(factory: sessionmaker[Session], ids: Sequence[int], status: SendStatus, msgid: str, error: str = "") -> None:
    if not ids:
        return
    with transaction(factory) as db:
        for part in chunked(list(ids), IN_LIST_SIZE):
            db.execute(update(MassGroupSend).where(MassGroupSend.id.in_(part))
                       .values(status=status, msgid=msgid, error=error)
                       .execution_options(synchronize_session=False))


def submit_groups(
    factory: sessionmaker[Session], org_id: int, message_id: int, client: MassMessenger, *,
    now: datetime | None = None,
) -> GroupSubmitResult:
    """Reserve (cap-checked, committed), then submit one WeCom task per owner, 2,000 groups at most each."""
    now = ensure_utc(now) if now is not None else utcnow()
    result = GroupSubmitResult(message_id=message_id)
    with transaction(factory) as db:
        org_settings(db, org_id, lock=True)  # serialises cap checks of this organization
        msg = get_message(db, org_id, message_id)
        if msg.chat_type != MassChatType.group:
            raise Invalid("this mass message goes to customers, not groups", field="message_id")
        if msg.status == MassMessageStatus.submitted:
            raise Conflict("this mass message was already submitted", field="message_id")
        p = plan_groups(db, org_id, msg, now=now)
        result.left_out = [o for o in p.left_out if o.reason != "already_sent"]
        rows = [
            {"org_id": org_id, "message_id": msg.id, "group_id": gid, "chat_id": chat_id,
             "account_id": p.sender_accounts[userid], "status": SendStatus.reserved.value, "msgid": "",
             "reserved_at": now, "error": ""}
            for userid, groups in p.by_sender.items() for gid, chat_id in groups
        ]
        for part in chunked(rows, IN_LIST_SIZE):
            db.execute(insert_ignore(db, MassGroupSend.__table__, ["message_id", "group_id"]), list(part))  # type: ignore[arg-type]
        result.reserved = len(rows)
        msg.status = MassMessageStatus.submitting
        msg.left_out = {"items": [o.__dict__ for o in result.left_out[:1000]], "total": len(result.left_out)}
    # Committed: every group now has a row. From here on a crash can only leave "reserved" rows.
    with transaction(factory) as db:
        msg = get_message(db, org_id, message_id)
        pending = db.execute(
            select(MassGroupSend.id, MassGroupSend.chat_id, MassGroupSend.reserved_at, Account.external_id)
            .join(Account, Account.id == MassGroupSend.account_id)
            .where(MassGroupSend.message_id == msg.id, MassGroupSend.status == SendStatus.reserved)
            .order_by(MassGroupSend.id)
        ).all()
        text, attachments = msg.text, tuple(msg.attachments or ())
    by_sender: dict[str, list[tuple[int, str, datetime]]] = defaultdict(list)
    for send_id, chat_id, reserved_at, userid in pending:
        by_sender[userid].append((send_id, chat_id, ensure_utc(reserved_at)))
    content = MessageContent(text=text, attachments=attachments)
    for userid, items in by_sender.items():
        earliest = min(r for _, _, r in items)
        if earliest < now:
            # Reserved by an earlier attempt that stopped: WeCom may already have some of the tasks.
            covered = _covered(client, userid, text, earliest, now)
            for msgid in sorted(set(covered.values())):
                done = [i for i, c, _ in items if covered.get(c) == msgid]
                _mark(factory, done, SendStatus.submitted, msgid)
                result.recovered += len(done)
                result.msgids.append(msgid)
            items = [it for it in items if it[1] not in covered]
        for chunk in chunked(items, MAX_CHATS_PER_TASK):
            submission = client.submit_mass_message(
                content, chat_ids=[c for _, c, _ in chunk], sender=userid, chat_type="group")
            msgid = submission.msgids[0] if submission.msgids else ""
            refused = set(submission.fail_list)
            ok = [i for i, c, _ in chunk if c not in refused]
            bad = [i for i, c, _ in chunk if c in refused]
            _mark(factory, ok, SendStatus.submitted, msgid)
            _mark(factory, bad, SendStatus.failed, msgid,
                  f"WeCom refused: not a live group owned by {userid} (siyu's copy may be stale; sync groups)"[:300])
            result.submitted += len(ok)
            result.failed += len(bad)
            result.msgids.append(msgid)
    with transaction(factory) as db:
        msg = get_message(db, org_id, message_id)
        msg.status, msg.submitted_at = MassMessageStatus.submitted, utcnow()
    return result


_RESULT = {
    WeComSendStatus.UNSENT.value: (SendStatus.submitted, ""),
    WeComSendStatus.SENT.value: (SendStatus.sent, ""),
    # For a group WeCom's status 2 ("not a friend") means the sender can no longer post there.
    WeComSendStatus.NOT_FRIEND.value: (SendStatus.failed,
                                       "WeCom: the group was dismissed or is no longer owned by the sender"),
    WeComSendStatus.CAP_REACHED.value: (SendStatus.unsent,
                                        "WeCom: the group already received its mass messages for the period"),
}


def refresh_group_results(db: Session, org_id: int, message_id: int, client: MassMessenger) -> dict[str, int]:
    """Read per-owner tasks and per-group results back from WeCom; returns counts per status."""
    msg = get_message(db, org_id, message_id)
    rows = list(db.scalars(select(MassGroupSend).where(MassGroupSend.message_id == msg.id)))
    by_key = {(r.msgid, r.chat_id): r for r in rows if r.msgid}
    for msgid in sorted({r.msgid for r in rows if r.msgid}):
        cursor = ""
        members: list[str] = []
        while True:
            page = client.list_mass_tasks(msgid, cursor=cursor)
            members.extend(t.userid for t in page.items)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        for userid in members:
            cursor = ""
            while True:
                sends = client.list_mass_send_results(msgid, userid, cursor=cursor)
                for s in sends.items:
                    row = by_key.get((msgid, s.chat_id))
                    if row is None or (row.status == SendStatus.failed and row.error.startswith("WeCom refused")):
                        continue
                    status, error = _RESULT.get(s.status, (row.status, row.error))
                    row.status, row.error, row.sent_at = status, error, s.sent_at
                if not sends.next_cursor:
                    break
                cursor = sends.next_cursor
    db.flush()
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.status.value] += 1
    return dict(counts)


def group_send_counts(db: Session, message_id: int) -> dict[str, int]:
    """How many group sends of a message are in each status."""
    return {str(status): int(n) for status, n in db.execute(
        select(MassGroupSend.status, func.count()).where(MassGroupSend.message_id == message_id)
        .group_by(MassGroupSend.status))}


def group_sends(db: Session, org_id: int, message_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
    """The message's per-group sends with the group's name (for the console and the API)."""
    rows = db.execute(
        select(MassGroupSend, CustomerGroup.name)
        .join(CustomerGroup, CustomerGroup.id == MassGroupSend.group_id)
        .where(MassGroupSend.org_id == org_id, MassGroupSend.message_id == message_id)
        .order_by(MassGroupSend.id).limit(limit)
    ).all()
    return [{"group_id": s.group_id, "chat_id": s.chat_id, "name": name, "status": s.status.value,
             "msgid": s.msgid, "sent_at": s.sent_at, "error": s.error} for s, name in rows]
