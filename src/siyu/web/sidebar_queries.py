"""Read-side queries of the chat sidebar (one customer's or one group's card); writes go through the
console's customer routes, which call `customers/`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.customers.models import Customer, CustomerTag, Tag
from siyu.events.models import Event
from siyu.events.vocabulary import EventType
from siyu.groups.models import CustomerGroup, GroupMember, GroupStatus, MemberKind
from siyu.kit.clock import utcnow
from siyu.kit.errors import NotFound
from siyu.leads.models import Comment, Lead
from siyu.tenancy.principal import Principal

#: Events that are a conversation with the customer (what "last contact" means on the card).
CONTACT_EVENTS = (
    EventType.welcome_sent,
    EventType.message_sent,
    EventType.message_received,
    EventType.lead_replied,
)
GROUP_MEMBERS_SHOWN = 50
GROUP_CHANGES_SHOWN = 10
GROUP_TAGS_SHOWN = 8


def first_lead(db: Session, org_id: int, customer_id: int) -> tuple[Lead, Comment] | None:
    """The lead (and its comment) that brought the customer: the earliest one converted to them."""
    row = db.execute(
        select(Lead, Comment)
        .join(Comment, Comment.id == Lead.comment_id)
        .where(Lead.org_id == org_id, Lead.customer_id == customer_id)
        .order_by(Lead.created_at, Lead.id)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else None


def last_contact(db: Session, org_id: int, customer_id: int) -> tuple[datetime, str] | None:
    """When and how siyu last saw a conversation with the customer (a message, a welcome, a reply)."""
    row = db.execute(
        select(Event.occurred_at, Event.type)
        .where(
            Event.customer_id == customer_id,
            # "+ 0" keeps SQLite on the (customer_id, occurred_at) index: with org_id as an indexed term it
            # walks the organization's whole log by time (80 ms a card on the demo instead of about 1).
            Event.org_id + 0 == org_id,
            Event.type.in_([t.value for t in CONTACT_EVENTS]),
        )
        .order_by(Event.occurred_at.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else None


@dataclass
class GroupCard:
    """One customer group as the sidebar shows it."""

    group: CustomerGroup
    members: list[tuple[GroupMember, str]]  # (member, display name), staff first, newest first
    customers: int
    staff: int
    top_tags: list[tuple[str, int]]  # (tag name, customers in the group carrying it)
    joined_7d: int
    left_7d: int
    joined_30d: int
    left_30d: int
    changes: list[tuple[datetime, str, str]] = field(default_factory=list)  # (at, "joined"/"left", name)


def group_card(db: Session, principal: Principal, chat_id: str) -> GroupCard:
    """The group the chat is, if the principal may see it (its owner is one of their accounts), or 404."""
    group = db.scalar(
        select(CustomerGroup).where(
            CustomerGroup.org_id == principal.org_id, CustomerGroup.chat_id == chat_id
        )
    )
    if group is None or group.status == GroupStatus.dismissed:
        raise NotFound("group not found")
    if not principal.sees_whole_org and group.owner_account_id not in principal_accounts(db, principal):
        raise NotFound("group not found")
    # Staff are named by their account (the name the console shows them by), never by their raw userid.
    rows = db.execute(
        select(GroupMember, func.coalesce(Customer.name, Account.name))
        .outerjoin(Customer, Customer.id == GroupMember.customer_id)
        .outerjoin(Account, Account.id == GroupMember.account_id)
        .where(GroupMember.group_id == group.id)
        .order_by(GroupMember.joined_at.desc(), GroupMember.id.desc())
    ).all()
    live = [(m, name or m.member_userid) for m, name in rows if m.quit_at is None]
    live.sort(key=lambda item: item[0].kind != MemberKind.staff)  # stable: staff first, newest first
    now = utcnow()
    week, month = now - timedelta(days=7), now - timedelta(days=30)

    def since(at: datetime | None, start: datetime) -> bool:
        return at is not None and (at if at.tzinfo else at.replace(tzinfo=now.tzinfo)) >= start

    changes: list[tuple[datetime, str, str]] = []
    for m, name in rows:
        changes.append((m.joined_at, "joined", name or m.member_userid))
        if m.quit_at is not None:
            changes.append((m.quit_at, "left", name or m.member_userid))
    changes.sort(key=lambda c: c[0], reverse=True)
    customer_ids = [m.customer_id for m, _ in live if m.customer_id is not None]
    top_tags: list[tuple[str, int]] = []
    if customer_ids:
        top_tags = [
            (name, int(n))
            for name, n in db.execute(
                select(Tag.name, func.count(CustomerTag.customer_id))
                .join(CustomerTag, CustomerTag.tag_id == Tag.id)
                .where(CustomerTag.customer_id.in_(customer_ids), Tag.org_id == principal.org_id)
                .group_by(Tag.name)
                .order_by(func.count(CustomerTag.customer_id).desc(), Tag.name)
                .limit(GROUP_TAGS_SHOWN)
            ).all()
        ]
    return GroupCard(
        group=group,
        members=live[:GROUP_MEMBERS_SHOWN],
        customers=sum(1 for m, _ in live if m.kind == MemberKind.customer),
        staff=sum(1 for m, _ in live if m.kind == MemberKind.staff),
        top_tags=top_tags,
        joined_7d=sum(1 for m, _ in rows if since(m.joined_at, week)),
        left_7d=sum(1 for m, _ in rows if since(m.quit_at, week)),
        joined_30d=sum(1 for m, _ in rows if since(m.joined_at, month)),
        left_30d=sum(1 for m, _ in rows if since(m.quit_at, month)),
        changes=changes[:GROUP_CHANGES_SHOWN],
    )


def principal_accounts(db: Session, principal: Principal) -> set[int]:
    """The ids of the accounts an operator runs."""
    return set(
        db.scalars(
            select(Account.id).where(
                Account.org_id == principal.org_id, Account.operator_id == principal.user_id
            )
        )
    )
