"""Loading a sandbox world into the database: right counts, working logins, all-or-nothing."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from siyu.customers import stages
from siyu.demo import generate_world
from siyu.demo import vocab as V
from siyu.demo.loader import load_world
from siyu.demo.records import World
from siyu.events.vocabulary import EventType
from siyu.kit.db import make_sessionmaker
from siyu.kit.errors import Conflict, Invalid
from siyu.models import (
    Account,
    Customer,
    CustomerIdentity,
    CustomerTag,
    Event,
    FollowRelation,
    Order,
    OrderItem,
    Tag,
)
from siyu.tenancy import service as identity
from siyu.tenancy.models import Organization, Role, User


@pytest.fixture(scope="module")
def small() -> World:
    return generate_world(customers=500, days=60, seed=9)


def _count(db: Session, model: type, org_id: int) -> int:
    return int(db.scalar(select(func.count()).select_from(model).where(model.org_id == org_id)) or 0)


def test_load_writes_every_table_and_logins_work(engine: Engine, small: World) -> None:
    ticks: list[tuple[str, int, int]] = []
    summary = load_world(engine, small, org_slug="sandbox-a", progress=lambda *a: ticks.append(a))
    db = make_sessionmaker(engine)()
    org = summary.org_id
    assert _count(db, Customer, org) == len(small.customers) == summary.counts["customers"]
    assert _count(db, CustomerIdentity, org) == len(small.identities.value)
    assert _count(db, FollowRelation, org) == small.follows.customer.shape[0]
    assert _count(db, CustomerTag, org) == small.customer_tags.customer.shape[0]
    assert _count(db, Event, org) == len(small.events) == summary.counts["events"]
    assert _count(db, Order, org) == len(small.orders)
    items = db.scalar(select(func.count()).select_from(OrderItem).join(Order).where(Order.org_id == org))
    assert items == small.order_items.order.shape[0]
    assert _count(db, Account, org) == len(small.accounts)
    assert _count(db, Tag, org) == len(small.tags)
    assert {t[0] for t in ticks} >= {"customers", "events", "orders"}

    admin = identity.authenticate(db, summary.admin.email, summary.admin.password)
    operator = identity.authenticate(db, summary.operator.email, summary.operator.password)
    assert admin is not None and admin.role == Role.admin and admin.org_id == org
    assert operator is not None and operator.role == Role.operator
    assert identity.authenticate(db, summary.admin.email, "wrong-password") is None
    users = db.scalar(select(func.count()).select_from(User).where(User.org_id == org))
    assert users == len(small.operators)

    # friend_count is the number of active follows, and every operator's accounts are theirs.
    for account in db.scalars(select(Account).where(Account.org_id == org)):
        active = db.scalar(
            select(func.count())
            .select_from(FollowRelation)
            .where(FollowRelation.account_id == account.id, FollowRelation.status == "active")
        )
        assert account.friend_count == active <= account.soft_cap
        assert account.operator_id is not None and account.operator_id != admin.id

    # Values survive the fast path exactly as the ORM reads them back.
    first = db.scalar(select(Customer).where(Customer.org_id == org).order_by(Customer.id).limit(1))
    assert first is not None
    c = small.customers
    assert first.name == c.name[0] and first.remark == c.remark[0]
    assert first.created_at.tzinfo is not None
    assert int(first.created_at.timestamp()) == int(c.created_at[0])
    assert first.stage.value == V.STAGES[int(c.stage[0])]
    amounts = db.scalars(select(Order.amount_fen).where(Order.org_id == org).order_by(Order.id)).all()
    assert amounts == small.orders.amount_fen.tolist()
    stages = dict(
        db.execute(
            select(Customer.stage, func.count()).where(Customer.org_id == org).group_by(Customer.stage)
        ).all()
    )
    expected = np.bincount(c.stage, minlength=len(V.STAGES))
    assert {s.value: n for s, n in stages.items()} == {
        V.STAGES[i]: int(k) for i, k in enumerate(expected) if k
    }
    placed = db.scalars(select(Event).where(Event.org_id == org, Event.type == "order_paid").limit(1)).first()
    assert placed is not None and db.get(Order, placed.properties["order_id"]) is not None
    db.close()


def test_loaded_stages_are_what_the_rules_derive_from_the_loaded_log(engine: Engine, small: World) -> None:
    summary = load_world(engine, small, org_slug="sandbox-r")
    db = make_sessionmaker(engine)()
    org = summary.org_id
    types = set(db.scalars(select(Event.type).where(Event.org_id == org).distinct()))
    assert types <= set(EventType) and len(types) == len(V.EVENT_TYPES)
    log = db.execute(
        select(Event.customer_id, Event.type, Event.properties).where(Event.org_id == org).order_by(Event.id)
    )
    replayed = stages.replay(log)
    loaded = dict(db.execute(select(Customer.id, Customer.stage).where(Customer.org_id == org)).all())
    assert replayed == loaded
    assert len(set(loaded.values())) >= 5  # lost, repeat, converted, engaged, contacted at least
    ended = db.scalars(select(Event).where(Event.org_id == org, Event.type == "follow_ended")).first()
    assert ended is not None and ended.properties["by"] in ("customer", "staff")
    assert ended.properties["account_id"] == ended.account_id
    db.close()


def test_existing_org_is_refused_unless_replaced(engine: Engine, small: World) -> None:
    load_world(engine, small, org_slug="sandbox-b")
    with pytest.raises(Conflict, match="already exists") as caught:
        load_world(engine, small, org_slug="sandbox-b")
    assert caught.value.field == "org_slug"
    again = load_world(engine, small, org_slug="sandbox-b", replace=True)
    db = make_sessionmaker(engine)()
    assert (
        db.scalar(select(func.count()).select_from(Organization).where(Organization.slug == "sandbox-b")) == 1
    )
    assert _count(db, Customer, again.org_id) == len(small.customers)
    assert db.scalar(select(func.count()).select_from(Customer)) == len(small.customers)
    assert db.scalar(select(func.count()).select_from(Event)) == len(small.events)
    db.close()


def test_second_org_beside_the_first_and_bad_input(engine: Engine, small: World) -> None:
    a = load_world(engine, small, org_slug="brand-one")
    b = load_world(make_sessionmaker(engine), small, org_slug="brand-two")
    assert a.org_id != b.org_id
    db = make_sessionmaker(engine)()
    assert _count(db, Customer, b.org_id) == len(small.customers)
    ids_a = db.scalars(select(Customer.id).where(Customer.org_id == a.org_id)).all()
    ids_b = db.scalars(select(Customer.id).where(Customer.org_id == b.org_id)).all()
    assert not set(ids_a) & set(ids_b)
    db.close()
    with pytest.raises(Conflict, match="already in use"):
        load_world(engine, small, org_slug="brand-three", admin_email=a.admin.email)
    with pytest.raises(Invalid) as caught:
        load_world(engine, small, org_slug="Bad Slug")
    assert caught.value.field == "org_slug"
    with pytest.raises(Invalid) as caught:
        load_world(engine, small, org_slug="brand-four", admin_password="short")
    assert caught.value.field == "password"
    db = make_sessionmaker(engine)()
    assert db.scalar(select(func.count()).select_from(Organization)) == 2  # failures wrote nothing
    db.close()


def test_big_loads_rebuild_sqlite_indexes_identically(
    engine: Engine, small: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("index deferral is a SQLite fast path")
    from siyu.demo import loader

    def indexes() -> set[tuple[str, str]]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
            return {(r[0], r[1]) for r in rows}

    before = indexes()
    monkeypatch.setattr(loader, "DEFER_INDEXES_AT", 100)
    deferred: list[str] = []
    original = loader._Writer._defer_indexes

    def spy(self: loader._Writer, table: str, total: int) -> list[object]:
        found = original(self, table, total)
        deferred.extend(str(i.name) for i in found)
        return found  # type: ignore[return-value]

    monkeypatch.setattr(loader._Writer, "_defer_indexes", spy)
    summary = load_world(engine, small, org_slug="deferred")
    assert "ix_events_customer_occurred_at" in deferred and "ix_customers_org_name" in deferred
    assert indexes() == before
    db = make_sessionmaker(engine)()
    assert _count(db, Event, summary.org_id) == len(small.events)
    # The rebuilt indexes serve queries: the unique idempotency key still refuses a duplicate.
    first = db.scalars(select(Event).where(Event.org_id == summary.org_id).limit(1)).one()
    db.add(
        Event(
            org_id=first.org_id,
            customer_id=first.customer_id,
            type="x",
            occurred_at=first.occurred_at,
            idempotency_key=first.idempotency_key,
        )
    )
    with pytest.raises(Exception, match="UNIQUE"):
        db.flush()
    db.close()
