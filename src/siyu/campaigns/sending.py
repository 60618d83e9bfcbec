"""What mass messages to customers (`service`) and to customer groups (`group_messages`) have in common.

Here: the organization's cap policy and its calendar windows, the checks on a message's content, the shapes of a
plan and of a submission, and the reservation. `reserve` plans inside the transaction that reserves the sends
(the organization's settings row is locked, so two submissions cannot both take the last slot of a recipient's
cap) and COMMITS one "reserved" row per recipient; the worker then makes the WeCom calls (`submission`, which
also recovers from a crash at any moment). `read_back` reads get_groupmsg_task / get_groupmsg_send_result back
into the rows.

What differs between customers and groups (the send table, how recipients are planned, whether WeCom lists a
task's unsent recipients, how WeCom's per-recipient answers read) is an `Audience`: `service.CUSTOMERS` and
`group_messages.GROUPS`.

Caps (calendar periods in Asia/Shanghai): by default as many mass messages a month as the month has days;
alternatively 7 a calendar week or 1 a day. Reserved, submitted and sent rows count.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.campaigns.models import (
    MassCapPolicy,
    MassChatType,
    MassGroupSend,
    MassMessage,
    MassMessageStatus,
    MassSend,
    SendStatus,
    WeComOrgSettings,
)
from siyu.events.bus import DomainEvent, emit_many
from siyu.events.vocabulary import EventType
from siyu.integrations.channel import MassMessenger, Page
from siyu.kit.bulk import IN_LIST_SIZE, chunked, insert_ignore
from siyu.kit.clock import SHANGHAI, ensure_utc, utcnow
from siyu.kit.db import transaction
from siyu.kit.errors import Conflict, Invalid, NotFound

COUNTED = (SendStatus.reserved, SendStatus.submitted, SendStatus.sent)
POLICY_WORDS = {
    MassCapPolicy.month_days: "as many a month as the month has days",
    MassCapPolicy.week_7: "7 a week",
    MassCapPolicy.day_1: "1 a day",
}
PERIOD_WORDS = {
    MassCapPolicy.month_days: "this month",
    MassCapPolicy.week_7: "this week",
    MassCapPolicy.day_1: "today",
}
REFUSED = (
    "WeCom refused"  # starts the error of a recipient add_msg_template would not take; read_back keeps those
)
_WHO = {MassChatType.single: "customers", MassChatType.group: "groups"}

E = TypeVar("E")
T = TypeVar("T")


# --- settings and caps ------------------------------------------------------------------------------


def org_settings(db: Session, org_id: int, *, lock: bool = False) -> WeComOrgSettings:
    """The organization's WeCom settings row (created with defaults), optionally locked FOR UPDATE."""
    stmt = select(WeComOrgSettings).where(WeComOrgSettings.org_id == org_id)
    row = db.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        db.execute(
            insert_ignore(db, WeComOrgSettings.__table__, ["org_id"]),
            [{"org_id": org_id, "mass_cap_policy": MassCapPolicy.month_days.value, "updated_at": utcnow()}],
        )
        row = db.scalar(stmt.with_for_update() if lock else stmt)
        assert row is not None
    return row


def set_cap_policy(db: Session, org_id: int, policy: MassCapPolicy | str) -> WeComOrgSettings:
    """Choose the per-recipient mass-message cap: month_days (default), week_7 or day_1."""
    try:
        policy = MassCapPolicy(policy)
    except ValueError:
        raise Invalid(
            "mass_cap_policy must be month_days, week_7 or day_1", field="mass_cap_policy"
        ) from None
    row = org_settings(db, org_id)
    row.mass_cap_policy = policy
    db.flush()
    return row


def cap_window(policy: MassCapPolicy, now: datetime) -> tuple[datetime, int]:
    """(start of the current period in UTC, how many mass messages a recipient may get in it)."""
    here = ensure_utc(now).astimezone(SHANGHAI)
    day = here.replace(hour=0, minute=0, second=0, microsecond=0)
    if policy == MassCapPolicy.day_1:
        return ensure_utc(day), 1
    if policy == MassCapPolicy.week_7:
        return ensure_utc(day - timedelta(days=day.weekday())), 7
    return ensure_utc(day.replace(day=1)), calendar.monthrange(here.year, here.month)[1]


