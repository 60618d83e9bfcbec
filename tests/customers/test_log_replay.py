"""The event log is the truth: random adds, deletes, tag edits, orders, refunds, merges and hand-set stages
leave tables (stages, tags, follow state) equal to a replay of the log."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.accounts.service import create_account
from siyu.commerce.schemas import OrderIn
from siyu.commerce.service import create_order
from siyu.customers import customer_tagging, follows, merge, profiles, stages, tagging
from siyu.customers.models import Customer, CustomerTag, FollowRelation, FollowStatus, Stage
from siyu.customers.schemas import TagGroupIn
from siyu.events.models import Event
from siyu.tenancy import service as tenancy
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
_orgs = itertools.count(1)


def replay_log(db: Session, org_id: int) -> dict[str, dict[int, Any]]:
    """Fold the organization's log into stages, tag sets and active follow sets per customer."""
    rows = db.execute(
        select(Event.customer_id, Event.type, Event.properties)
        .where(Event.org_id == org_id)
        .order_by(Event.id)
    ).all()
    tags: dict[int, set[int]] = defaultdict(set)
    follows: dict[int, set[int]] = defaultdict(set)
    for customer_id, kind, props in rows:
        if kind == "tag_added":
            tags[customer_id].add(props["tag_id"])
        elif kind == "tag_removed":
            tags[customer_id].discard(props["tag_id"])
        elif kind == "follow_started":
            follows[customer_id].add(props["account_id"])
        elif kind == "follow_ended":
            follows[customer_id].discard(props["account_id"])
    return {"stage": stages.replay(rows), "tags": tags, "follows": follows}


class LoopMachine(RuleBasedStateMachine):
    """Drives the customer hub like carriers, operators and imports would, one org per example."""

    db: Session

    def __init__(self) -> None:
        super().__init__()
        self.customers: list[int] = []
        self.clock = T0
        self.orders: list[tuple[int, str, int]] = []  # (customer at the time, external id, amount)
        self.n = 0

    @initialize()
    def organization(self) -> None:
        slug = f"replay-{next(_orgs)}"
        self.org_id = tenancy.create_organization(self.db, slug, slug).id
        # Orders come in through the API as the organization's admin would post them.
        self.admin = Principal(org_id=self.org_id, user_id=0, role=Role.admin)
        self.accounts = [
            create_account(
                self.db,
                self.org_id,
                AccountIn(kind=AccountKind.wecom_member, external_id=f"m{i}", name=f"m{i}"),
            ).id
            for i in range(2)
        ]
        _, tags = tagging.create_tag_group(self.db, self.org_id, TagGroupIn(name="意向", tags=["高", "低"]))
        self.tags = [t.id for t in tags]
        self.db.commit()

    def _tick(self) -> datetime:
        self.clock += timedelta(minutes=7)
        return self.clock

    def _live(self, index: int) -> int:
        cid = self.customers[index % len(self.customers)]
        customer = self.db.get(Customer, cid)
        assert customer is not None
        return customer.merged_into_id or cid

    @rule()
    def add_customer(self) -> None:
        self.n += 1
        self.customers.append(profiles.create_customer(self.db, self.org_id, {"name": f"客{self.n}"}).id)
        self.db.commit()

    @precondition(lambda self: self.customers)
    @rule(who=st.integers(0, 50), account=st.integers(0, 1))
    def follow(self, who: int, account: int) -> None:
        follows.follow(self.db, self.org_id, self._live(who), self.accounts[account], since=self._tick())
        self.db.commit()

    @precondition(lambda self: self.customers)
    @rule(who=st.integers(0, 50), account=st.integers(0, 1), by=st.sampled_from(["customer", "staff"]))
    def delete(self, who: int, account: int, by: str) -> None:
        cid = self._live(who)
        follows.end_follow(self.db, self.org_id, cid, self.accounts[account], by=by, at=self._tick())  # type: ignore[arg-type]
        self.db.commit()

    @precondition(lambda self: self.customers)
    @rule(who=st.integers(0, 50), tag=st.integers(0, 1), add=st.booleans())
    def edit_tags(self, who: int, tag: int, add: bool) -> None:
        change = {"add": [self.tags[tag]]} if add else {"remove": [self.tags[tag]]}
        customer_tagging.change_tags(self.db, self.org_id, self._live(who), origin="console", **change)  # type: ignore[arg-type]
        self.db.commit()

    @precondition(lambda self: self.customers)
    @rule(who=st.integers(0, 50), amount=st.integers(1, 50_000))
    def pay(self, who: int, amount: int) -> None:
        external_id = f"o{len(self.orders) + 1}"
        cid = self._live(who)
        create_order(
            self.db,
            self.admin,
            OrderIn(
                platform="taobao",
                external_id=external_id,
                customer_id=cid,
                amount_fen=amount,
                paid_at=self._tick(),
            ),
        )
        self.orders.append((cid, external_id, amount))
        self.db.commit()

    @precondition(lambda self: self.orders)
    @rule(which=st.integers(0, 50), share=st.sampled_from([0.5, 1.0]))
    def refund(self, which: int, share: float) -> None:
        cid, external_id, amount = self.orders[which % len(self.orders)]
        body = OrderIn(
            platform="taobao",
            external_id=external_id,
            customer_id=cid,
            amount_fen=amount,
            refunded_fen=int(amount * share),
            paid_at=T0,
        )
        create_order(self.db, self.admin, body)
        self.db.commit()

    @precondition(lambda self: len(self.customers) >= 2)
    @rule(a=st.integers(0, 50), b=st.integers(0, 50))
    def merge(self, a: int, b: int) -> None:
        first, second = self._live(a), self._live(b)
        if first == second:
            return
        survivor, merged = sorted((first, second))
        merge.merge_customers(self.db, self.org_id, survivor, merged, "same person")
        self.db.commit()

    @precondition(lambda self: self.customers)
    @rule(who=st.integers(0, 50), stage=st.sampled_from(list(Stage)))
    def set_stage_by_hand(self, who: int, stage: Stage) -> None:
        customer = self.db.get(Customer, self._live(who))
        assert customer is not None
        stages.set_stage(self.db, customer, stage, "电话回访", actor_id=None)
        self.db.commit()

    @invariant()
    def tables_equal_the_replayed_log(self) -> None:
        if not hasattr(self, "org_id"):
            return
        self.db.expire_all()
        replayed = replay_log(self.db, self.org_id)
        live = self.db.scalars(
            select(Customer).where(Customer.org_id == self.org_id, Customer.merged_into_id.is_(None))
        ).all()
        for customer in live:
            assert customer.stage == replayed["stage"].get(customer.id, Stage.new), customer.id
            tags = set(
                self.db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == customer.id))
            )
            assert tags == replayed["tags"].get(customer.id, set()), customer.id
            active = set(
                self.db.scalars(
                    select(FollowRelation.account_id).where(
                        FollowRelation.customer_id == customer.id,
                        FollowRelation.status == FollowStatus.active,
                    )
                )
            )
            assert active == replayed["follows"].get(customer.id, set()), customer.id


@pytest.mark.slow
def test_tables_equal_a_replay_of_the_log(db: Session) -> None:
    LoopMachine.db = db
    LoopMachine.TestCase.settings = settings(
        max_examples=20,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    LoopMachine.TestCase().runTest()
