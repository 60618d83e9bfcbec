"""Lifecycle stages, moved by rules on events.

The rules derive a stage from what the event log says about a customer:

    lost       they had contacts and every follow ended (whoever ended it: nobody can reach them)
    repeat     two or more paid orders not fully refunded
    converted  one paid order not fully refunded
    engaged    the customer answered or took part (``vocabulary.ENGAGING``)
    contacted  the brand reached out: a welcome, a message, a reply to their comment (``vocabulary.OUTBOUND``)
    new        none of the above

checked top to bottom. The in-transaction subscriber ``apply_rules`` re-derives the stage of every
customer a batch of events touches, from the tables those events describe (follow relations, orders,
the log), and writes a ``stage_changed`` event with the reason when it moves. An admin, or an operator
who can see the customer, may set a stage by hand with a reason (``set_stage``); a stage set by hand
holds until the rules derive a different stage than they did before.

``replay`` folds the event log alone into the same stages: re-running the rules over the log from
empty gives the stages the tables hold (the property test in tests/customers/test_stages.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from siyu.customers.models import Customer, FollowRelation, FollowStatus, Stage
from siyu.events.bus import DomainEvent, emit, emit_many
from siyu.events.models import Event
from siyu.events.vocabulary import ENGAGING, OUTBOUND, EventType
from siyu.kit.bulk import IN_LIST_SIZE, chunked, one_of
from siyu.kit.clock import utcnow
from siyu.kit.errors import Invalid

#: Event types that can change what the rules derive.
STAGE_INPUTS: frozenset[str] = (
    OUTBOUND
    | ENGAGING
    | {
        EventType.follow_started,
        EventType.follow_ended,
        EventType.order_paid,
        EventType.order_refunded,
        EventType.customer_merged,
    }
)


@dataclass
class Facts:
    """What the rules look at for one customer."""

    follows: int = 0
    active_follows: int = 0
    paid_orders: int = 0
    outbound: bool = False
    engaged: bool = False


def derive(facts: Facts) -> Stage:
    """The stage the rules give for these facts."""
    if facts.follows and not facts.active_follows:
        return Stage.lost
    if facts.paid_orders >= 2:
        return Stage.repeat
    if facts.paid_orders == 1:
        return Stage.converted
    if facts.engaged:
        return Stage.engaged
    if facts.outbound:
        return Stage.contacted
    return Stage.new


def _facts(db: Session, ids: Sequence[int]) -> dict[int, Facts]:
    facts = {cid: Facts() for cid in ids}
    for part in chunked(list(ids), IN_LIST_SIZE):
        active = func.sum(case((FollowRelation.status == FollowStatus.active, 1), else_=0))
        for cid, total, live in db.execute(
            select(FollowRelation.customer_id, func.count(), active)
            .where(one_of(db, FollowRelation.customer_id, part))
            .group_by(FollowRelation.customer_id)
        ):
            facts[cid].follows, facts[cid].active_follows = int(total), int(live or 0)
        # Orders are read from their events (order_paid, order_refunded), like ``replay`` reads them.
        orders: dict[int, dict[Any, tuple[int, int]]] = defaultdict(dict)
        for cid, kind, props in db.execute(
            select(Event.customer_id, Event.type, Event.properties)
            .where(one_of(db, Event.customer_id, part), Event.type.in_(_ORDER_TYPES))
            .order_by(Event.id)
        ):
            _fold_order(orders[cid], kind, props)
        for cid, books in orders.items():
            facts[cid].paid_orders = _paid(books)
        for cid, kind in db.execute(
            select(Event.customer_id, Event.type)
            .where(one_of(db, Event.customer_id, part), Event.type.in_(sorted(OUTBOUND | ENGAGING)))
            .distinct()
        ):
            if kind in OUTBOUND:
                facts[cid].outbound = True
            else:
                facts[cid].engaged = True
    return facts


_ORDER_TYPES = (EventType.order_paid.value, EventType.order_refunded.value)


def _fold_order(books: dict[Any, tuple[int, int]], kind: str, props: Mapping[str, Any]) -> None:
    """Keep (amount, refunded so far) per order id from an order_paid or order_refunded event."""
    order_id, amount = props.get("order_id"), int(props.get("amount_fen") or 0)
    if kind == EventType.order_paid:
        books[order_id] = (amount, books.get(order_id, (0, 0))[1])
    else:
        books[order_id] = (amount or books.get(order_id, (0, 0))[0], int(props.get("refunded_fen") or 0))


def _paid(books: Mapping[Any, tuple[int, int]]) -> int:
    return sum(1 for amount, refunded in books.values() if refunded < amount)


def _reason(ev: DomainEvent) -> str:
    return f"rule: {ev.type}"


def apply_rules(db: Session, events: Sequence[DomainEvent]) -> None:
    """In-transaction subscriber: re-derive the stage of each customer these events touch."""
    last: dict[int, DomainEvent] = {}
    # A merge resets: the survivor's stage is derived afresh from the joined history, hand-set or not.
    reset = {ev.customer_id for ev in events if ev.type == EventType.customer_merged}
    for ev in events:
        if ev.type in STAGE_INPUTS:
            last[ev.customer_id] = ev
    if not last:
        return
    facts = _facts(db, sorted(last))
    changes: list[DomainEvent] = []
    moving: list[int] = []
    # Columns first, objects only for the customers whose stage moves: a sync's batch touches 100,000
    # customers and moves almost none.
    for part in chunked(sorted(last), IN_LIST_SIZE):
        for cid, stage, by_rules in db.execute(
            select(Customer.id, Customer.stage, Customer.stage_by_rules).where(
                one_of(db, Customer.id, part), Customer.merged_into_id.is_(None)
            )
        ):
            derived = derive(facts[cid])
            if derived != (by_rules or stage) or (cid in reset and (derived != stage or by_rules != stage)):
                moving.append(cid)
    for part in chunked(moving, IN_LIST_SIZE):
        for customer in db.scalars(select(Customer).where(one_of(db, Customer.id, part))):
            derived = derive(facts[customer.id])
            before = customer.stage_by_rules or customer.stage
            if derived == before and customer.id not in reset:
                continue
            customer.stage_by_rules = derived
            if customer.stage == derived:
                continue
            trigger = last[customer.id]
            changes.append(
                DomainEvent(
                    org_id=customer.org_id,
                    customer_id=customer.id,
                    type=EventType.stage_changed,
                    occurred_at=trigger.occurred_at,
                    properties={
                        "from": customer.stage.value,
                        "to": derived.value,
                        "reason": _reason(trigger),
                        "manual": False,
                    },
                    backfill=trigger.backfill,
                )
            )
            customer.stage = derived
            customer.updated_at = utcnow()
    emit_many(db, changes)


def set_stage(
    db: Session, customer: Customer, stage: Stage | str, reason: str, *, actor_id: int | None
) -> Customer:
    """Set a live customer's stage by hand (the caller checked who may); the reason is required."""
    try:
        stage = Stage(stage)
    except ValueError:
        raise Invalid(f"unknown stage {stage!r}", field="stage") from None
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why the stage changes", field="reason")
    if customer.stage == stage:
        return customer
    if customer.stage_by_rules is None:
        customer.stage_by_rules = customer.stage
    previous, customer.stage, customer.updated_at = customer.stage, stage, utcnow()
    emit(
        db,
        DomainEvent(
            org_id=customer.org_id,
            customer_id=customer.id,
            type=EventType.stage_changed,
            occurred_at=utcnow(),
            properties={
                "from": previous.value,
                "to": stage.value,
                "reason": reason[:200],
                "manual": True,
                "actor_id": actor_id,
            },
        ),
    )
    return customer