def over_cap(noun: str, recipient_id: int, count: int, policy: MassCapPolicy, cap: int) -> str:
    """Why a recipient who already got `count` messages this period is left out, or "" while under the cap."""
    if count < cap:
        return ""
    return (
        f"{noun} {recipient_id} already received {count} mass messages {PERIOD_WORDS[policy]}; "
        f"the organization allows {POLICY_WORDS[policy]} ({cap})"
    )


# --- messages and plans -----------------------------------------------------------------------------


def check_content(text: str, attachments: Sequence[dict[str, Any]]) -> str:
    """The message's text, stripped, once text and attachments are known to make a message WeCom takes."""
    text = text.strip()
    if not text and not attachments:
        raise Invalid("a mass message needs text or attachments", field="text")
    if len(text) > 4000:
        raise Invalid("the text has at most 4,000 characters", field="text")
    if len(attachments) > 9:
        raise Invalid("at most 9 attachments", field="attachments")
    return text


def new_draft(
    db: Session,
    org_id: int,
    *,
    text: str,
    attachments: Sequence[dict[str, Any]],
    actor_id: int | None,
    **recipients: Any,
) -> MassMessage:
    """Store a draft whose content and recipients (customer_ids, or chat_type and group_ids) are checked."""
    msg = MassMessage(
        org_id=org_id,
        text=text,
        attachments=[dict(a) for a in attachments],
        created_by=actor_id,
        status=MassMessageStatus.draft,
        **recipients,
    )
    db.add(msg)
    db.flush()
    return msg


def get_message(db: Session, org_id: int, message_id: int) -> MassMessage:
    """A mass message of this organization (404 for another organization's id)."""
    msg = db.scalar(select(MassMessage).where(MassMessage.id == message_id, MassMessage.org_id == org_id))
    if msg is None:
        raise NotFound("mass message not found", field="message_id")
    return msg


@dataclass
class Plan(Generic[E]):
    """Who gets the message through which sender (member userid -> [(recipient id, WeCom address)]), and who
    is left out (E: service.Excluded or group_messages.ExcludedGroup) and why."""

    by_sender: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    sender_accounts: dict[str, int] = field(default_factory=dict)
    left_out: list[E] = field(default_factory=list)
    cap: int = 0
    period_start: datetime | None = None

    @property
    def recipients(self) -> int:
        """How many recipients the plan reaches."""
        return sum(len(v) for v in self.by_sender.values())

    def reach(self, recipient_id: int, address: str, userid: str, account_id: int) -> None:
        """Send to this recipient through this member."""
        self.by_sender.setdefault(userid, []).append((recipient_id, address))
        self.sender_accounts[userid] = account_id


def open_plan(db: Session, org_id: int, now: datetime | None) -> tuple[Plan[Any], MassCapPolicy, datetime]:
    """An empty plan under the organization's cap for the period around `now` (default: now), the policy and
    the period's start."""
    now = ensure_utc(now) if now is not None else utcnow()
    policy = org_settings(db, org_id).mass_cap_policy
    start, cap = cap_window(policy, now)
    return Plan(cap=cap, period_start=start), policy, start


def sent_before(
    db: Session,
    model: type[MassSend] | type[MassGroupSend],
    key: str,
    org_id: int,
    message_id: int,
    ids: Sequence[int],
    since: datetime,
) -> tuple[set[int], dict[int, int]]:
    """(recipients already in this message, how many other messages each got since `since`) from the send
    table `model` keyed by its column `key`; reserved, submitted and sent rows count."""
    column = getattr(model, key)
    already: set[int] = set()
    counts: dict[int, int] = defaultdict(int)
    for part in chunked(list(ids), IN_LIST_SIZE):
        already.update(db.scalars(select(column).where(model.message_id == message_id, column.in_(part))))
        for rid, n in db.execute(
            select(column, func.count())
            .where(
                model.org_id == org_id,
                column.in_(part),
                model.status.in_(COUNTED),
                model.reserved_at >= since,
                model.message_id != message_id,
            )
            .group_by(column)
        ):
            counts[rid] = int(n)
    return already, counts


