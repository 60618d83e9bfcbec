"""Employee departure: hand a member's customers to another member, tracked to the end.

Rules (WeCom customer contact, 在职继承 / 离职继承):
  * one call moves at most 100 customers; larger hand-overs are sent in calls of 100;
  * a customer may be handed over at most twice in 90 days. siyu counts its own transfer rows of
    every request WeCom ACCEPTED, whatever the outcome (waiting, succeeded, refused, taker_full,
    expired), and refuses a third itself, naming the customer, the two earlier transfers and the
    first day a new one is possible. See COUNTING for why a refused hand-over counts;
  * a hand-over waits 24 hours, during which the customer may refuse (status 3); when the 24 hours
    end, a receiving member at their customer limit (50,000 by default) ends it with status 4.
    `poll_transfers` reads transfer_result until each row is final and, when a hand-over succeeds,
    moves the follow relation (and the accounts' friend counts). A refused or taker-full hand-over
    moves nobody: the follow relation stays with the leaving member, as in WeCom. The transfer_fail
    callback settles a row at once (`apply_transfer_fail`); polling settles it otherwise.

Rows are written before WeCom is called, so a crash leaves a visible "waiting" row, never an
untracked hand-over. Services flush; the caller commits.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import (
    Account,
    AccountKind,
    AccountStatus,
    CustomerTransfer,
    TransferKind,
    TransferStatus,
)
from siyu.customers import follows, merge
from siyu.customers.models import CustomerIdentity, FollowRelation, FollowStatus, IdentityKind
from siyu.customers.recording import record
from siyu.events.vocabulary import EventType
from siyu.integrations.channel import CustomerTransferrer, Page, TransferState
from siyu.integrations.channel import TransferStatus as WeComTransferStatus
from siyu.integrations.wecom.errors import explain
from siyu.kit.bulk import IN_LIST_SIZE, chunked
from siyu.kit.clock import ensure_utc, local, utcnow
from siyu.kit.errors import Conflict, Invalid, NotFound

MAX_PER_CALL = 100
MAX_TRANSFERS = 2
WINDOW = timedelta(days=90)
#: An in-service hand-over completes 24 h after the request; past this margin a silent row has expired.
EXPIRE_AFTER = timedelta(hours=72)
#: Rows that count against the 90-day rule: every request WeCom accepted (per-customer errcode 0).
#: WeCom's rule ("90个自然日内，在职成员的每位客户仅可被转接2次", transfer_customer) is stated "to protect
#: the customer's service experience" and counts hand-overs started, not completed: each accepted request
#: already notified the customer and asked them to accept or refuse. WeCom's guidance for a customer who
#: keeps refusing is to wait 90 days or let them add a member themselves, which only holds if refusals
#: use up the two transfers. So refused (status 3) counts, and so does taker_full (status 4: the customer
#: was notified and waited the 24 hours too) and expired (accepted; siyu never learnt the outcome). Only
#: `failed` rows do not count: WeCom refused those on the spot (an errcode such as 84061) or reports no
#: record of them (status 5), so no transfer of the customer ever started. Counting one request too many
#: costs a clear refusal with the date the customer can move again; counting one too few would make
#: WeCom refuse the customer with errcode 40128 after siyu asked.
COUNTING = (
    TransferStatus.waiting,
    TransferStatus.succeeded,
    TransferStatus.refused,
    TransferStatus.taker_full,
    TransferStatus.expired,
)


#: Per-customer transfer errcodes of transfer_customer (全局错误码) the generic explanations do not cover.
_TRANSFER_ERRORS: dict[int, str] = {
    40128: "WeCom refused: this customer was already handed over twice in the last 90 days (errcode 40128)",
    40129: "WeCom refused: this customer is already being handed over (errcode 40129)",
}


@dataclass
class LeftOut:
    """A customer siyu did not hand over, and why (in words an operator understands)."""

    customer_id: int
    reason: str
    detail: str


@dataclass
class TransferResult:
    """What a transfer request did: rows created (waiting or failed) and customers left out."""

    requested: list[CustomerTransfer] = field(default_factory=list)
    failed: list[CustomerTransfer] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)


def _member(db: Session, org_id: int, account_id: int, field_name: str) -> Account:
    account = db.scalar(select(Account).where(Account.id == account_id, Account.org_id == org_id))
    if account is None:
        raise NotFound("account not found", field=field_name)
    if account.kind != AccountKind.wecom_member:
        raise Invalid("only WeCom members can hand over or take over customers", field=field_name)
    return account


def departure_summary(db: Session, org_id: int, account_id: int) -> dict[str, int]:
    """How many customers (active follows) and groups (owned, active) a member would hand over."""
    from siyu.groups.models import CustomerGroup, GroupStatus

    account = _member(db, org_id, account_id, "account_id")
    return {
        "customers": int(
            db.scalar(
                select(func.count())
                .select_from(FollowRelation)
                .where(
                    FollowRelation.org_id == org_id,
                    FollowRelation.account_id == account.id,
                    FollowRelation.status == FollowStatus.active,
                )
            )
            or 0
        ),
        "groups": int(
            db.scalar(
                select(func.count())
                .select_from(CustomerGroup)
                .where(
                    CustomerGroup.org_id == org_id,
                    CustomerGroup.owner_account_id == account.id,
                    CustomerGroup.status == GroupStatus.active,
                )
            )
            or 0
        ),
    }


def recent_transfers(
    db: Session, org_id: int, customer_ids: Sequence[int], now: datetime
) -> dict[int, list[datetime]]:
    """Transfers that count against the 90-day rule, per customer, oldest first."""
    out: dict[int, list[datetime]] = defaultdict(list)
    for part in chunked(sorted(set(customer_ids)), IN_LIST_SIZE):
        rows = db.execute(
            select(CustomerTransfer.customer_id, CustomerTransfer.requested_at)
            .where(
                CustomerTransfer.org_id == org_id,
                CustomerTransfer.customer_id.in_(part),
                CustomerTransfer.requested_at > now - WINDOW,
                CustomerTransfer.status.in_(COUNTING),
            )
            .order_by(CustomerTransfer.requested_at)
        )
        for cid, at in rows:
            out[cid].append(ensure_utc(at))
    return out


def rule_refusal(customer_id: int, earlier: list[datetime]) -> LeftOut:
    """The clear message for a customer who was already handed over twice in 90 days."""
    days = ", ".join(local(t).strftime("%Y-%m-%d") for t in earlier)
    next_day = local(earlier[-MAX_TRANSFERS] + WINDOW).strftime("%Y-%m-%d")
    return LeftOut(
        customer_id,
        "transfer_limit",
        f"customer {customer_id} was already handed over {len(earlier)} times in the last 90 days ({days}); "
        f"WeCom allows at most {MAX_TRANSFERS} transfers of a customer in 90 days, so siyu did not ask. "
        f"The next transfer is possible from {next_day}.",
    )


def request_transfer(
    db: Session,
    org_id: int,
    client: CustomerTransferrer,
    *,
    from_account_id: int,
    to_account_id: int,
    customer_ids: Sequence[int] | None = None,
    kind: TransferKind | str = TransferKind.in_service,
    message: str = "",
    actor_id: int | None = None,
    now: datetime | None = None,
) -> TransferResult:
    """Hand the member's customers (all, or `customer_ids`) over; a third transfer in 90 days is refused."""
    kind = TransferKind(kind)
    now = ensure_utc(now) if now is not None else utcnow()
    source = _member(db, org_id, from_account_id, "from_account_id")
    target = _member(db, org_id, to_account_id, "to_account_id")
    if source.id == target.id:
        raise Invalid("the receiving member must differ from the leaving member", field="to_account_id")
    if target.status != AccountStatus.active:
        raise Invalid(
            f"the receiving member {target.name} is {target.status}, not active", field="to_account_id"
        )
    if len(message) > 200:
        raise Invalid("the hand-over message has at most 200 characters", field="message")
    if kind == TransferKind.resigned and message:
        raise Invalid("WeCom sends no message when a resigned member's customers move", field="message")
    followed = set(
        db.scalars(
            select(FollowRelation.customer_id).where(
                FollowRelation.org_id == org_id,
                FollowRelation.account_id == source.id,
                FollowRelation.status == FollowStatus.active,
            )
        )
    )
    result = TransferResult()
    if customer_ids is None:
        wanted = sorted(followed)
    else:
        wanted = list(dict.fromkeys(int(c) for c in customer_ids))
        for cid in wanted:
            if cid not in followed:
                result.left_out.append(
                    LeftOut(cid, "not_a_contact", f"customer {cid} is not a contact of {source.name}")
                )
        wanted = [c for c in wanted if c in followed]
    eids: dict[int, str] = {}
    for part in chunked(wanted, IN_LIST_SIZE):
        for cid, value in db.execute(
            select(CustomerIdentity.customer_id, CustomerIdentity.value).where(
                CustomerIdentity.org_id == org_id,
                CustomerIdentity.kind == IdentityKind.wecom_external_userid,
                CustomerIdentity.customer_id.in_(part),
            )
        ):
            eids.setdefault(cid, value)
    earlier = recent_transfers(db, org_id, wanted, now)
    eligible: list[CustomerTransfer] = []
    for cid in wanted:
        if cid not in eids:
            result.left_out.append(
                LeftOut(cid, "no_wecom_id", f"customer {cid} has no WeCom external userid")
            )
        elif len(earlier.get(cid, [])) >= MAX_TRANSFERS:
            result.left_out.append(rule_refusal(cid, earlier[cid]))
        else:
            eligible.append(
                CustomerTransfer(
                    org_id=org_id,
                    customer_id=cid,
                    external_userid=eids[cid],
                    from_account_id=source.id,
                    to_account_id=target.id,
                    kind=kind,
                    status=TransferStatus.waiting,
                    requested_at=now,
                    requested_by=actor_id,
                )
            )
    if not eligible:
        if result.left_out:
            raise Conflict("; ".join(o.detail for o in result.left_out[:3]), field="customer_ids")
        raise Invalid(f"{source.name} has no customers to hand over", field="from_account_id")
    db.add_all(eligible)
    db.flush()  # the rows exist before WeCom hears of the hand-over
    for batch in chunked(eligible, MAX_PER_CALL):
        by_eid = {row.external_userid: row for row in batch}
        outcomes = client.transfer_customers(
            source.external_id,
            target.external_id,
            list(by_eid),
            resigned=kind == TransferKind.resigned,
            message=message,
        )
        for outcome in outcomes:
            row = by_eid.get(outcome.external_userid)
            if row is not None and outcome.errcode != 0:
                row.status, row.errcode = TransferStatus.failed, outcome.errcode
                row.detail = _TRANSFER_ERRORS.get(outcome.errcode, explain(outcome.errcode))[:300]
    db.flush()
    result.requested = [r for r in eligible if r.status == TransferStatus.waiting]
    result.failed = [r for r in eligible if r.status == TransferStatus.failed]
    for row in result.requested:
        _record(db, row, EventType.transfer_requested, now)
    for row in result.failed:  # WeCom refused on the spot: the hand-over ended before it started
        _record(db, row, EventType.transfer_refused, now)
    return result