@dataclass
class _Fold:
    active: set[Any] = field(default_factory=set)
    seen: set[Any] = field(default_factory=set)
    orders: dict[Any, tuple[int, int]] = field(default_factory=dict)
    outbound: bool = False
    engaged: bool = False
    by_rules: Stage = Stage.new
    stage: Stage = Stage.new

    def facts(self) -> Facts:
        return Facts(len(self.seen), len(self.active), _paid(self.orders), self.outbound, self.engaged)


def replay(rows: Iterable[tuple[int, str, Mapping[str, Any]]]) -> dict[int, Stage]:
    """Fold (customer_id, type, properties) rows, in log order, into each customer's stage."""
    folds: dict[int, _Fold] = defaultdict(_Fold)
    for customer_id, kind, props in rows:
        fold = folds[customer_id]
        if kind == EventType.stage_changed:
            if props.get("manual"):
                fold.stage = Stage(props["to"])
            continue
        if kind not in STAGE_INPUTS:
            continue
        if kind == EventType.customer_merged:  # the joined history: derived afresh, hand-set or not
            fold.by_rules = fold.stage = derive(fold.facts())
            continue
        if kind == EventType.follow_started:
            fold.active.add(props.get("account_id"))
            fold.seen.add(props.get("account_id"))
        elif kind == EventType.follow_ended:
            fold.active.discard(props.get("account_id"))
            fold.seen.add(props.get("account_id"))
        elif kind in _ORDER_TYPES:
            _fold_order(fold.orders, kind, props)
        elif kind in OUTBOUND:
            fold.outbound = True
        elif kind in ENGAGING:
            fold.engaged = True
        derived = derive(fold.facts())
        if derived != fold.by_rules:
            fold.by_rules = fold.stage = derived
    return {cid: fold.stage for cid, fold in folds.items()}