# --- reservation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """What differs between messages to customers and to customer groups."""

    chat_type: MassChatType
    model: type[MassSend] | type[MassGroupSend]  # the send table, one row per recipient
    key: str  # its recipient column: customer_id or group_id
    address: str  # its WeCom address column: external_userid or chat_id (also MassSendResult's field)
    per_task: int  # recipients add_msg_template takes in one task
    plan: Callable[..., Plan[Any]]  # (db, org_id, msg, *, now=None)
    # Whether get_groupmsg_send_result lists a task's recipients before they are sent: it does for customers,
    # not for groups ("若为客户群群发...不返回未发送记录"), so a group task is recognised by its sender only.
    lists_unsent: bool
    refused: Callable[[str], str]  # the error of a recipient WeCom refused, given the sender's userid
    results: Mapping[
        int, tuple[SendStatus, str | None]
    ]  # WeCom's send status -> ours and the error (None: keep)
    # Records how recipients' sends settled (message_sent / message_failed per customer); None: nothing.
    settled: Callable[[Session, int, int, Sequence[Outcome]], None] | None = None  # (db, org, message, ...)


#: Statuses in which a send is settled: the recipient got the message or never will.
SETTLED = (SendStatus.sent, SendStatus.failed, SendStatus.not_friend, SendStatus.unsent, SendStatus.cancelled)
NOT_FRIEND = "WeCom: the recipient is no longer a contact of the sender"


@dataclass(frozen=True)
class Outcome:
    """How one recipient's part of a message settled: sent, or not and why (in words). A customer reached
    through a customer group carries the group (`group_id`, and its chat id in `address`)."""

    recipient_id: int
    account_id: int | None
    sent: bool
    reason: str
    at: datetime
    address: str = ""  # the recipient's WeCom address: external_userid or chat_id
    group_id: int | None = None


def record_outcomes(db: Session, org_id: int, message_id: int, outcomes: Sequence[Outcome]) -> None:
    """message_sent / message_failed per customer whose send settled (or who was left out for the cap);
    keyed by message, group (for a customer reached through one) and customer, so reading results back
    again records nothing twice."""
    events: list[DomainEvent] = []
    for o in outcomes:
        type_ = EventType.message_sent if o.sent else EventType.message_failed
        properties: dict[str, Any] = {"campaign_id": message_id}
        if o.account_id is not None:
            properties["account_id"] = o.account_id
        if o.group_id is not None:
            properties["group_id"] = o.group_id
            if o.address:
                properties["chat_id"] = o.address
        if not o.sent:
            properties["reason"] = o.reason
        via = f"group{o.group_id}:" if o.group_id is not None else ""
        events.append(
            DomainEvent(
                org_id=org_id,
                customer_id=o.recipient_id,
                type=type_,
                occurred_at=o.at,
                properties=properties,
                account_id=o.account_id,
                key=f"{type_}:{message_id}:{via}{o.recipient_id}",
            )
        )
    emit_many(db, events)


@dataclass
class SubmitResult:
    """What a submission did."""

    message_id: int
    reserved: int = 0
    submitted: int = 0
    recovered: int = 0
    failed: int = 0
    msgids: list[str] = field(default_factory=list)
    left_out: list[Any] = field(default_factory=list)  # service.Excluded or group_messages.ExcludedGroup


def paged(fetch: Callable[..., Page[T]]) -> Iterator[T]:
    """Every item of a cursor-paged WeCom list; `fetch(cursor=...)` reads one page."""
    cursor = ""
    while True:
        page = fetch(cursor=cursor)
        yield from page.items
        if not page.next_cursor:
            return
        cursor = page.next_cursor


def reserve(
    factory: sessionmaker[Session],
    org_id: int,
    message_id: int,
    audience: Audience,
    *,
    now: datetime | None = None,
) -> SubmitResult:
    """Plan the draft under the cap and commit one "reserved" row per recipient; the message is then
    "submitting" and the worker (`submission.run`) makes the WeCom calls."""
    now = ensure_utc(now) if now is not None else utcnow()
    result = SubmitResult(message_id=message_id)
    model = audience.model
    with transaction(factory) as db:
        org_settings(db, org_id, lock=True)  # serialises cap checks of this organization
        msg = get_message(db, org_id, message_id)
        if msg.chat_type != audience.chat_type:
            raise Invalid(
                f"this mass message goes to {_WHO[msg.chat_type]}, not {_WHO[audience.chat_type]}",
                field="message_id",
            )
        if msg.status != MassMessageStatus.draft:
            raise Conflict(f"this mass message is already {msg.status.value}", field="message_id")
        p = audience.plan(db, org_id, msg, now=now)
        result.left_out = [o for o in p.left_out if o.reason != "already_sent"]
        rows = [
            {
                "org_id": org_id,
                "message_id": msg.id,
                audience.key: rid,
                audience.address: address,
                "account_id": p.sender_accounts[userid],
                "status": SendStatus.reserved.value,
                "msgid": "",
                "reserved_at": now,
                "error": "",
            }
            for userid, recipients in p.by_sender.items()
            for rid, address in recipients
        ]
        for part in chunked(rows, IN_LIST_SIZE):
            db.execute(insert_ignore(db, model.__table__, ["message_id", audience.key]), list(part))
        result.reserved = len(rows)
        msg.status = MassMessageStatus.submitting
        msg.left_out = {"items": [o.__dict__ for o in result.left_out[:1000]], "total": len(result.left_out)}
        if audience.settled is not None:
            capped = [o for o in result.left_out if o.reason == "cap_reached"]
            audience.settled(
                db,
                org_id,
                msg.id,
                [Outcome(getattr(o, audience.key), None, False, o.detail, now) for o in capped],
            )
    return result