def _record(db: Session, row: CustomerTransfer, type_: EventType, at: datetime) -> None:
    """The transfer event of one customer's hand-over (keyed by the transfer row: recorded once)."""
    properties: dict[str, Any] = {"transfer_id": row.id}
    if type_ in (EventType.transfer_refused, EventType.transfer_expired):
        properties["reason"] = row.detail or str(row.status)
    else:
        properties["from_account_id"] = row.from_account_id
        properties["to_account_id"] = row.to_account_id
    record(
        db,
        row.org_id,
        row.customer_id,
        type_,
        at=at,
        origin="wecom",
        key=f"{type_}:{row.id}",
        **properties,
    )


_FINAL: dict[int, TransferStatus] = {
    WeComTransferStatus.DONE.value: TransferStatus.succeeded,
    WeComTransferStatus.REFUSED.value: TransferStatus.refused,
    WeComTransferStatus.TAKEOVER_FULL.value: TransferStatus.taker_full,
    WeComTransferStatus.NO_RECORD.value: TransferStatus.failed,
}
#: transfer_fail's FailReason -> the final status it means.
_FAIL_REASONS: dict[str, TransferStatus] = {
    "customer_refused": TransferStatus.refused,
    "customer_limit_exceed": TransferStatus.taker_full,
}


