"""Mass messages to customer groups (WeCom add_msg_template with chat_type "group").

The groups are chosen as a list of siyu group ids or as "every active group this member owns"; the choice is
stored on the message (`group_ids`). WeCom sends a group message through the group's owner (`sender` is
required and every chat id must be a group the sender owns), so a submission makes one task per owner
and at most 2,000 chat ids a task, splitting larger sets.

Caps: WeCom caps what a customer group receives exactly as it caps a customer ("每位客户/每个客户群每月最多可接收
条数为当月天数", adjustable to 7 a week or 1 a day), so the organization's cap policy applies per group, counted
over this table's reserved, submitted and sent rows. WeCom documents no other per-group rate.

Reservation, submission and read-back are those of customer messages (`sending.reserve`, `submission.run` and
`sending.read_back`, given `GROUPS`): send rows are committed before WeCom is called, each call is recorded
before it is made, and a crashed call is looked up in WeCom before it is made again. WeCom lists a group task's
groups only once they are sent, so a group call is recognised by sender, text and time (see `submission`).

When a group's send settles, each customer who was in the group when it was posted (or, unsent, when the send
was reserved) gets message_sent (or message_failed) with the group's id and chat id, through the recorder of
messages to customers (`sending.record_outcomes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.campaigns.models import MassChatType, MassGroupSend, MassMessage, SendStatus
from siyu.campaigns.sending import (
    REFUSED,
    Audience,
    Outcome,
    Plan,
    check_content,
    new_draft,
    open_plan,
    over_cap,
    record_outcomes,
    sent_before,
)
from siyu.groups import service as groups
from siyu.groups.models import CustomerGroup, GroupStatus
from siyu.integrations.channel import SendStatus as WeComSendStatus
from siyu.kit.bulk import IN_LIST_SIZE, chunked
from siyu.kit.errors import Invalid, NotFound

MAX_CHATS_PER_TASK = 2_000
MAX_GROUPS = 20_000


@dataclass
class ExcludedGroup:
    """A customer group the message will not reach, and why."""

    group_id: int
    reason: str  # unknown_group, dismissed, no_owner, cap_reached, already_sent
    detail: str


def _owned_groups(db: Session, org_id: int, account_id: int) -> list[int]:
    account = db.scalar(select(Account).where(Account.id == account_id, Account.org_id == org_id))
    if account is None:
        raise NotFound("account not found", field="owner_account_id")
    if account.kind != AccountKind.wecom_member:
        raise Invalid("only WeCom members own customer groups", field="owner_account_id")
    ids = list(
        db.scalars(
            select(CustomerGroup.id)
            .where(
                CustomerGroup.org_id == org_id,
                CustomerGroup.owner_account_id == account.id,
                CustomerGroup.status == GroupStatus.active,
            )
            .order_by(CustomerGroup.id)
        )
    )
    if not ids:
        raise Invalid(f"{account.name} owns no active customer groups", field="owner_account_id")
    return ids


def create_group_message(
    db: Session,
    org_id: int,
    *,
    text: str,
    group_ids: Sequence[int] | None = None,
    owner_account_id: int | None = None,
    attachments: Sequence[dict[str, Any]] = (),
    actor_id: int | None = None,
) -> MassMessage:
    """Store a draft to customer groups: the listed `group_ids`, or every active group `owner_account_id` owns."""
    text = check_content(text, attachments)
    if (group_ids is None) == (owner_account_id is None):
        raise Invalid(
            "choose the groups (group_ids) or the member whose groups get it (owner_account_id), not both",
            field="group_ids",
        )
    if owner_account_id is not None:
        ids = _owned_groups(db, org_id, owner_account_id)
    else:
        ids = list(dict.fromkeys(int(g) for g in group_ids or ()))
        if not ids:
            raise Invalid("choose at least one customer group", field="group_ids")
    if len(ids) > MAX_GROUPS:
        raise Invalid(f"at most {MAX_GROUPS:,} groups per message", field="group_ids")
    return new_draft(
        db,
        org_id,
        text=text,
        attachments=attachments,
        actor_id=actor_id,
        customer_ids=[],
        group_ids=ids,
        chat_type=MassChatType.group,
    )


def plan_groups(
    db: Session, org_id: int, msg: MassMessage, *, now: datetime | None = None
) -> Plan[ExcludedGroup]:
    """Which groups the message reaches through which owner, and which are left out and why (writes nothing)."""
    result, policy, start = open_plan(db, org_id, now)
    ids = [int(g) for g in msg.group_ids]
    already, counts = sent_before(db, MassGroupSend, "group_id", org_id, msg.id, ids, start)
    groups: dict[int, tuple[str, GroupStatus, str | None, int | None]] = {}
    for part in chunked(ids, IN_LIST_SIZE):
        for gid, chat_id, status, owner_userid, owner_id in db.execute(
            select(
                CustomerGroup.id, CustomerGroup.chat_id, CustomerGroup.status, Account.external_id, Account.id
            )
            .outerjoin(
                Account,
                (Account.id == CustomerGroup.owner_account_id)
                & (Account.kind == AccountKind.wecom_member)
                & (Account.status == AccountStatus.active),
            )
            .where(CustomerGroup.org_id == org_id, CustomerGroup.id.in_(part))
        ):
            groups[gid] = (chat_id, status, owner_userid, owner_id)
    for gid in ids:
        found = groups.get(gid)
        if found is None:
            result.left_out.append(
                ExcludedGroup(gid, "unknown_group", f"customer group {gid} does not exist")
            )
            continue
        chat_id, status, userid, aid = found
        if gid in already:
            result.left_out.append(
                ExcludedGroup(gid, "already_sent", f"group {gid} is already in this message")
            )
        elif status != GroupStatus.active:
            result.left_out.append(ExcludedGroup(gid, "dismissed", f"group {gid} was dismissed"))
        elif userid is None or aid is None:
            result.left_out.append(
                ExcludedGroup(
                    gid,
                    "no_owner",
                    f"group {gid} has no owner who is an active WeCom member; hand it over first",
                )
            )
        elif detail := over_cap("group", gid, counts[gid], policy, result.cap):
            result.left_out.append(ExcludedGroup(gid, "cap_reached", detail))
        else:
            result.reach(gid, chat_id, userid, aid)
    return result


def _record_group_outcomes(db: Session, org_id: int, message_id: int, outcomes: Sequence[Outcome]) -> None:
    """message_sent / message_failed for each customer member of a group whose send settled, through the
    recorder of messages to customers, marked with the group: the members when WeCom posted it, or, for a group it never
    reached, when siyu reserved the send (whom it was meant for; the group may be gone since)."""
    unsent = [o.recipient_id for o in outcomes if not o.sent]
    reserved: dict[int, datetime] = {}
    for part in chunked(unsent, IN_LIST_SIZE):
        for gid, at in db.execute(
            select(MassGroupSend.group_id, MassGroupSend.reserved_at).where(
                MassGroupSend.message_id == message_id, MassGroupSend.group_id.in_(part)
            )
        ):
            reserved[gid] = at
    moments = {o.recipient_id: o.at if o.sent else reserved.get(o.recipient_id, o.at) for o in outcomes}
    members = groups.customers_at(db, org_id, moments)
    record_outcomes(
        db,
        org_id,
        message_id,
        [
            Outcome(cid, o.account_id, o.sent, o.reason, o.at, o.address, group_id=o.recipient_id)
            for o in outcomes
            for cid in members.get(o.recipient_id, ())
        ],
    )


GROUPS = Audience(
    chat_type=MassChatType.group,
    model=MassGroupSend,
    key="group_id",
    address="chat_id",
    per_task=MAX_CHATS_PER_TASK,
    plan=plan_groups,
    lists_unsent=False,
    refused=lambda userid: (
        f"{REFUSED}: not a live group owned by {userid} (siyu's copy may be stale; sync groups)"
    ),
    results={
        WeComSendStatus.UNSENT.value: (SendStatus.submitted, ""),
        WeComSendStatus.SENT.value: (SendStatus.sent, ""),
        # For a group WeCom's status 2 ("not a friend") means the sender can no longer post there.
        WeComSendStatus.NOT_FRIEND.value: (
            SendStatus.failed,
            "WeCom: the group was dismissed or is no longer owned by the sender",
        ),
        WeComSendStatus.CAP_REACHED.value: (
            SendStatus.unsent,
            "WeCom: the group already received its mass messages for the period",
        ),
    },
    settled=_record_group_outcomes,
)


def group_sends(db: Session, org_id: int, message_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
    """The message's per-group sends with the group's name (for the console and the API)."""
    rows = db.execute(
        select(MassGroupSend, CustomerGroup.name)
        .join(CustomerGroup, CustomerGroup.id == MassGroupSend.group_id)
        .where(MassGroupSend.org_id == org_id, MassGroupSend.message_id == message_id)
        .order_by(MassGroupSend.id)
        .limit(limit)
    ).all()
    return [
        {
            "group_id": s.group_id,
            "chat_id": s.chat_id,
            "name": name,
            "status": s.status.value,
            "msgid": s.msgid,
            "sent_at": s.sent_at,
            "error": s.error,
        }
        for s, name in rows
    ]