def settle_rows(
    db: Session,
    audience: Audience,
    org_id: int,
    message_id: int,
    ids: Sequence[int],
    status: SendStatus,
    msgid: str,
    error: str = "",
) -> None:
    """Set sends `ids` to `status` (with WeCom's msgid and the error in words) and, when that settles them,
    record their outcomes (flushes)."""
    if not ids:
        return
    model = audience.model
    for part in chunked(list(ids), IN_LIST_SIZE):
        db.execute(
            update(model)
            .where(model.id.in_(part))
            .values(status=status, msgid=msgid, error=error[:300])
            .execution_options(synchronize_session=False)
        )
    if status in SETTLED and audience.settled is not None:
        rows = [row for part in chunked(list(ids), IN_LIST_SIZE) for row in _sends(db, model, part)]
        now = utcnow()
        audience.settled(db, org_id, message_id, [_outcome(audience, r, now) for r in rows])


def _sends(db: Session, model: type[MassSend] | type[MassGroupSend], ids: Sequence[int]) -> list[Any]:
    return list(db.scalars(select(model).where(model.id.in_(ids)).order_by(model.id)))


def _outcome(audience: Audience, row: MassSend | MassGroupSend, at: datetime) -> Outcome:
    """How a settled send row ended, in words."""
    sent = row.status == SendStatus.sent
    reason = "" if sent else (NOT_FRIEND if row.status == SendStatus.not_friend else row.error)
    return Outcome(
        getattr(row, audience.key),
        row.account_id,
        sent,
        reason,
        ensure_utc(row.sent_at or at),
        getattr(row, audience.address),
    )


def read_back(db: Session, msg: MassMessage, client: MassMessenger, audience: Audience) -> dict[str, int]:
    """Read per-member tasks and per-recipient results back from WeCom into the sends; counts per status."""
    model = audience.model
    rows: list[MassSend | MassGroupSend] = list(db.scalars(select(model).where(model.message_id == msg.id)))
    by_key = {(r.msgid, getattr(r, audience.address)): r for r in rows if r.msgid}
    settled: list[MassSend | MassGroupSend] = []
    for msgid in sorted({r.msgid for r in rows if r.msgid}):
        members = [t.userid for t in paged(partial(client.list_mass_tasks, msgid))]
        for userid in members:
            for s in paged(partial(client.list_mass_send_results, msgid, userid)):
                row = by_key.get((msgid, getattr(s, audience.address)))
                if row is None or (row.status == SendStatus.failed and row.error.startswith(REFUSED)):
                    continue
                status, error = audience.results.get(s.status, (row.status, None))
                if status != row.status and status in SETTLED:
                    settled.append(row)
                row.status, row.sent_at = status, s.sent_at
                if error is not None:
                    row.error = error
    db.flush()
    if settled and audience.settled is not None:
        now = utcnow()
        audience.settled(db, msg.org_id, msg.id, [_outcome(audience, r, now) for r in settled])
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.status.value] += 1
    return dict(counts)


def status_counts(
    db: Session, model: type[MassSend] | type[MassGroupSend], message_id: int
) -> dict[str, int]:
    """How many sends of a message in the send table `model` are in each status."""
    return {
        str(status): int(n)
        for status, n in db.execute(
            select(model.status, func.count()).where(model.message_id == message_id).group_by(model.status)
        )
    }
