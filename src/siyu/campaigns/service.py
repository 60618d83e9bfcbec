"""Mass messages to customers through WeCom, with per-customer caps, crash-safe reservations and read-back.

The flow: `create_message` stores the content and the chosen customers; `plan` tells who would be reached
through which member (the one who has known the customer longest) and who is left out and why (a marketing
message skips customers without `consent_marketing`); `start_submission` reserves the sends under the cap and
commits them, and the worker (`campaigns.tasks`, `run_submission`) calls add_msg_template, one task per sender
member and at most 10,000 customers a task, recording each call before making it (`submission`);
`refresh_results` reads delivery back into the rows. `submit` does both in one process (tests, scripts).
The reservation, crash recovery, read-back and caps are shared with group messages (`sending`, `submission`).

Messages to customer groups (chat_type "group") live in the same table; `group_messages` creates and plans
them, and `submit`, `refresh_results`, `send_counts` and `preview` here take either kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.campaigns import group_messages, submission
from siyu.campaigns.models import MassChatType, MassMessage, MassMessageStatus, MassSend, SendStatus

# Re-exported: the API, the console and callers reach the settings, caps and messages through this module.
from siyu.campaigns.sending import COUNTED as COUNTED
from siyu.campaigns.sending import (
    REFUSED,
    Audience,
    Plan,
    check_content,
    new_draft,
    open_plan,
    over_cap,
    read_back,
    record_outcomes,
    reserve,
    sent_before,
    status_counts,
)
from siyu.campaigns.sending import SubmitResult as SubmitResult
from siyu.campaigns.sending import cap_window as cap_window
from siyu.campaigns.sending import get_message as get_message
from siyu.campaigns.sending import org_settings as org_settings
from siyu.campaigns.sending import set_cap_policy as set_cap_policy
from siyu.customers import merge
from siyu.customers.models import Customer, CustomerIdentity, FollowRelation, FollowStatus, IdentityKind
from siyu.customers.resolution import live_customers
from siyu.integrations.channel import MassMessenger
from siyu.integrations.channel import SendStatus as WeComSendStatus
from siyu.kit.bulk import IN_LIST_SIZE, chunked
from siyu.kit.errors import Conflict, Invalid

MAX_PER_TASK = 10_000
MAX_RECIPIENTS = 100_000


@dataclass
class Excluded:
    """A customer the message will not reach, and why."""

    customer_id: int
    reason: str  # unknown_customer, no_consent, no_wecom_contact, no_wecom_id, cap_reached, already_sent
    detail: str


# --- messages ---------------------------------------------------------------------------------------


def create_message(
    db: Session,
    org_id: int,
    *,
    text: str,
    customer_ids: Sequence[int],
    attachments: Sequence[dict[str, Any]] = (),
    actor_id: int | None = None,
    marketing: bool = True,
) -> MassMessage:
    """Store a mass message draft for the chosen customers (`marketing`: only those who consented get it)."""
    text = check_content(text, attachments)
    ids = list(dict.fromkeys(int(c) for c in customer_ids))
    if not ids:
        raise Invalid("choose at least one customer", field="customer_ids")
    if len(ids) > MAX_RECIPIENTS:
        raise Invalid(f"at most {MAX_RECIPIENTS:,} customers per message", field="customer_ids")
    return new_draft(
        db,
        org_id,
        text=text,
        attachments=attachments,
        actor_id=actor_id,
        customer_ids=ids,
        marketing=marketing,
    )


def plan(db: Session, org_id: int, msg: MassMessage, *, now: datetime | None = None) -> Plan[Excluded]:
    """Who the message reaches through which member, and who is left out and why (nothing is written)."""
    result, policy, start = open_plan(db, org_id, now)
    ids = [int(c) for c in msg.customer_ids]
    live = live_customers(db, org_id, ids)
    for cid in ids:
        if cid not in live:
            result.left_out.append(Excluded(cid, "unknown_customer", f"customer {cid} does not exist"))
    # A merged-away id reaches its survivor, once.
    targets = list(dict.fromkeys(live[c] for c in ids if c in live))
    already, counts = sent_before(db, MassSend, "customer_id", org_id, msg.id, targets, start)
    senders: dict[int, tuple[int, str]] = {}
    eids: dict[int, str] = {}
    consenting: set[int] = set()
    for part in chunked(targets, IN_LIST_SIZE):
        if msg.marketing:
            consenting.update(
                db.scalars(
                    select(Customer.id).where(
                        Customer.org_id == org_id, Customer.id.in_(part), Customer.consent_marketing.is_(True)
                    )
                )
            )
        rows = db.execute(
            select(FollowRelation.customer_id, Account.id, Account.external_id)
            .join(Account, Account.id == FollowRelation.account_id)
            .where(
                FollowRelation.org_id == org_id,
                FollowRelation.customer_id.in_(part),
                FollowRelation.status == FollowStatus.active,
                Account.kind == AccountKind.wecom_member,
                Account.status == AccountStatus.active,
            )
            # Ties (added in the same second) go to the member siyu knew first, not to whichever follow row
            # a parallel sync happened to write first.
            .order_by(FollowRelation.since, Account.id)
        )
        for cid, aid, userid in rows:
            senders.setdefault(cid, (aid, userid))  # the member who has known the customer longest sends
        for cid, value in db.execute(
            select(CustomerIdentity.customer_id, CustomerIdentity.value).where(
                CustomerIdentity.org_id == org_id,
                CustomerIdentity.customer_id.in_(part),
                CustomerIdentity.kind == IdentityKind.wecom_external_userid,
            )
        ):
            eids.setdefault(cid, value)
    for cid in targets:
        if cid in already:
            result.left_out.append(
                Excluded(cid, "already_sent", f"customer {cid} is already in this message")
            )
        elif msg.marketing and cid not in consenting:
            result.left_out.append(
                Excluded(cid, "no_consent", f"customer {cid} has not agreed to receive marketing messages")
            )
        elif cid not in eids:
            result.left_out.append(
                Excluded(cid, "no_wecom_id", f"customer {cid} has no WeCom external userid")
            )
        elif cid not in senders:
            result.left_out.append(
                Excluded(
                    cid, "no_wecom_contact", f"customer {cid} is not a contact of any active WeCom member"
                )
            )
        elif detail := over_cap("customer", cid, counts[cid], policy, result.cap):
            result.left_out.append(Excluded(cid, "cap_reached", detail))
        else:
            aid, userid = senders[cid]
            result.reach(cid, eids[cid], userid, aid)
    return result


CUSTOMERS = Audience(
    chat_type=MassChatType.single,
    model=MassSend,
    key="customer_id",
    address="external_userid",
    per_task=MAX_PER_TASK,
    plan=plan,
    lists_unsent=True,
    refused=lambda userid: f"{REFUSED}: not a contact of the sender",
    results={
        WeComSendStatus.UNSENT.value: (SendStatus.submitted, None),
        WeComSendStatus.SENT.value: (SendStatus.sent, None),
        WeComSendStatus.NOT_FRIEND.value: (SendStatus.not_friend, None),
        WeComSendStatus.CAP_REACHED.value: (
            SendStatus.unsent,
            "WeCom: the customer already received their mass messages for the period",
        ),
    },
    settled=record_outcomes,
)
_AUDIENCES = {MassChatType.single: CUSTOMERS, MassChatType.group: group_messages.GROUPS}


def preview(db: Session, org_id: int, msg: MassMessage) -> Plan[Any]:
    """The plan of a message to customers or to groups (see `plan` and `group_messages.plan_groups`)."""
    return _AUDIENCES[msg.chat_type].plan(db, org_id, msg)


def start_submission(
    factory: sessionmaker[Session], org_id: int, message_id: int, *, now: datetime | None = None
) -> SubmitResult:
    """Reserve a draft's recipients under the cap (committed); the caller then enqueues the worker's
    `campaigns.tasks.submit_mass_message`, which makes the WeCom calls."""
    with factory() as db:
        chat_type = get_message(db, org_id, message_id).chat_type
    return reserve(factory, org_id, message_id, _AUDIENCES[chat_type], now=now)


def run_submission(
    factory: sessionmaker[Session],
    org_id: int,
    message_id: int,
    client: MassMessenger,
    *,
    grace: timedelta = submission.IN_FLIGHT_GRACE,
) -> SubmitResult | None:
    """The worker's part: submit, resume or finish cancelling a reserved message (None: another live
    process is on it)."""
    with factory() as db:
        chat_type = get_message(db, org_id, message_id).chat_type
    return submission.run(factory, org_id, message_id, client, _AUDIENCES[chat_type], grace=grace)


def submit(
    factory: sessionmaker[Session],
    org_id: int,
    message_id: int,
    client: MassMessenger,
    *,
    now: datetime | None = None,
    grace: timedelta = submission.IN_FLIGHT_GRACE,
) -> SubmitResult:
    """Reserve (a draft) and submit in this process: one WeCom task per sender and batch. A message left
    "submitting" by a crash is resumed instead, never sent twice."""
    with factory() as db:
        status = get_message(db, org_id, message_id).status
    if status in (MassMessageStatus.submitted, MassMessageStatus.failed, MassMessageStatus.cancelled):
        raise Conflict(f"this mass message was already {status.value}", field="message_id")
    reserved = (
        start_submission(factory, org_id, message_id, now=now)
        if status == MassMessageStatus.draft
        else SubmitResult(message_id=message_id)
    )
    ran = run_submission(factory, org_id, message_id, client, grace=grace)
    if ran is None:
        raise Conflict("this mass message is being submitted by another process", field="message_id")
    ran.reserved, ran.left_out = reserved.reserved, reserved.left_out
    return ran


def refresh_results(db: Session, org_id: int, message_id: int, client: MassMessenger) -> dict[str, int]:
    """Read per-member tasks and per-recipient results back from WeCom; returns counts per status."""
    msg = get_message(db, org_id, message_id)
    return read_back(db, msg, client, _AUDIENCES[msg.chat_type])


def _move_sends(db: Session, org_id: int, survivor_id: int, merged_id: int) -> int:
    """Merge hook: a merged-away customer's sends count against the survivor's cap (duplicates dropped)."""
    have = set(db.scalars(select(MassSend.message_id).where(MassSend.customer_id == survivor_id)))
    moved = 0
    for row in db.scalars(
        select(MassSend).where(MassSend.org_id == org_id, MassSend.customer_id == merged_id)
    ).all():
        if row.message_id in have:
            db.delete(row)
        else:
            row.customer_id = survivor_id
            moved += 1
    db.flush()
    return moved


def customer_failures(db: Session, org_id: int, message_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
    """The customers of a message whose send failed or was cancelled, with the reason in words (console)."""
    rows = db.execute(
        select(MassSend.customer_id, MassSend.status, MassSend.error, Customer.name)
        .join(Customer, Customer.id == MassSend.customer_id)
        .where(
            MassSend.org_id == org_id,
            MassSend.message_id == message_id,
            MassSend.status.in_((SendStatus.failed, SendStatus.cancelled)),
        )
        .order_by(MassSend.id)
        .limit(limit)
    ).all()
    return [{"customer_id": c, "status": s.value, "reason": e, "name": n} for c, s, e, n in rows]


def send_counts(db: Session, message_id: int) -> dict[str, int]:
    """How many sends of a message (to customers or to groups) are in each status."""
    msg = db.get(MassMessage, message_id)
    audience = _AUDIENCES[msg.chat_type] if msg is not None else CUSTOMERS
    return status_counts(db, audience.model, message_id)


merge.register_merge_hook("wecom_mass_sends", _move_sends)


def forget_person(db: Session, org_id: int, customer_ids: Sequence[int], identifiers: Sequence[str]) -> int:
    """Erasure: a person's send records keep their status (the cap and the message's results count them)
    but lose the WeCom external user id; returns rows changed."""
    result = db.execute(
        update(MassSend)
        .where(MassSend.org_id == org_id, MassSend.customer_id.in_(customer_ids))
        .values(external_userid="")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def messages_to(db: Session, org_id: int, customer_id: int) -> list[tuple[MassSend, MassMessage]]:
    """The mass messages addressed to a customer with their send records, oldest first (for a data export)."""
    rows = db.execute(
        select(MassSend, MassMessage)
        .join(MassMessage, MassMessage.id == MassSend.message_id)
        .where(MassSend.org_id == org_id, MassSend.customer_id == customer_id)
        .order_by(MassSend.reserved_at, MassSend.id)
    ).all()
    return [(s, m) for s, m in rows]