def outcome_detail(status: TransferStatus, source: str, target: str) -> str:
    """The reason shown for a hand-over that ended without moving the customer (empty for others)."""
    if status == TransferStatus.refused:
        return (
            f"the customer refused to be handed over to {target} (WeCom: 客户拒绝); "
            f"they stay a customer of {source}"
        )[:300]
    if status == TransferStatus.taker_full:
        return (
            f"{target} has reached WeCom's customer limit (WeCom: 接替成员客户达到上限); the customer "
            f"stays with {source}; free up room or choose another member"
        )[:300]
    if status == TransferStatus.failed:
        return "WeCom has no record of this hand-over (WeCom: 无接替记录); ask again if it is still wanted"
    return ""


def _complete(db: Session, org_id: int, row: CustomerTransfer, at: datetime) -> None:
    """A hand-over succeeded: the old relation ends (by transfer), the new one starts at the hand-over
    time, and transfer_succeeded is recorded."""
    # The new follow first: ended first, the customer would have no contact for a moment and the stage
    # rules would mark them lost and back.
    follows.follow(
        db, org_id, row.customer_id, row.to_account_id, since=at, source="transfer", origin="wecom"
    )
    with contextlib.suppress(NotFound):  # siyu never had the old relation; the new one is what matters
        follows.unfollow(
            db, org_id, row.customer_id, row.from_account_id, by="transfer", at=at, origin="wecom"
        )
    _record(db, row, EventType.transfer_succeeded, at)


