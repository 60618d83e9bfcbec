"""Source attribution (first and last touch per customer) and acquisition reports per code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from siyu.channels.models import ChannelAdd, ChannelCode, CustomerTouch, TouchKind
from siyu.channels.schemas import CodeReportOut, DailyAddsOut
from siyu.commerce.models import Order
from siyu.customers.merge import register_merge_hook
from siyu.events.models import Event, of_timed_type
from siyu.events.vocabulary import EventType
from siyu.kit.clock import local
from siyu.kit.errors import Invalid
from siyu.tenancy.service import org_zone

MAX_REPORT_DAYS = 366


def touch(db: Session, org_id: int, customer_id: int, code: ChannelCode, at: datetime) -> None:
    """Set the customer's first touch (only if none, or if this one is earlier) and last touch (if later)."""
    values = {
        "code_id": code.id,
        "channel": code.channel,
        "campaign": code.campaign,
        "content_item": code.content_item,
        "at": at,
    }
    for kind in (TouchKind.first, TouchKind.last):
        row = db.scalar(
            select(CustomerTouch).where(CustomerTouch.customer_id == customer_id, CustomerTouch.kind == kind)
        )
        if row is None:
            db.add(CustomerTouch(org_id=org_id, customer_id=customer_id, kind=kind, **values))
        elif (kind is TouchKind.first and at < row.at) or (kind is TouchKind.last and at >= row.at):
            for key, value in values.items():
                setattr(row, key, value)
    db.flush()


def touches_of(db: Session, org_id: int, customer_id: int) -> list[CustomerTouch]:
    """A customer's first and last touch (first first)."""
    return list(
        db.scalars(
            select(CustomerTouch)
            .where(CustomerTouch.org_id == org_id, CustomerTouch.customer_id == customer_id)
            .order_by(CustomerTouch.kind)
        )
    )


def _merge_touches(db: Session, org_id: int, survivor_id: int, merged_id: int) -> int:
    """Merge hook: the survivor keeps the earlier first touch and the later last touch; adds move over."""
    moved = 0
    for kind in (TouchKind.first, TouchKind.last):
        mine = db.scalar(
            select(CustomerTouch).where(CustomerTouch.customer_id == survivor_id, CustomerTouch.kind == kind)
        )
        theirs = db.scalar(
            select(CustomerTouch).where(CustomerTouch.customer_id == merged_id, CustomerTouch.kind == kind)
        )
        if theirs is None:
            continue
        better = mine is None or (theirs.at < mine.at if kind is TouchKind.first else theirs.at > mine.at)
        if better:
            if mine is not None:
                db.delete(mine)
                db.flush()
            theirs.customer_id = survivor_id
            moved += 1
        else:
            db.delete(theirs)
        db.flush()
    # One add per (code, customer, account): drop the merged profile's duplicates before moving the rest.
    keep = select(ChannelAdd.code_id, ChannelAdd.account_id).where(ChannelAdd.customer_id == survivor_id)
    dupes = [
        a.id
        for a in db.scalars(select(ChannelAdd).where(ChannelAdd.customer_id == merged_id))
        if (a.code_id, a.account_id) in set(db.execute(keep).all())
    ]
    if dupes:
        db.execute(delete(ChannelAdd).where(ChannelAdd.id.in_(dupes)))
    moved += db.execute(
        update(ChannelAdd)
        .where(ChannelAdd.org_id == org_id, ChannelAdd.customer_id == merged_id)
        .values(customer_id=survivor_id)
    ).rowcount  # type: ignore[attr-defined]
    return moved


register_merge_hook("channel_touches", _merge_touches)


