"""Mass messages through WeCom with per-customer caps, crash-safe reservations and read-back of results.

The flow: `create_message` stores the content and the chosen customers; `plan` tells who would be
reached through which member and who is left out and why; `submit` re-plans inside the transaction that
reserves the sends (the organization's settings row is locked, so two submissions cannot both take the
last slot of a customer's cap), COMMITS the send rows, and only then calls add_msg_template, one task per
sender member and at most 10,000 customers a task. A crash after the commit leaves "reserved" rows: the
next `submit` looks for the task in WeCom's list (get_groupmsg_list_v2, same sender and text) before
sending, so a customer is never sent the same message twice. `refresh_results` reads get_groupmsg_task /
get_groupmsg_send_result back into the rows.

Caps (organization setting, calendar periods in Asia/Shanghai): by default as many mass messages a month
as the month has days; alternatively 7 a calendar week or 1 a day. Reserved, submitted and sent rows count.

Messages to customer groups (chat_type "group") live in the same table; `massmsg_groups` plans and submits
them, and `submit`, `refresh_results` and `send_counts` here hand a group message over to it.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.customers import service as customers
from siyu.customers.models import CustomerIdentity, FollowRelation, FollowStatus, IdentityKind
from siyu.customers.resolution import live_customers
from siyu.integrations.channel import MassMessenger, MessageContent
from siyu.integrations.channel import SendStatus as WeComSendStatus
from siyu.kit.bulk import IN_LIST_SIZE, chunked, insert_ignore
from siyu.kit.clock import SHANGHAI, ensure_utc, utcnow
from siyu.kit.db import transaction
from siyu.kit.errors import Conflict, Invalid, NotFound
from siyu.wecom.models_ops import (
    MassCapPolicy,
    MassChatType,
    MassMessage,
    MassMessageStatus,
    MassSend,
    SendStatus,
    WeComOrgSettings,
)

MAX_PER_TASK = 10_000
MAX_RECIPIENTS = 100_000
COUNTED = (SendStatus.reserved, SendStatus.submitted, SendStatus.sent)
POLICY_WORDS = {
    MassCapPolicy.month_days: "as many a month as the month has days",
    MassCapPolicy.week_7: "7 a week",
    MassCapPolicy.day_1: "1 a day",
}
PERIOD_WORDS = {MassCapPolicy.month_days: "this month", MassCapPolicy.week_7: "this week",
                MassCapPolicy.day_1: "today"}


@dataclass
class Excluded:
    """A customer the message will not reach, and why."""

    customer_id: int
    reason: str  # unknown_customer, no_wecom_contact, no_wecom_id, cap_reached, already_sent
    detail: str


@dataclass
class Plan:
    """Who gets the message through which sender (member userid -> [(customer, external userid)])."""

    by_sender: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    sender_accounts: dict[str, int] = field(default_factory=dict)
    left_out: list[Excluded] = field(default_factory=list)
    cap: int = 0
    period_start: datetime | None = None

    @property
    def recipients(self) -> int:
        """How many customers the plan reaches."""
        return sum(len(v) for v in self.by_sender.values())


# --- settings and caps ------------------------------------------------------------------------------


def org_settings(db: Session, org_id: int, *, lock: bool = False) -> WeComOrgSettings:
    """The organization's WeCom settings row (created with defaults), optionally locked FOR UPDATE."""
    stmt = select(WeComOrgSettings).where(WeComOrgSettings.org_id == org_id)
    row = db.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        db.execute(insert_ignore(db, WeComOrgSettings.__table__, ["org_id"]),  # type: ignore[arg-type]
                   [{"org_id": org_id, "mass_cap_policy": MassCapPolicy.month_days.value, "updated_at": utcnow()}])
        row = db.scalar(stmt.with_for_update() if lock else stmt)
        assert row is not None
    return row


def set_cap_policy(db: Session, org_id: int, policy: MassCapPolicy | str) -> WeComOrgSettings:
    """Choose the per-customer mass-message cap: month_days (default), week_7 or day_1."""
    try:
        policy = MassCapPolicy(policy)
    except ValueError:
        raise Invalid("mass_cap_policy must be month_days, week_7 or day_1", field="mass_cap_policy") from None
    row = org_settings(db, org_id)
    row.mass_cap_policy = policy
    db.flush()
    return row


