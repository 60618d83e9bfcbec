"""The event bus and the outbox: idempotent appends, subscribers in the transaction, at-least-once work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from siyu.customers import profiles
from siyu.events import bus, outbox
from siyu.events.models import Event, OutboxItem
from siyu.kit.db import make_sessionmaker

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
calls: list[tuple[str, int]] = []


@pytest.fixture
def probe() -> Iterator[None]:
    """An in-transaction subscriber and an outbox subscriber on the type probe_seen, removed afterwards."""

    def in_tx(db: Session, events: list[bus.DomainEvent]) -> None:
        calls.extend(("tx", ev.customer_id) for ev in events)

    def work(db: Session, item: OutboxItem) -> None:
        if item.payload["properties"].get("fail_times", 0) > item.attempts:
            raise RuntimeError("the platform said no")
        if item.payload["properties"].get("busy") and item.attempts == 0 and not item.last_error:
            raise outbox.RetryLater(60, "rate limited")
        calls.append(("outbox", item.customer_id or 0))

    bus.subscribe("test.in_tx", {"probe_seen"}, in_tx)
    bus.subscribe("test.outbox", {"probe_seen"}, outbox=True)
    outbox.register_handler("test.outbox", work)
    calls.clear()
    yield
    bus._subscriptions.pop("test.in_tx")
    bus._subscriptions.pop("test.outbox")
    outbox._handlers.pop("test.outbox")


def _probe(org_id: int, customer_id: int, key: str = "", **props: object) -> bus.DomainEvent:
    return bus.DomainEvent(org_id, customer_id, "probe_seen", T0, props, key=key)


def test_emit_is_idempotent_by_key_and_tells_subscribers_once(db: Session, tenant, probe) -> None:  # type: ignore[no-untyped-def]
    c = profiles.create_customer(db, tenant.org_id, {"name": "甲"})
    assert bus.emit(db, _probe(tenant.org_id, c.id, key="k1"))
    assert not bus.emit(db, _probe(tenant.org_id, c.id, key="k1"))
    new = bus.emit_many(db, [_probe(tenant.org_id, c.id, key="k1"), _probe(tenant.org_id, c.id, key="k2")])
    assert [ev.key for ev in new] == ["k2"]
    db.commit()
    assert calls == [("tx", c.id), ("tx", c.id)]
    assert db.scalar(select(func.count()).select_from(OutboxItem)) == 2
    stored = db.scalars(select(Event.idempotency_key).where(Event.type == "probe_seen")).all()
    assert sorted(stored) == ["k1", "k2"]


def test_a_rolled_back_change_leaves_no_event_and_no_outbox_work(engine: Engine, tenant, probe) -> None:  # type: ignore[no-untyped-def]
    factory = make_sessionmaker(engine)
    with factory() as db:
        c = profiles.create_customer(db, tenant.org_id, {"name": "乙"})
        db.commit()
        bus.emit(db, _probe(tenant.org_id, c.id))
        db.rollback()
    with factory() as db:
        assert db.scalar(select(func.count()).select_from(Event).where(Event.type == "probe_seen")) == 0
        assert db.scalar(select(func.count()).select_from(OutboxItem)) == 0


def test_outbox_retries_with_back_off_and_gives_up_visibly(engine: Engine, tenant, probe) -> None:  # type: ignore[no-untyped-def]
    factory = make_sessionmaker(engine)
    with factory() as db:
        c = profiles.create_customer(db, tenant.org_id, {"name": "丙"})
        bus.emit(db, _probe(tenant.org_id, c.id, key="once-failing", fail_times=1))
        bus.emit(db, _probe(tenant.org_id, c.id, key="always-failing", fail_times=99))
        bus.emit(db, _probe(tenant.org_id, c.id, key="busy", busy=True))
        db.commit()
    assert outbox.drain(factory) == {"retry": 3}
    with factory() as db:
        rows = {r.dedupe_key.split(":", 1)[1]: r for r in db.scalars(select(OutboxItem))}
        assert (
            rows["once-failing"].attempts == 1 and "the platform said no" in rows["once-failing"].last_error
        )
        # A rate limit waits the time it names and is not counted as a failure.
        assert rows["busy"].attempts == 0 and rows["busy"].last_error == "rate limited"
        wait = rows["busy"].next_attempt_at - datetime.now(UTC)
        assert timedelta(seconds=50) < wait <= timedelta(seconds=60)
        # Nothing is due before its back-off ends.
    assert outbox.drain(factory) == {}
    for _ in range(outbox.MAX_ATTEMPTS + 1):
        with factory() as db:
            db.execute(
                OutboxItem.__table__.update().values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            db.commit()
        outbox.drain(factory)
    with factory() as db:
        rows = {r.dedupe_key.split(":", 1)[1]: r for r in db.scalars(select(OutboxItem))}
        assert rows["once-failing"].status == "done" and rows["busy"].status == "done"
        assert rows["always-failing"].status == "failed"
        assert rows["always-failing"].attempts == outbox.MAX_ATTEMPTS
        health = outbox.health(db, tenant.org_id, "test.outbox")
        assert (health.failed, health.done_24h) == (1, 2)
        assert "the platform said no" in health.recent_errors[0][2]
        assert outbox.retry_failed(db, tenant.org_id, "test.outbox") == 1
        db.commit()
    assert calls.count(("outbox", c.id)) == 2


def test_a_claimed_row_whose_drain_died_is_handled_after_the_lease(engine: Engine, tenant, probe) -> None:  # type: ignore[no-untyped-def]
    factory = make_sessionmaker(engine)
    with factory() as db:
        c = profiles.create_customer(db, tenant.org_id, {"name": "丁"})
        bus.emit(db, _probe(tenant.org_id, c.id))
        db.commit()
        item_id = db.scalar(select(OutboxItem.id))
        # A drain claimed it and died before finishing: the claim committed, the work did not.
        assert outbox._claim(db, item_id, datetime.now(UTC))  # type: ignore[arg-type]
        db.commit()
    assert outbox.drain(factory) == {}
    with factory() as db:
        item = db.get(OutboxItem, item_id)
        assert item is not None and item.status == "pending"
        item.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)  # the lease ran out
        db.commit()
    assert outbox.drain(factory) == {"done": 1}
    assert calls.count(("outbox", c.id)) == 1


def test_every_vocabulary_type_is_documented() -> None:
    from pathlib import Path

    from siyu.events.vocabulary import VOCABULARY, EventType

    doc = (Path(__file__).parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    assert set(VOCABULARY) == set(EventType)
    for event_type, spec in VOCABULARY.items():
        assert f"### `{event_type.value}`" in doc, event_type
        section = doc.split(f"### `{event_type.value}`", 1)[1].split("### ", 1)[0]
        for name in spec.properties:
            assert f"`{name}`" in section, (event_type, name)