def _settle(db: Session, org_id: int, row: CustomerTransfer, final: TransferStatus, at: datetime) -> None:
    """Record a final WeCom outcome on a waiting row; only a success moves the follow relation."""
    row.status = final
    if final == TransferStatus.succeeded:
        row.handover_at = at
        _complete(db, org_id, row, at)
        return
    row.handover_at = None  # nobody was handed over
    names = dict(
        db.execute(
            select(Account.id, Account.name).where(Account.id.in_((row.from_account_id, row.to_account_id)))
        ).all()
    )
    row.detail = outcome_detail(
        final,
        names.get(row.from_account_id, "the leaving member"),
        names.get(row.to_account_id, "the receiving member"),
    )
    _record(db, row, EventType.transfer_refused, at)


def poll_transfers(
    db: Session, org_id: int, client: CustomerTransferrer, *, now: datetime | None = None
) -> dict[str, int]:
    """Read transfer_result for every waiting hand-over and settle the rows; returns counts per status."""
    now = ensure_utc(now) if now is not None else utcnow()
    waiting = list(
        db.scalars(
            select(CustomerTransfer).where(
                CustomerTransfer.org_id == org_id, CustomerTransfer.status == TransferStatus.waiting
            )
        )
    )
    counts: dict[str, int] = defaultdict(int)
    pairs: dict[tuple[int, int, TransferKind], list[CustomerTransfer]] = defaultdict(list)
    for row in waiting:
        pairs[(row.from_account_id, row.to_account_id, row.kind)].append(row)
    for (from_id, to_id, kind), rows in pairs.items():
        source, target = db.get(Account, from_id), db.get(Account, to_id)
        if source is None or target is None:
            continue
        states: dict[str, TransferState] = {}
        cursor = ""
        while True:
            page: Page[TransferState] = client.transfer_results(
                source.external_id, target.external_id, resigned=kind == TransferKind.resigned, cursor=cursor
            )
            for state in page.items:
                states[state.external_userid] = state  # later entries are the newer request
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        for row in rows:
            reported = states.get(row.external_userid)
            final = _FINAL.get(reported.status) if reported is not None else None
            if reported is not None and final is not None:
                _settle(db, org_id, row, final, reported.takeover_at or now)
            elif ensure_utc(row.requested_at) + EXPIRE_AFTER < now:
                row.status = TransferStatus.expired
                row.detail = "WeCom reported no outcome within 72 hours"
                _record(db, row, EventType.transfer_expired, now)
            counts[row.status.value] += 1
    db.flush()
    return dict(counts)