def cap_window(policy: MassCapPolicy, now: datetime) -> tuple[datetime, int]:
    """(start of the current period in UTC, how many mass messages a customer may get in it)."""
    here = ensure_utc(now).astimezone(SHANGHAI)
    day = here.replace(hour=0, minute=0, second=0, microsecond=0)
    if policy == MassCapPolicy.day_1:
        return ensure_utc(day), 1
    if policy == MassCapPolicy.week_7:
        return ensure_utc(day - timedelta(days=day.weekday())), 7
    return ensure_utc(day.replace(day=1)), calendar.monthrange(here.year, here.month)[1]


# --- messages ---------------------------------------------------------------------------------------


def create_message(
    db: Session, org_id: int, *, text: str, customer_ids: Sequence[int], attachments: Sequence[dict[str, Any]] = (),
    actor_id: int | None = None,
) -> MassMessage:
    """Store a mass message draft for the chosen customers."""
    text = text.strip()
    if not text and not attachments:
        raise Invalid("a mass message needs text or attachments", field="text")
    if len(text) > 4000:
        raise Invalid("the text has at most 4,000 characters", field="text")
    if len(attachments) > 9:
        raise Invalid("at most 9 attachments", field="attachments")
    ids = list(dict.fromkeys(int(c) for c in customer_ids))
    if not ids:
        raise Invalid("choose at least one customer", field="customer_ids")
    if len(ids) > MAX_RECIPIENTS:
        raise Invalid(f"at most {MAX_RECIPIENTS:,} customers per message", field="customer_ids")
    msg = MassMessage(org_id=org_id, text=text, attachments=[dict(a) for a in attachments], customer_ids=ids,
                      created_by=actor_id, status=MassMessageStatus.draft)
    db.add(msg)
    db.flush()
    return msg


def get_message(db: Session, org_id: int, message_id: int) -> MassMessage:
    """A mass message of this organization (404 for another organization's id)."""
    msg = db.scalar(select(MassMessage).where(MassMessage.id == message_id, MassMessage.org_id == org_id))
    if msg is None:
        raise NotFound("mass message not found", field="message_id")
    return msg


def plan(db: Session, org_id: int, msg: MassMessage, *, now: datetime | None = None) -> Plan:
    """Who the message reaches through which member, and who is left out and why (nothing is written)."""
    now = ensure_utc(now) if now is not None else utcnow()
    policy = org_settings(db, org_id).mass_cap_policy
    start, cap = cap_window(policy, now)
    result = Plan(cap=cap, period_start=start)
    ids = [int(c) for c in msg.customer_ids]
    live = live_customers(db, org_id, ids)
    for cid in ids:
        if cid not in live:
            result.left_out.append(Excluded(cid, "unknown_customer", f"customer {cid} does not exist"))
    # A merged-away id reaches its survivor, once.
    targets = list(dict.fromkeys(live[c] for c in ids if c in live))
    already = set()
    for part in chunked(targets, IN_LIST_SIZE):
        already.update(db.scalars(select(MassSend.customer_id).where(
            MassSend.message_id == msg.id, MassSend.customer_id.in_(part))))
    senders: dict[int, tuple[int, str]] = {}
    eids: dict[int, str] = {}
    counts: dict[int, int] = defaultdict(int)
    for part in chunked(targets, IN_LIST_SIZE):
        rows = db.execute(
            select(FollowRelation.customer_id, Account.id, Account.external_id)
            .join(Account, Account.id == FollowRelation.account_id)
            .where(FollowRelation.org_id == org_id, FollowRelation.customer_id.in_(part),
                   FollowRelation.status == FollowStatus.active, Account.kind == AccountKind.wecom_member,
                   Account.status == AccountStatus.active)
            .order_by(FollowRelation.since, FollowRelation.id)
        )
        for cid, aid, userid in rows:
            senders.setdefault(cid, (aid, userid))  # the member who has known the customer longest sends
        for cid, value in db.execute(select(CustomerIdentity.customer_id, CustomerIdentity.value).where(
            CustomerIdentity.org_id == org_id, CustomerIdentity.customer_id.in_(part),
            CustomerIdentity.kind == IdentityKind.wecom_external_userid,
        )):
            eids.setdefault(cid, value)
        for cid, n in db.execute(
            select(MassSend.customer_id, func.count()).where(
                MassSend.org_id == org_id, MassSend.customer_id.in_(part), MassSend.status.in_(COUNTED),
                MassSend.reserved_at >= start, MassSend.message_id != msg.id,
            ).group_by(MassSend.customer_id)
        ):
            counts[cid] = int(n)
    for cid in targets:
        if cid in already:
            result.left_out.append(Excluded(cid, "already_sent", f"customer {cid} is already in this message"))
        elif cid not in eids:
            result.left_out.append(Excluded(cid, "no_wecom_id", f"customer {cid} has no WeCom external userid"))
        elif cid not in senders:
            result.left_out.append(Excluded(
                cid, "no_wecom_contact", f"customer {cid} is not a contact of any active WeCom member"))
        elif counts[cid] >= cap:
            result.left_out.append(Excluded(
                cid, "cap_reached",
                f"customer {cid} already received {counts[cid]} mass messages {PERIOD_WORDS[policy]}; "
                f"the organization allows {POLICY_WORDS[policy]} ({cap})"))
        else:
            aid, userid = senders[cid]
            result.by_sender.setdefault(userid, []).append((cid, eids[cid]))
            result.sender_accounts[userid] = aid
    return result


