"""Parallel drains keep each contact's order: its callbacks are applied in arrival order, one after the other,
while other contacts' callbacks are applied at the same time; a failed row holds back its contact's later
rows until it succeeds or is given up. Contact details are read from the fake WeCom server over HTTP."""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from siyu.customers.models import FollowStatus
from siyu.kit.db import make_engine
from siyu.wecom.callbacks import partition_key
from siyu.wecom.models import InboxItem
from siyu.wecom.tasks import MAX_ATTEMPTS, _batched_pass, _run_pass, _waiting_rows, drain
from siyu.worker import queue

from .conftest import Control
from .test_drain_prefetch import GET, _connect, _contacts, _event, _gets, _state, _store


def _applied_in_order(db: Session, ids: list[int]) -> bool:
    """Per key, each row was claimed after the row before it (a claim waits for the earlier row's commit)."""
    db.expire_all()
    rows = db.execute(
        select(InboxItem.partition_key, InboxItem.processed_at)
        .where(InboxItem.id.in_(ids))
        .order_by(InboxItem.id)
    ).all()
    last: dict[str, Any] = {}
    for key, at in rows:
        assert at is not None
        if key in last and at <= last[key]:
            return False
        last[key] = at
    return True


#: A drain pass as two worker processes would run it at once: batches of three keys, or a row per
#: transaction with four workers.
PASSES = {
    "batches": lambda: _batched_pass(4, 3),
    "rows": lambda: _run_pass(_waiting_rows(), 4)[0],
}


@pytest.mark.parametrize("kind", sorted(PASSES))
def test_interleaved_adds_edits_and_deletes_keep_each_contacts_order_across_drains(
    app, db: Session, tenant, fake: Control, kind: str
) -> None:  # type: ignore[no-untyped-def]
    _connect(app, db, tenant.org_id, fake)
    eids = _contacts(fake, 6)
    t0 = int(time.time()) + 10  # after the follows' createtime: the deletion is the latest news
    steps = ["add_external_contact", "edit_external_contact", "del_follow_user", "edit_external_contact"]
    # Round-robin: every contact's four events interleaved with the others', each contact's in order.
    events = [
        _event(e, change, t0 + 10 * n + i) for n, change in enumerate(steps) for i, e in enumerate(eids)
    ]
    ids = _store(db, tenant.org_id, events)
    assert {partition_key(e) for e in events} == {f"contact:{e}" for e in eids}
    # Two passes at once, as two worker processes would run them.
    applied: list[int] = []
    passes = [threading.Thread(target=lambda: applied.append(PASSES[kind]())) for _ in range(2)]
    for p in passes:
        p.start()
    for p in passes:
        p.join()
    assert sum(applied) == len(events)
    assert _applied_in_order(db, ids)
    rows = list(db.scalars(select(InboxItem).where(InboxItem.id.in_(ids))))
    assert [r.attempts for r in rows] == [1] * len(events)  # exactly once
    state = _state(db, tenant.org_id)
    for i, eid in enumerate(eids):
        name, _, source, follows, _ = state[eid]
        assert name == f"客户{i}" and source == "offline_flyer"
        # zhangsan was deleted by the customer; the later edit re-read WeCom but does not undo a newer end.
        assert dict(follows) == {"lisi": FollowStatus.active, "zhangsan": FollowStatus.deleted_by_customer}


def test_different_contacts_are_applied_at_the_same_time(app, db: Session, tenant, fake: Control) -> None:  # type: ignore[no-untyped-def]
    _connect(app, db, tenant.org_id, fake)
    eids = _contacts(fake, 6)
    ids = _store(db, tenant.org_id, [_event(e) for e in eids])
    latency = 0.4
    fake.post("config", {"latency": {GET: latency}})
    fake.http.delete("/_control/calls")
    assert drain(workers=6) == len(eids)
    fake.post("config", {"latency": {}})
    answered = sorted(c["at"] for c in fake.calls(GET) if c["errcode"] == 0)
    assert len(answered) == len(eids)
    # One at a time, each read would end at least `latency` after the previous one; these overlapped.
    assert min(b - a for a, b in pairwise(answered)) < latency / 2
    assert _applied_in_order(db, ids)


def test_a_failed_row_holds_back_its_contacts_later_rows_until_it_succeeds(
    app, db: Session, tenant, fake: Control
) -> None:  # type: ignore[no-untyped-def]
    _connect(app, db, tenant.org_id, fake)
    x, y = _contacts(fake, 2)
    t0 = int(time.time()) + 10
    # Only x's add reads WeCom, so the injected refusal lands on it whichever worker asks first.
    ids = _store(
        db,
        tenant.org_id,
        [
            _event(x, "add_external_contact", t0),
            _event(y, "del_external_contact", t0 + 1),
            _event(x, "del_follow_user", t0 + 2),
        ],
    )
    fake.post("faults", {"api": GET, "errcodes": [48002]})
    assert drain(workers=4) == 1  # y's deletion; x's deletion waits behind x's failed add
    db.expire_all()
    add_x, del_y, del_x = (db.get(InboxItem, i) for i in ids)
    assert add_x is not None and add_x.processed_at is None and add_x.attempts == 1 and "48002" in add_x.error
    assert del_y is not None and del_y.processed_at is not None
    assert del_x is not None and del_x.processed_at is None and del_x.attempts == 0
    assert drain(workers=4) == 2  # the retry succeeds, then the deletion follows it
    assert _applied_in_order(db, ids)
    assert dict(_state(db, tenant.org_id)[x][3])["zhangsan"] == FollowStatus.deleted_by_customer
    assert _gets(fake) == 2


