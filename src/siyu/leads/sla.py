"""SLA figures of the lead inbox: how fast leads are answered, and how many become contacts and buyers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from siyu.commerce.models import Order
from siyu.customers.models import FollowRelation
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.errors import Invalid
from siyu.leads.models import Lead, LeadStatus


@dataclass(frozen=True, slots=True)
class SlaFigures:
    """Leads created in [start, end): reply speed and the lead -> add -> first order funnel."""

    leads: int
    replied: int
    median_seconds_to_reply: float | None
    due: int  # leads replied or past their deadline: the base of the within-deadline share
    replied_within_deadline: int
    added: int
    ordered: int

    @property
    def within_deadline_share(self) -> float | None:
        """Share of due leads answered before their deadline."""
        return self.replied_within_deadline / self.due if self.due else None

    @property
    def add_rate(self) -> float | None:
        """Share of leads whose commenter added an account afterwards."""
        return self.added / self.leads if self.leads else None

    @property
    def order_rate(self) -> float | None:
        """Share of leads whose commenter placed an order after adding."""
        return self.ordered / self.leads if self.leads else None


def sla_figures(
    db: Session, org_id: int, start: datetime, end: datetime, *, now: datetime | None = None
) -> SlaFigures:
    """Compute the figures for leads created in [start, end) (dismissed leads are left out)."""
    start, end = ensure_utc(start), ensure_utc(end)
    if end <= start:
        raise Invalid("the period's end must be after its start", field="end")
    now = ensure_utc(now) if now is not None else utcnow()
    leads = list(
        db.execute(
            select(
                Lead.id,
                Lead.customer_id,
                Lead.created_at,
                Lead.reply_due_at,
                Lead.replied_at,
                Lead.code_state,
                Lead.converted_at,
            ).where(
                Lead.org_id == org_id,
                Lead.created_at >= start,
                Lead.created_at < end,
                Lead.status != LeadStatus.dismissed,
            )
        )
    )
    customer_ids = {row.customer_id for row in leads if row.customer_id is not None}
    states = {row.code_state for row in leads if row.code_state}
    # Earliest add per customer after ... is decided per lead below; fetch the follows of these customers
    # and those carrying one of the leads' code states, started in the period or later: only an add after
    # its lead counts, and a code's follows of all time are a good part of a big organization's.
    follows: dict[int, list[datetime]] = {}
    by_state: dict[str, list[tuple[int, datetime]]] = {}
    if customer_ids or states:
        cond: ColumnElement[bool] | None = (
            FollowRelation.customer_id.in_(customer_ids) if customer_ids else None
        )
        if states:
            state_cond = FollowRelation.state.in_(states)
            cond = state_cond if cond is None else (cond | state_cond)
        assert cond is not None  # customer ids or states, so at least one condition
        for cid, since, state in db.execute(
            select(FollowRelation.customer_id, FollowRelation.since, FollowRelation.state).where(
                FollowRelation.org_id == org_id, FollowRelation.since >= start, cond
            )
        ):
            follows.setdefault(cid, []).append(ensure_utc(since))
            if state:
                by_state.setdefault(state, []).append((cid, ensure_utc(since)))
    first_orders: dict[int, list[datetime]] = {}
    linked = customer_ids | {cid for pairs in by_state.values() for cid, _ in pairs}
    if linked:
        for cid, paid in db.execute(
            select(Order.customer_id, Order.paid_at).where(
                Order.org_id == org_id, Order.customer_id.in_(linked)
            )
        ):
            first_orders.setdefault(cid, []).append(ensure_utc(paid))

    durations: list[float] = []
    due = within = added = ordered = 0
    for row in leads:
        created, deadline = ensure_utc(row.created_at), ensure_utc(row.reply_due_at)
        replied = ensure_utc(row.replied_at) if row.replied_at is not None else None
        if replied is not None:
            durations.append((replied - created).total_seconds())
        if replied is not None or deadline <= now:
            due += 1
            within += replied is not None and replied <= deadline
        # The add: a follow through this lead's code, any follow of the commenter after the lead, or the
        # conversion recorded when the add through the code was linked to this lead.
        adds = [(cid, since) for cid, since in by_state.get(row.code_state or "", []) if since >= created]
        if row.customer_id is not None:
            adds += [
                (row.customer_id, since) for since in follows.get(row.customer_id, []) if since >= created
            ]
            if row.converted_at is not None:
                adds.append((row.customer_id, ensure_utc(row.converted_at)))
        if not adds:
            continue
        added += 1
        first_add = min(since for _, since in adds)
        buyers = {cid for cid, _ in adds}
        if any(paid >= first_add for cid in buyers for paid in first_orders.get(cid, [])):
            ordered += 1
    return SlaFigures(
        leads=len(leads),
        replied=len(durations),
        median_seconds_to_reply=statistics.median(durations) if durations else None,
        due=due,
        replied_within_deadline=within,
        added=added,
        ordered=ordered,
    )


def open_lead_count(db: Session, org_id: int) -> int:
    """How many leads wait for a reply."""
    return int(
        db.scalar(
            select(func.count())
            .select_from(Lead)
            .where(Lead.org_id == org_id, Lead.status == LeadStatus.open)
        )
        or 0
    )