def _find_task(client: MassMessenger, sender: str, text: str, since: datetime, now: datetime) -> str:
    """The msgid of a task WeCom already has from this sender with this text since `since`, or ''."""
    cursor = ""
    start = ensure_utc(since) - timedelta(minutes=10)  # allow for clock skew between siyu and WeCom
    end = max(ensure_utc(now), start) + timedelta(days=1)
    while True:
        page = client.list_mass_messages(start, end, creator=sender, cursor=cursor)
        for record in page.items:
            if record.creator == sender and record.text == text:
                return record.msgid
        if not page.next_cursor:
            return ""
        cursor = page.next_cursor


@dataclass
class SubmitResult:
    """What a submission did."""

    message_id: int
    reserved: int = 0
    submitted: int = 0
    recovered: int = 0
    failed: int = 0
    msgids: list[str] = field(default_factory=list)
    left_out: list[Any] = field(default_factory=list)  # Excluded; massmsg_groups.ExcludedGroup for groups


def submit(
    factory: sessionmaker[Session], org_id: int, message_id: int, client: MassMessenger, *,
    now: datetime | None = None,
) -> SubmitResult:
    """Reserve (cap-checked, committed) and then submit one WeCom task per sender, 10,000 at most each."""
    now = ensure_utc(now) if now is not None else utcnow()
    result = SubmitResult(message_id=message_id)
    with factory() as db:
        chat_type = get_message(db, org_id, message_id).chat_type
    if chat_type == MassChatType.group:
        from siyu.wecom import massmsg_groups

        groups = massmsg_groups.submit_groups(factory, org_id, message_id, client, now=now)
        return SubmitResult(message_id=message_id, reserved=groups.reserved, submitted=groups.submitted,
                            recovered=groups.recovered, failed=groups.failed, msgids=groups.msgids,
                            left_out=list(groups.left_out))
    with transaction(factory) as db:
        org_settings(db, org_id, lock=True)  # serialises cap checks of this organization
        msg = get_message(db, org_id, message_id)
        if msg.status == MassMessageStatus.submitted:
            raise Conflict("this mass message was already submitted", field="message_id")
        p = plan(db, org_id, msg, now=now)
        result.left_out = [o for o in p.left_out if o.reason != "already_sent"]
        rows = [
            {"org_id": org_id, "message_id": msg.id, "customer_id": cid, "account_id": p.sender_accounts[userid],
             "external_userid": eid, "status": SendStatus.reserved.value, "msgid": "", "reserved_at": now,
             "error": ""}
            for userid, recipients in p.by_sender.items() for cid, eid in recipients
        ]
        for part in chunked(rows, IN_LIST_SIZE):
            db.execute(insert_ignore(db, MassSend.__table__, ["message_id", "customer_id"]), list(part))  # type: ignore[arg-type]
        result.reserved = len(rows)
        msg.status = MassMessageStatus.submitting
        msg.left_out = {"items": [o.__dict__ for o in result.left_out[:1000]], "total": len(result.left_out)}
    # Committed: every recipient now has a row. From here on a crash can only leave "reserved" rows.
    with transaction(factory) as db:
        msg = get_message(db, org_id, message_id)
        pending = db.execute(
            select(MassSend.id, MassSend.external_userid, MassSend.reserved_at, Account.external_id)
            .join(Account, Account.id == MassSend.account_id)
            .where(MassSend.message_id == msg.id, MassSend.status == SendStatus.reserved)
            .order_by(MassSend.id)
        ).all()
        text, attachments = msg.text, tuple(msg.attachments or ())
    by_sender: dict[str, list[tuple[int, str, datetime]]] = defaultdict(list)
    for send_id, eid, reserved_at, userid in pending:
        by_sender[userid].append((send_id, eid, ensure_utc(reserved_at)))
    content = MessageContent(text=text, attachments=attachments)
    for userid, items in by_sender.items():
        earliest = min(r for _, _, r in items)
        if earliest < now:
            # Reserved by an earlier attempt that stopped: WeCom may already have the task.
            found = _find_task(client, userid, text, earliest, now)
            if found:
                _mark(factory, [i for i, _, _ in items], SendStatus.submitted, found)
                result.recovered += len(items)
                result.msgids.append(found)
                continue
        for chunk in chunked(items, MAX_PER_TASK):
            submission = client.submit_mass_message(content, external_userids=[e for _, e, _ in chunk], sender=userid)
            msgid = submission.msgids[0] if submission.msgids else ""
            refused = set(submission.fail_list)
            ok = [i for i, e, _ in chunk if e not in refused]
            bad = [i for i, e, _ in chunk if e in refused]
            _mark(factory, ok, SendStatus.submitted, msgid)
            _mark(factory, bad, SendStatus.failed, msgid, "WeCom refused: not a contact of the sender")
            result.submitted += len(ok)
            result.failed += len(bad)
            result.msgids.append(msgid)
    with transaction(factory) as db:
        msg = get_message(db, org_id, message_id)
        msg.status, msg.submitted_at = MassMessageStatus.submitted, utcnow()
    return result


