"""The queue: tasks enqueued after commit run on a real consumer (SQLite storage, Redis when configured)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from huey.storage import RedisStorage
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from siyu.customers.models import Customer
from siyu.integrations.wecom.crypto import build_event_xml, parse_event_xml
from siyu.kit.clock import utcnow
from siyu.kit.settings import Settings
from siyu.wecom.callbacks import store_event, store_events
from siyu.wecom.models import InboxItem
from siyu.wecom.tasks import MAX_ATTEMPTS, drain, drain_wecom_inbox, prune, sweep
from siyu.worker import queue

REDIS_URL = os.environ.get("SIYU_TEST_REDIS_URL", "")
STORAGES = ["sqlite"] + (["redis"] if REDIS_URL else [])


def _event(eid: str, created: int = 1_700_000_000) -> dict:  # type: ignore[type-arg]
    return parse_event_xml(
        build_event_xml(
            {  # type: ignore[return-value]
                "ToUserName": "wwcorp",
                "FromUserName": "sys",
                "CreateTime": created,
                "MsgType": "event",
                "Event": "change_external_contact",
                "ChangeType": "add_external_contact",
                "UserID": "zhangsan",
                "ExternalUserID": eid,
                "State": "offline_flyer",
            }
        )
    )


@pytest.fixture(params=STORAGES)
def bound(request: pytest.FixtureRequest, engine, tmp_path: Path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The queue on real storage, its tasks on the test database; restored afterwards."""
    settings = Settings(data_dir=tmp_path / "var", secret_key="test-secret-key")
    queue.bind_engine(engine)
    queue.bind_settings(settings)
    if request.param == "redis":
        storage = RedisStorage(f"siyu-test-{uuid.uuid4().hex[:8]}", url=REDIS_URL)
        queue.configure(storage=storage)
    else:
        queue.configure(settings)
        assert (tmp_path / "var" / "huey.db").exists()
    yield
    queue.huey.storage.flush_all()
    queue.huey.storage = queue.huey.create_storage()