def test_a_row_given_up_stops_holding_back_its_contact(app, db: Session, tenant, fake: Control) -> None:  # type: ignore[no-untyped-def]
    _connect(app, db, tenant.org_id, fake)
    (x,) = _contacts(fake, 1)
    broken = {**_event(x, "del_external_contact"), "create_time": "not a number"}  # fails every time
    ids = _store(db, tenant.org_id, [broken, _event(x, "edit_external_contact")])
    assert drain(workers=2) == 0
    db.expire_all()
    assert db.get(InboxItem, ids[1]).processed_at is None  # type: ignore[union-attr]
    db.execute(update(InboxItem).where(InboxItem.id == ids[0]).values(attempts=MAX_ATTEMPTS - 1))
    db.commit()
    assert drain(workers=2) == 0  # the last attempt fails: the row is given up ...
    assert drain(workers=2) == 1  # ... and no longer holds the edit back
    db.expire_all()
    given_up, edit = (db.get(InboxItem, i) for i in ids)
    assert given_up is not None and given_up.attempts == MAX_ATTEMPTS and given_up.processed_at is None
    assert edit is not None and edit.processed_at is not None and edit.attempts == 1


def test_a_locked_sqlite_database_leaves_the_row_waiting_instead_of_failing_it(
    app, db: Session, tenant, fake: Control, engine
) -> None:  # type: ignore[no-untyped-def]
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single writer")
    _connect(app, db, tenant.org_id, fake)
    (x,) = _contacts(fake, 1)
    (row,) = _store(db, tenant.org_id, [_event(x)])
    # Another process holds the write lock longer than this engine's busy timeout allows.
    impatient = make_engine(str(engine.url))
    event.listen(impatient, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout=20"))
    queue.bind_engine(impatient)
    other = engine.raw_connection()
    try:
        other.execute("BEGIN IMMEDIATE")
        assert drain(workers=2) == 0
        db.expire_all()
        item = db.get(InboxItem, row)
        assert item is not None and item.processed_at is None and item.attempts == 0 and item.error is None
    finally:
        other.rollback()
        other.close()
    assert drain(workers=2) == 1  # the lock released: applied, on its first counted attempt
    db.expire_all()
    assert db.get(InboxItem, row).attempts == 1  # type: ignore[union-attr]
    impatient.dispose()


def test_a_batch_applies_its_rows_in_one_transaction(app, db: Session, tenant, fake: Control) -> None:  # type: ignore[no-untyped-def]
    _connect(app, db, tenant.org_id, fake)
    eids = _contacts(fake, 3)
    ids = _store(db, tenant.org_id, [_event(e) for e in eids])
    assert drain(workers=2) == 3
    db.expire_all()
    claimed = {db.get(InboxItem, i).processed_at for i in ids}  # type: ignore[union-attr]
    assert len(claimed) == 1 and None not in claimed  # one claim, one commit
    assert set(_state(db, tenant.org_id)) == set(eids)


def test_a_failing_row_in_a_batch_lets_the_others_apply_and_holds_its_contact_back(
    app, db: Session, tenant, fake: Control
) -> None:  # type: ignore[no-untyped-def]
    _connect(app, db, tenant.org_id, fake)
    x, y, z = _contacts(fake, 3)
    t0 = int(time.time()) + 10
    broken = {**_event(y, "edit_external_contact", t0 + 1), "create_time": "not a number"}  # fails every time
    ids = _store(
        db,
        tenant.org_id,
        [
            _event(x, "add_external_contact", t0),
            broken,
            _event(z, "add_external_contact", t0 + 2),
            _event(y, "del_follow_user", t0 + 3),
        ],
    )
    # The three first rows make one batch; y's edit fails it, so each row is applied on its own.
    assert drain(workers=2) == 2
    db.expire_all()
    add_x, edit_y, add_z, del_y = (db.get(InboxItem, i) for i in ids)
    assert add_x is not None and add_x.processed_at is not None and add_x.attempts == 1
    assert add_z is not None and add_z.processed_at is not None and add_z.attempts == 1
    assert edit_y is not None and edit_y.processed_at is None and edit_y.attempts == 1
    assert "ValueError" in (edit_y.error or "")
    assert del_y is not None and del_y.processed_at is None and del_y.attempts == 0  # held back
    state = _state(db, tenant.org_id)
    assert {x, z} <= set(state) and y not in state
    assert dict(state[x][3])["zhangsan"] == FollowStatus.active
    # Given up after its last attempt, the broken row stops holding y's later row back.
    db.execute(update(InboxItem).where(InboxItem.id == ids[1]).values(attempts=MAX_ATTEMPTS - 1))
    db.commit()
    assert drain(workers=2) == 0
    assert drain(workers=2) == 1
    db.expire_all()
    assert db.get(InboxItem, ids[3]).processed_at is not None  # type: ignore[union-attr]
    assert dict(_state(db, tenant.org_id)[y][3])["zhangsan"] == FollowStatus.deleted_by_customer