def _range(date_from: date, date_to: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[date_from, date_to] as calendar days of ``zone``: the UTC instants they start and end at."""
    if date_to < date_from:
        raise Invalid("date_to must not be before date_from", field="date_to")
    if (date_to - date_from).days >= MAX_REPORT_DAYS:
        raise Invalid(f"a report covers at most {MAX_REPORT_DAYS} days", field="date_from")
    # Shifted to UTC a day at either end can leave the calendar (year 1, year 9999): refuse those dates.
    if date_from.year < 1970 or date_to.year > 9000:
        raise Invalid(
            "dates must lie between 1970 and 9000", field="date_from" if date_from.year < 1970 else "date_to"
        )
    start = datetime.combine(date_from, datetime.min.time(), zone)
    end = datetime.combine(date_to + timedelta(days=1), datetime.min.time(), zone)
    return start, end


def adds_per_day(
    db: Session, org_id: int, date_from: date, date_to: date, code_id: int | None = None
) -> list[DailyAddsOut]:
    """Adds per code per day of the organization's time zone over [date_from, date_to]."""
    zone = org_zone(db, org_id)
    start, end = _range(date_from, date_to, zone)
    stmt = select(ChannelAdd.code_id, ChannelAdd.added_at).where(
        ChannelAdd.org_id == org_id, ChannelAdd.added_at >= start, ChannelAdd.added_at < end
    )
    if code_id is not None:
        stmt = stmt.where(ChannelAdd.code_id == code_id)
    # Local-day bucketing in Python keeps one query for SQLite and PostgreSQL alike.
    counts = Counter((cid, local(at, zone).date()) for cid, at in db.execute(stmt))
    return [DailyAddsOut(code_id=c, day=d, adds=n) for (c, d), n in sorted(counts.items())]


def new_friends_per_day(
    db: Session, org_id: int, date_from: date, date_to: date, account_ids: set[int] | None = None
) -> Counter[tuple[str, date]]:
    """New friends (follows started, whether or not through one of siyu's codes) per code state and day of
    the organization's time zone over [date_from, date_to]; "" is the state of adds without one. Read from
    the event log, the same truth as the dashboard's counts, on its (org, type, time) index; ``account_ids``
    limits it to those accounts."""
    zone = org_zone(db, org_id)
    start, end = _range(date_from, date_to, zone)
    stmt = select(Event.occurred_at, Event.properties).where(
        Event.org_id == org_id,
        Event.occurred_at >= start,
        Event.occurred_at < end,
        of_timed_type(EventType.follow_started.value),
    )
    if account_ids is not None:
        stmt = stmt.where(Event.account_id.in_(account_ids))
    return Counter(
        (str((properties or {}).get("state") or ""), local(at, zone).date())
        for at, properties in db.execute(stmt)
    )


def code_report(
    db: Session, org_id: int, date_from: date, date_to: date, costs: Mapping[str, int]
) -> list[CodeReportOut]:
    """Per code over the range: adds, cost (``costs`` per code state: the code ledger, which analytics
    keeps, see ``siyu.analytics.roi.code_costs``), cost per add, and how many added customers placed a
    first order after the add. The days are the organization's time zone's."""
    start, end = _range(date_from, date_to, org_zone(db, org_id))
    codes = list(db.scalars(select(ChannelCode).where(ChannelCode.org_id == org_id).order_by(ChannelCode.id)))
    adds = dict(
        db.execute(
            select(ChannelAdd.code_id, func.count(func.distinct(ChannelAdd.customer_id)))
            .where(ChannelAdd.org_id == org_id, ChannelAdd.added_at >= start, ChannelAdd.added_at < end)
            .group_by(ChannelAdd.code_id)
        ).all()
    )
    first_add = (
        select(ChannelAdd.code_id, ChannelAdd.customer_id, func.min(ChannelAdd.added_at).label("at"))
        .where(ChannelAdd.org_id == org_id, ChannelAdd.added_at >= start, ChannelAdd.added_at < end)
        .group_by(ChannelAdd.code_id, ChannelAdd.customer_id)
        .subquery()
    )
    converted: dict[int, int] = dict(
        db.execute(
            select(first_add.c.code_id, func.count(func.distinct(first_add.c.customer_id)))
            .join(
                Order,
                (Order.customer_id == first_add.c.customer_id)
                & (Order.org_id == org_id)
                & (Order.paid_at >= first_add.c.at),
            )
            .group_by(first_add.c.code_id)
        ).all()
    )
    out = []
    for code in codes:
        n = int(adds.get(code.id, 0))
        cost = costs.get(code.state, 0)
        orders = int(converted.get(code.id, 0))
        out.append(
            CodeReportOut(
                code_id=code.id,
                name=code.name,
                state=code.state,
                channel=code.channel,
                adds=n,
                cost_fen=cost,
                cost_per_add_fen=round(cost / n) if n else None,
                first_orders=orders,
                conversion=orders / n if n else None,
            )
        )
    return out
