"""The dashboard's "today" block: what waits for someone (to-dos) and each operator's numbers of the local
day (new friends, replies, deals, deletions).

Kept apart from ``web.queries`` (the headline counts) on purpose. Every count reads a range bounded to
today on an index: events on (org_id, type, occurred_at), leads on (org_id, created_at) and (org_id, status,
reply_due_at), transfers on (org_id, status), the outbox on (org_id, handler, status).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.accounts import departures
from siyu.accounts.models import Account
from siyu.customers.models import FollowRelation, FollowStatus
from siyu.events import outbox
from siyu.events.models import Event, of_timed_type
from siyu.events.vocabulary import EventType
from siyu.kit.clock import ensure_utc, utcnow
from siyu.leads.models import Lead, LeadStatus
from siyu.tenancy.models import Role, User
from siyu.tenancy.principal import Principal
from siyu.wecom import writeback

# How long before today a lead replied today may have come in: leads are answered within minutes, so a
# week bounds the (org_id, created_at) range scan without missing any.
LEAD_LOOKBACK = timedelta(days=7)


@dataclass
class OperatorDay:
    """One operator's numbers of the day."""

    user_id: int
    name: str
    new_friends: int = 0
    replies: int = 0
    deals: int = 0
    deletions: int = 0


@dataclass
class Today:
    """To-dos and per-operator numbers of the local day."""

    open_leads: int
    overdue_leads: int
    failed_writebacks: int | None  # None: not the reader's business (operators)
    waiting_transfers: int | None
    operators: list[OperatorDay] = field(default_factory=list)

    @property
    def todo_count(self) -> int:
        """Everything that waits for someone."""
        return self.open_leads + (self.failed_writebacks or 0) + (self.waiting_transfers or 0)


def day_bounds(tz: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Start and end (exclusive) of the local calendar day containing ``now``, as aware datetimes."""
    zone = ZoneInfo(tz)
    local_day = ensure_utc(now or utcnow()).astimezone(zone).date()
    start = datetime(local_day.year, local_day.month, local_day.day, tzinfo=zone)
    return start, start + timedelta(days=1)


def _operators(db: Session, principal: Principal) -> dict[int, OperatorDay]:
    """The operators the reader sees numbers of: every operator (and account holder) for admins, oneself
    for an operator."""
    stmt = select(User.id, User.name).where(User.org_id == principal.org_id, User.is_active.is_(True))
    if principal.sees_whole_org:
        holders = select(Account.operator_id).where(
            Account.org_id == principal.org_id, Account.operator_id.is_not(None)
        )
        stmt = stmt.where((User.role == Role.operator) | User.id.in_(holders))
    else:
        stmt = stmt.where(User.id == principal.user_id)
    return {uid: OperatorDay(uid, name) for uid, name in db.execute(stmt.order_by(User.name, User.id))}


def today(db: Session, principal: Principal, tz: str = "Asia/Shanghai", now: datetime | None = None) -> Today:
    """The reader's to-dos and the operators' numbers of today (local day in ``tz``)."""
    now = ensure_utc(now or utcnow())
    start, end = day_bounds(tz, now)
    org_id = principal.org_id
    open_leads, overdue = db.execute(
        select(func.count(), func.count().filter(Lead.reply_due_at < now)).where(
            Lead.org_id == org_id, Lead.status == LeadStatus.open
        )
    ).one()
    admin = principal.sees_whole_org
    result = Today(
        open_leads=int(open_leads),
        overdue_leads=int(overdue),
        failed_writebacks=outbox.health(db, org_id, writeback.HANDLER).failed if admin else None,
        waiting_transfers=departures.waiting_count(db, org_id) if admin else None,
    )
    people = _operators(db, principal)
    if not people:
        return result
    owner_of: dict[int, int] = {
        account_id: operator_id
        for account_id, operator_id in db.execute(
            select(Account.id, Account.operator_id).where(
                Account.org_id == org_id, Account.operator_id.in_(list(people))
            )
        )
        if operator_id is not None
    }
    todays = (Event.org_id == org_id, Event.occurred_at >= start, Event.occurred_at < end)
    # One query per type: the (org, type, time) index is partial, and SQLite matches it to `type = ...`
    # only, never to an IN list.
    for kind in (EventType.follow_started, EventType.message_sent):
        per_account = db.execute(
            select(Event.account_id, func.count())
            .where(*todays, of_timed_type(kind.value), Event.account_id.in_(list(owner_of)))
            .group_by(Event.account_id)
        ).all()
        for account_id, n in per_account:
            assert account_id is not None  # the query keeps the operators' accounts only
            person = people[owner_of[account_id]]
            if kind is EventType.follow_started:
                person.new_friends += int(n)
            else:
                person.replies += int(n)
    # Deletions: the customer deleted the member (the "by" property); few per day, read row by row.
    ended = db.execute(
        select(Event.account_id, Event.properties).where(
            *todays, of_timed_type(EventType.follow_ended.value), Event.account_id.in_(list(owner_of))
        )
    ).all()
    for account_id, properties in ended:
        assert account_id is not None
        if (properties or {}).get("by") == "customer":
            people[owner_of[account_id]].deletions += 1
    # Deals: orders paid today by customers an operator's account follows.
    deals = db.execute(
        select(Account.operator_id, func.count(func.distinct(Event.id)))
        .join(FollowRelation, FollowRelation.customer_id == Event.customer_id)
        .join(Account, Account.id == FollowRelation.account_id)
        .where(
            *todays,
            of_timed_type(EventType.order_paid.value),
            FollowRelation.status == FollowStatus.active,
            Account.operator_id.in_(list(people)),
        )
        .group_by(Account.operator_id)
    ).all()
    for user_id, n in deals:
        if user_id is not None:
            people[user_id].deals += int(n)
    # Comments answered in the lead inbox count as replies of whoever answered.
    answered = db.execute(
        select(Lead.replied_by_id, func.count())
        .where(
            Lead.org_id == org_id,
            Lead.created_at >= start - LEAD_LOOKBACK,
            Lead.replied_at >= start,
            Lead.replied_at < end,
            Lead.replied_by_id.in_(list(people)),
        )
        .group_by(Lead.replied_by_id)
    ).all()
    for user_id, n in answered:
        if user_id is not None:
            people[user_id].replies += int(n)
    result.operators = list(people.values())
    return result