def _mark(factory: sessionmaker[Session], ids: Sequence[int], status: SendStatus, msgid: str, error: str = "") -> None:
    if not ids:
        return
    with transaction(factory) as db:
        for part in chunked(list(ids), IN_LIST_SIZE):
            db.execute(update(MassSend).where(MassSend.id.in_(part))
                       .values(status=status, msgid=msgid, error=error)
                       .execution_options(synchronize_session=False))


_RESULT = {
    WeComSendStatus.UNSENT.value: SendStatus.submitted,
    WeComSendStatus.SENT.value: SendStatus.sent,
    WeComSendStatus.NOT_FRIEND.value: SendStatus.not_friend,
    WeComSendStatus.CAP_REACHED.value: SendStatus.unsent,
}


def refresh_results(db: Session, org_id: int, message_id: int, client: MassMessenger) -> dict[str, int]:
    """Read per-member tasks and per-recipient results back from WeCom; returns counts per status."""
    msg = get_message(db, org_id, message_id)
    if msg.chat_type == MassChatType.group:
        from siyu.wecom import massmsg_groups

        return massmsg_groups.refresh_group_results(db, org_id, message_id, client)
    rows = list(db.scalars(select(MassSend).where(MassSend.message_id == msg.id)))
    by_key = {(r.msgid, r.external_userid): r for r in rows if r.msgid}
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
                    row = by_key.get((msgid, s.external_userid))
                    if row is None or row.status == SendStatus.failed:
                        continue
                    row.status = _RESULT.get(s.status, row.status)
                    if s.status == WeComSendStatus.CAP_REACHED.value:
                        row.error = "WeCom: the customer already received their mass messages for the period"
                    row.sent_at = s.sent_at
                if not sends.next_cursor:
                    break
                cursor = sends.next_cursor
    db.flush()
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.status.value] += 1
    return dict(counts)


def _move_sends(db: Session, org_id: int, survivor_id: int, merged_id: int) -> int:
    """Merge hook: a merged-away customer's sends count against the survivor's cap (duplicates dropped)."""
    have = set(db.scalars(select(MassSend.message_id).where(MassSend.customer_id == survivor_id)))
    moved = 0
    for row in db.scalars(select(MassSend).where(MassSend.org_id == org_id, MassSend.customer_id == merged_id)).all():
        if row.message_id in have:
            db.delete(row)
        else:
            row.customer_id = survivor_id
            moved += 1
    db.flush()
    return moved


def send_counts(db: Session, message_id: int) -> dict[str, int]:
    """How many sends of a message (to customers or to groups) are in each status."""
    msg = db.get(MassMessage, message_id)
    if msg is not None and msg.chat_type == MassChatType.group:
        from siyu.wecom import massmsg_groups

        return massmsg_groups.group_send_counts(db, message_id)
    return {str(status): int(n) for status, n in db.execute(
        select(MassSend.status, func.count()).where(MassSend.message_id == message_id).group_by(MassSend.status))}


customers.register_merge_hook("wecom_mass_sends", _move_sends)