def _wait_processed(db: Session, ids: list[int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.expire_all()
        left = db.scalar(select(func.count()).where(InboxItem.id.in_(ids), InboxItem.processed_at.is_(None)))
        if not left:
            return
        time.sleep(0.05)
    raise AssertionError("inbox rows were not processed in time")


def test_consumer_drains_each_row_once_even_when_drains_are_requested_twice(
    bound: None, db: Session, tenant
) -> None:  # type: ignore[no-untyped-def]
    ids = [store_event(db, tenant.org_id, _event(f"wmQ{i}")) for i in range(5)]
    db.commit()
    assert all(isinstance(i, int) for i in ids)
    for _ in range(3):  # repeated requests, run by two worker threads at once
        drain_wecom_inbox()
    with queue.ThreadedConsumer(workers=2):
        _wait_processed(db, ids)  # type: ignore[arg-type]
        time.sleep(0.2)  # let the repeats run too
    rows = list(db.scalars(select(InboxItem).order_by(InboxItem.id)))
    assert [r.attempts for r in rows] == [1] * 5
    assert (
        db.scalar(select(func.count()).select_from(Customer).where(Customer.source == "offline_flyer")) == 5
    )


def test_concurrent_drains_apply_each_row_once(engine, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    queue.bind_engine(engine)
    queue.bind_settings(Settings(secret_key="test-secret-key"))
    ids = [store_event(db, tenant.org_id, _event(f"wmC{i}", created=1_700_000_000 + i)) for i in range(40)]
    db.commit()
    applied: list[int] = []
    threads = [threading.Thread(target=lambda: applied.append(drain())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(applied) == 40  # the drains that found one running only asked it for another pass
    db.expire_all()
    assert [r.attempts for r in db.scalars(select(InboxItem).where(InboxItem.id.in_(ids)))] == [1] * 40


def test_drain_moves_past_a_failing_row_and_records_it(engine, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    queue.bind_engine(engine)
    queue.bind_settings(Settings(secret_key="test-secret-key"))
    good = store_event(db, tenant.org_id, _event("wmGOOD1"))
    bad = store_event(
        db,
        tenant.org_id,
        {
            **_event("wmBAD"),
            "event": "change_external_contact",
            "change_type": "add_external_contact",
            "create_time": "not a number",
        },
    )
    later = store_event(db, tenant.org_id, _event("wmGOOD2"))
    db.commit()
    assert drain() == 2
    db.expire_all()
    rows = {r.id: r for r in db.scalars(select(InboxItem))}
    assert rows[good].processed_at is not None and rows[later].processed_at is not None
    assert rows[bad].processed_at is None and rows[bad].attempts == 1 and rows[bad].error


def test_duplicate_store_returns_none(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    first = store_event(db, tenant.org_id, _event("wmDUP"))
    again = store_event(db, tenant.org_id, _event("wmDUP"))
    other = store_event(db, tenant.org_id, _event("wmDUP", created=1_700_000_001))
    assert isinstance(first, int) and again is None and isinstance(other, int)


def test_store_events_inserts_a_list_once_per_key(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    earlier = store_event(db, tenant.org_id, _event("wmSEEN"))
    ids = store_events(
        db,
        [
            (tenant.org_id, _event("wmA")),
            (tenant.org_id, _event("wmSEEN")),
            (tenant.org_id, _event("wmB")),
            (tenant.org_id, _event("wmA")),
        ],
    )
    assert isinstance(earlier, int)
    assert isinstance(ids[0], int) and ids[1] is None and isinstance(ids[2], int) and ids[3] is None
    assert len({earlier, ids[0], ids[2]}) == 3
    assert db.scalar(select(func.count()).select_from(InboxItem)) == 3
    assert store_events(db, []) == []


def test_sweep_processes_rows_left_behind(engine, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    queue.bind_engine(engine)
    queue.bind_settings(Settings(secret_key="test-secret-key"))
    old = store_event(db, tenant.org_id, _event("wmOLD"))
    fresh = store_event(db, tenant.org_id, _event("wmFRESH"))
    hopeless = store_event(db, tenant.org_id, _event("wmHOPELESS"))
    db.execute(
        update(InboxItem)
        .where(InboxItem.id.in_([old, hopeless]))
        .values(received_at=utcnow() - timedelta(minutes=5))
    )
    db.execute(update(InboxItem).where(InboxItem.id == hopeless).values(attempts=MAX_ATTEMPTS))
    db.commit()
    assert sweep() == 1
    db.expire_all()
    state = {r.id: r.processed_at is not None for r in db.scalars(select(InboxItem))}
    assert state == {old: True, fresh: False, hopeless: False}
    assert sweep(older_than=timedelta(0)) == 1  # the fresh one, once it counts as left behind


def test_prune_deletes_only_long_processed_rows(engine, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    queue.bind_engine(engine)
    long_ago, lately = (
        utcnow() - timedelta(days=Settings().webhook_retention_days + 1),
        utcnow() - timedelta(days=1),
    )
    old = [store_event(db, tenant.org_id, _event(f"wmOLD{i}")) for i in range(3)]
    recent = store_event(db, tenant.org_id, _event("wmRECENT"))
    stuck = store_event(db, tenant.org_id, _event("wmSTUCK"))  # never processed: kept however old
    db.execute(
        update(InboxItem).where(InboxItem.id.in_(old)).values(processed_at=long_ago, received_at=long_ago)
    )
    db.execute(update(InboxItem).where(InboxItem.id == recent).values(processed_at=lately))
    db.execute(
        update(InboxItem).where(InboxItem.id == stuck).values(received_at=long_ago, attempts=MAX_ATTEMPTS)
    )
    db.add(
        InboxItem(
            org_id=tenant.org_id,
            source="douyin",
            external_key="other-source",
            kind="comment",
            payload={},
            received_at=long_ago,
            processed_at=long_ago,
        )
    )
    db.commit()
    assert prune(batch=2) == 3  # two batches: a full one, then the rest
    db.expire_all()
    left = {(r.source, r.id) for r in db.scalars(select(InboxItem))}
    assert {i for s, i in left if s == "wecom"} == {recent, stuck}
    assert any(s == "douyin" for s, _ in left)
    assert prune() == 0