def apply_transfer_fail(
    db: Session, org_id: int, takeover_userid: str, external_userid: str, reason: str, at: datetime
) -> str:
    """Settle the waiting hand-over a transfer_fail callback reports; returns what was done.

    The callback names only the receiving member and the customer. When one waiting row matches it is
    settled now; when none or several do (two members handing the same customer to one receiver), the
    next poll of transfer_result settles them, which names the leaving member too."""
    final = _FAIL_REASONS.get(reason)
    if final is None:
        return f"transfer failed: {reason or 'unknown reason'} (left to polling)"
    rows = list(
        db.scalars(
            select(CustomerTransfer)
            .join(Account, Account.id == CustomerTransfer.to_account_id)
            .where(
                CustomerTransfer.org_id == org_id,
                CustomerTransfer.status == TransferStatus.waiting,
                CustomerTransfer.external_userid == external_userid,
                Account.external_id == takeover_userid,
            )
        )
    )
    if len(rows) != 1:
        return f"transfer failed: {reason}; {len(rows)} waiting hand-overs match (left to polling)"
    _settle(db, org_id, rows[0], final, ensure_utc(at))
    db.flush()
    return f"transfer {rows[0].id} {final.value}"


class GroupOwnerTransferrer(Protocol):
    """The carrier capability of giving customer groups a new owner."""

    def transfer_groups(
        self, chat_ids: Sequence[str], new_owner: str, *, resigned: bool = False
    ) -> list[Any]:
        """Change the owner; returns the groups that failed (chat_id, errcode, errmsg)."""
        ...


@dataclass
class GroupTransferResult:
    """Groups whose owner changed, and those WeCom refused with why."""

    moved: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


def transfer_groups(
    db: Session,
    org_id: int,
    client: GroupOwnerTransferrer,
    *,
    from_account_id: int,
    to_account_id: int,
    kind: TransferKind | str = TransferKind.in_service,
) -> GroupTransferResult:
    """Give every active group the leaving member owns to the receiver (groupchat/onjob_transfer or transfer)."""
    from siyu.groups.models import CustomerGroup, GroupStatus

    kind = TransferKind(kind)
    source = _member(db, org_id, from_account_id, "from_account_id")
    target = _member(db, org_id, to_account_id, "to_account_id")
    if source.id == target.id:
        raise Invalid("the receiving member must differ from the leaving member", field="to_account_id")
    groups = list(
        db.scalars(
            select(CustomerGroup).where(
                CustomerGroup.org_id == org_id,
                CustomerGroup.owner_account_id == source.id,
                CustomerGroup.status == GroupStatus.active,
            )
        )
    )
    result = GroupTransferResult()
    if not groups:
        return result
    failures = {
        f.chat_id: f
        for f in client.transfer_groups(
            [g.chat_id for g in groups], target.external_id, resigned=kind == TransferKind.resigned
        )
    }
    for group in groups:
        failure = failures.get(group.chat_id)
        if failure is None:
            group.owner_account_id, group.owner_userid = target.id, target.external_id[:64]
            result.moved.append(group.chat_id)
        else:
            result.failed.append(
                {"chat_id": group.chat_id, "errcode": failure.errcode, "detail": explain(failure.errcode)}
            )
    db.flush()
    return result


def list_transfers(
    db: Session, org_id: int, *, from_account_id: int | None = None, limit: int = 500
) -> list[CustomerTransfer]:
    """Recent transfer rows of an organization (optionally of one leaving member), newest first."""
    stmt = select(CustomerTransfer).where(CustomerTransfer.org_id == org_id)
    if from_account_id is not None:
        stmt = stmt.where(CustomerTransfer.from_account_id == from_account_id)
    return list(db.scalars(stmt.order_by(CustomerTransfer.id.desc()).limit(limit)))


def waiting_count(db: Session, org_id: int) -> int:
    """How many hand-overs still wait for WeCom's outcome (served by the org/status index)."""
    stmt = select(func.count()).where(
        CustomerTransfer.org_id == org_id, CustomerTransfer.status == TransferStatus.waiting
    )
    return int(db.scalar(stmt) or 0)


def _move_transfers(db: Session, org_id: int, survivor_id: int, merged_id: int) -> int:
    """Merge hook: transfers of a merged-away customer count for the survivor (the 90-day rule follows)."""
    result = db.execute(
        update(CustomerTransfer)
        .where(CustomerTransfer.org_id == org_id, CustomerTransfer.customer_id == merged_id)
        .values(customer_id=survivor_id)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


merge.register_merge_hook("wecom_transfers", _move_transfers)
