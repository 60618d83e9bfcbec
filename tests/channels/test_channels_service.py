"""Channel codes over the database: routing with reservations, caps under concurrency, attribution,
health and alerts, reports, and merges."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.analytics.roi import code_costs
from siyu.channels import adds, attribution, health, service
from siyu.channels.models import AccountDayLoad, AlertKind, ChannelAdd, CustomerTouch
from siyu.channels.schemas import CodeIn, MemberIn, PoolIn
from siyu.commerce.models import Order
from siyu.customers import follows, merge
from siyu.customers.models import Customer
from siyu.events.models import Event
from siyu.integrations.sandbox.channel_codes import SandboxChannelCodes
from siyu.kit.db import make_sessionmaker
from siyu.kit.errors import Conflict, Invalid

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # Monday 12:00 in Shanghai


@pytest.fixture(autouse=True)
def _fresh_routers() -> None:
    service.forget_routers()


def _account(
    db: Session,
    org_id: int,
    name: str,
    *,
    friends: int = 0,
    soft: int = 100,
    hard: int = 200,
    status: AccountStatus = AccountStatus.active,
    age_days: int = 60,
) -> Account:
    acct = Account(
        org_id=org_id,
        kind=AccountKind.wecom_member,
        external_id=name,
        name=name,
        friend_count=friends,
        soft_cap=soft,
        hard_cap=hard,
        status=status,
        created_at=NOW - timedelta(days=age_days),
    )
    db.add(acct)
    db.flush()
    return acct


def _pool(db: Session, org_id: int, members: list[tuple[Account, bool]], **kw: object) -> int:
    data = PoolIn(
        name=str(kw.pop("name", "pool")),
        members=[MemberIn(account_id=a.id, is_backup=b) for a, b in members],
        **kw,
    )  # type: ignore[arg-type]
    return service.create_pool(db, org_id, data).id


def test_routes_by_least_load_skips_paused_and_uses_backup(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    a = _account(db, tenant.org_id, "a", friends=1, soft=3)
    b = _account(db, tenant.org_id, "b", friends=0, soft=3)
    p = _account(db, tenant.org_id, "paused", status=AccountStatus.paused)
    k = _account(db, tenant.org_id, "blocked", status=AccountStatus.blocked)
    backup = _account(db, tenant.org_id, "backup", soft=1, hard=2)
    pool_id = _pool(db, tenant.org_id, [(a, False), (b, False), (p, False), (k, False), (backup, True)])
    picks = [service.route_new_contact(db, tenant.org_id, pool_id, now=NOW) for _ in range(7)]
    assert [x.account_id for x in picks] == [b.id, a.id, b.id, a.id, b.id, backup.id, backup.id]
    assert [x.backup for x in picks][-2:] == [True, True]
    with pytest.raises(Conflict, match="no account"):
        service.route_new_contact(db, tenant.org_id, pool_id, now=NOW)
    loads = {r.account_id: (r.adds, r.pending) for r in db.scalars(select(AccountDayLoad))}
    assert loads[a.id] == (2, 2) and loads[b.id] == (3, 3) and loads[backup.id] == (2, 2)


def test_warmup_caps_new_accounts(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    new = _account(db, tenant.org_id, "new", age_days=2)
    pool_id = _pool(db, tenant.org_id, [(new, False)], warmup=[3, 5], daily_cap=50)
    for _ in range(3):
        assert service.route_new_contact(db, tenant.org_id, pool_id, now=NOW).account_id == new.id
    with pytest.raises(Conflict):
        service.route_new_contact(db, tenant.org_id, pool_id, now=NOW)
    # The next local day the counter starts again.
    assert (
        service.route_new_contact(db, tenant.org_id, pool_id, now=NOW + timedelta(days=1)).account_id
        == new.id
    )


def test_removed_account_keeps_pool_routing(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    a = _account(db, tenant.org_id, "a")
    b = _account(db, tenant.org_id, "b", friends=50)
    pool_id = _pool(db, tenant.org_id, [(a, False), (b, False)])
    code = service.create_code(
        db,
        tenant.org_id,
        CodeIn(name="Flyer", state="flyer1", channel="flyer", pool_id=pool_id),
        SandboxChannelCodes(),
    )
    assert service.route_for_code(db, tenant.org_id, code, now=NOW).account_id == a.id  # router now cached
    db.delete(a)
    db.flush()
    got = service.route_for_code(db, tenant.org_id, code, now=NOW)
    assert got.account_id == b.id
    # Status changed behind the cached router: the reservation refuses and the router learns.
    b.status = AccountStatus.paused
    db.flush()
    with pytest.raises(Conflict):
        service.route_for_code(db, tenant.org_id, code, now=NOW)


def test_concurrent_adds_never_pass_a_cap(engine, tenant) -> None:  # type: ignore[no-untyped-def]
    factory = make_sessionmaker(engine)
    with factory() as db:
        a = _account(db, tenant.org_id, "a", friends=0, soft=5, hard=5)
        b = _account(db, tenant.org_id, "b", friends=0, soft=4, hard=4)
        pool_id = _pool(db, tenant.org_id, [(a, False), (b, False)])
        db.commit()
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(4):
            # A fresh router cache per attempt simulates separate processes with stale views.
            service.forget_routers()
            with factory() as s:
                try:
                    got = service.route_new_contact(s, tenant.org_id, pool_id, now=NOW)
                    s.commit()
                    out = str(got.account_id)
                except Conflict:
                    s.rollback()
                    out = "full"
                except (
                    OperationalError
                ):  # SQLite refuses a stale snapshot's write: the add is retried upstream
                    s.rollback()
                    out = "busy"
            with lock:
                results.append(out)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with factory() as db:
        loads = {r.account_id: r.pending for r in db.scalars(select(AccountDayLoad))}
    assert loads.get(a.id, 0) <= 5 and loads.get(b.id, 0) <= 4
    assert results.count(str(a.id)) == loads.get(a.id, 0)
    assert results.count(str(b.id)) == loads.get(b.id, 0)
    if "busy" not in results:
        assert sum(loads.values()) == 9  # 16 attempts for 9 places: every place is taken, none twice


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    caps=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.integers(1, 4),
            st.integers(1, 5),
            st.booleans(),
            st.sampled_from(list(AccountStatus)),
            st.integers(0, 30),
        ),
        min_size=1,
        max_size=5,
    ),
    daily=st.integers(1, 4),
    arrivals=st.integers(1, 25),
)
def test_database_stream_respects_caps(db: Session, make_tenant, caps, daily: int, arrivals: int) -> None:  # type: ignore[no-untyped-def]
    service.forget_routers()
    t = make_tenant()
    accts = []
    for i, (friends, soft, hard, backup, status, age) in enumerate(caps):
        accts.append(
            (
                _account(
                    db, t.org_id, f"x{i}", friends=friends, soft=soft, hard=hard, status=status, age_days=age
                ),
                backup,
            )
        )
    pool_id = _pool(db, t.org_id, accts, daily_cap=daily, warmup=[1, 2])
    pool = service.get_pool(db, t.org_id, pool_id)
    taken = {a.id: 0 for a, _ in accts}

    def free(acct: Account, backup: bool) -> bool:
        limit = acct.hard_cap if backup else min(acct.soft_cap, acct.hard_cap)
        daily_cap = service.warmup_daily_cap(acct.created_at, NOW, pool.warmup, pool.daily_cap)
        n = taken[acct.id]
        return acct.status == AccountStatus.active and n < daily_cap and acct.friend_count + n < limit

    for _ in range(arrivals):
        any_free = any(free(a, b) for a, b in accts)
        primary_free = any(free(a, b) for a, b in accts if not b)
        try:
            got = service.route_new_contact(db, t.org_id, pool_id, now=NOW)
        except Conflict:
            assert not any_free, "refused although an account had room"
            break
        acct, backup = next((a, b) for a, b in accts if a.id == got.account_id)
        assert free(acct, backup), "routed to an account without room"
        assert got.backup == backup
        if backup:
            assert not primary_free, "backup used while a primary had room"
        taken[acct.id] += 1


def test_an_add_through_a_code_attributes_tags_and_settles_the_reservation(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    a = _account(db, tenant.org_id, "a")
    pool_id = _pool(db, tenant.org_id, [(a, False)])
    from siyu.customers.models import CustomerTag, Tag, TagGroup

    group = TagGroup(org_id=tenant.org_id, name="Source")
    db.add(group)
    db.flush()
    t = Tag(org_id=tenant.org_id, group_id=group.id, name="douyin")
    db.add(t)
    db.flush()
    sandbox = SandboxChannelCodes()
    first = service.create_code(
        db,
        tenant.org_id,
        CodeIn(
            name="Douyin profile",
            state="dy_profile",
            channel="douyin",
            campaign="double11",
            pool_id=pool_id,
            tag_ids=[t.id],
        ),
        sandbox,
    )
    second = service.create_code(
        db,
        tenant.org_id,
        CodeIn(name="Parcel card", state="tb_card", channel="taobao_parcel", pool_id=pool_id),
        sandbox,
    )
    assert sandbox.members_of(first.config_id) == ("a",)
    assert service.code_for_state(db, tenant.org_id, "dy_profile").id == first.id  # type: ignore[union-attr]
    assert service.code_for_state(db, tenant.org_id, "nope") is None
    assert service.code_for_state(db, tenant.org_id + 999, "dy_profile") is None
    cust = Customer(org_id=tenant.org_id, name="Li")
    db.add(cust)
    db.flush()
    service.route_for_code(db, tenant.org_id, first, now=NOW)
    follows.follow(db, tenant.org_id, cust.id, a.id, since=NOW, state="dy_profile")
    adds.contact_added_through_code(db, tenant.org_id, "dy_profile", cust.id, a.id, NOW, origin="sandbox")
    again = adds.contact_added_through_code(  # the same callback delivered again: no effect
        db, tenant.org_id, "dy_profile", cust.id, a.id, NOW, origin="sandbox"
    )
    assert not again.new
    day = db.scalar(select(AccountDayLoad).where(AccountDayLoad.account_id == a.id))
    assert (day.adds, day.pending) == (1, 0)  # type: ignore[union-attr]
    db.refresh(a)
    assert a.friend_count == 1
    adds.contact_added_through_code(
        db, tenant.org_id, "tb_card", cust.id, a.id, NOW + timedelta(days=2), origin="sandbox"
    )
    touches = {x.kind.value: x for x in attribution.touches_of(db, tenant.org_id, cust.id)}
    assert touches["first"].code_id == first.id and touches["first"].campaign == "double11"
    assert touches["last"].code_id == second.id and touches["last"].channel == "taobao_parcel"
    db.refresh(cust)
    assert (cust.source, cust.source_detail) == ("douyin", "Douyin profile")  # the first code's channel
    assert cust.remark == "Li+抖音"
    assert list(db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == cust.id))) == [t.id]
    kinds = db.scalars(select(Event.type).where(Event.customer_id == cust.id).order_by(Event.id)).all()
    assert kinds.count("code_scanned") == 2 and kinds.count("tag_added") == 1
    assert {"profile_changed", "remark_changed"} <= set(kinds)
    with pytest.raises(Conflict, match="state"):
        service.create_code(
            db, tenant.org_id, CodeIn(name="Again", state="tb_card", channel="x", pool_id=pool_id), sandbox
        )


def test_reports_adds_cost_and_first_order_conversion(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    a = _account(db, tenant.org_id, "a")
    pool_id = _pool(db, tenant.org_id, [(a, False)])
    code = service.create_code(
        db,
        tenant.org_id,
        CodeIn(name="Live", state="live1", channel="live", pool_id=pool_id, cost_fen=10_000),
        SandboxChannelCodes(),
    )
    code.created_at = NOW  # its own cost is a one-off on the day it was created
    people = []
    for i in range(4):
        c = Customer(org_id=tenant.org_id, name=f"c{i}")
        db.add(c)
        db.flush()
        people.append(c)
        service.record_add(db, tenant.org_id, code, c.id, a.id, NOW + timedelta(days=i % 2))
    # One buyer after the add, one only before it (not a conversion of this add).
    db.add(
        Order(
            org_id=tenant.org_id,
            customer_id=people[0].id,
            platform="taobao",
            external_id="o1",
            amount_fen=5000,
            paid_at=NOW + timedelta(days=3),
        )
    )
    db.add(
        Order(
            org_id=tenant.org_id,
            customer_id=people[1].id,
            platform="taobao",
            external_id="o2",
            amount_fen=5000,
            paid_at=NOW - timedelta(days=3),
        )
    )
    db.flush()
    daily = attribution.adds_per_day(db, tenant.org_id, date(2026, 11, 20), date(2026, 11, 30))
    assert [(d.day, d.adds) for d in daily] == [(date(2026, 11, 23), 2), (date(2026, 11, 24), 2)]
    [row] = attribution.code_report(
        db,
        tenant.org_id,
        date(2026, 11, 20),
        date(2026, 11, 30),
        code_costs(db, tenant.org_id, date(2026, 11, 20), date(2026, 11, 30)),
    )
    assert (row.adds, row.cost_fen, row.cost_per_add_fen, row.first_orders) == (4, 10_000, 2500, 1)
    assert row.conversion == 0.25
    with pytest.raises(Invalid, match="date_to"):
        attribution.code_report(
            db,
            tenant.org_id,
            date(2026, 11, 30),
            date(2026, 11, 20),
            code_costs(db, tenant.org_id, date(2026, 11, 30), date(2026, 11, 20)),
        )


def test_merge_keeps_earliest_first_and_latest_last_touch(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    a = _account(db, tenant.org_id, "a")
    pool_id = _pool(db, tenant.org_id, [(a, False)])
    sandbox = SandboxChannelCodes()
    early = service.create_code(
        db, tenant.org_id, CodeIn(name="E", state="e", channel="flyer", pool_id=pool_id), sandbox
    )
    late = service.create_code(
        db, tenant.org_id, CodeIn(name="L", state="l", channel="store", pool_id=pool_id), sandbox
    )
    keep = Customer(org_id=tenant.org_id, name="keep")
    gone = Customer(org_id=tenant.org_id, name="gone")
    db.add_all([keep, gone])
    db.flush()
    service.record_add(db, tenant.org_id, late, keep.id, a.id, NOW)
    service.record_add(db, tenant.org_id, early, gone.id, a.id, NOW - timedelta(days=5))
    service.record_add(db, tenant.org_id, late, gone.id, a.id, NOW + timedelta(days=1))
    audit = merge.merge_customers(db, tenant.org_id, keep.id, gone.id, reason="same person")
    assert audit is not None
    touches = {
        x.kind.value: x for x in db.scalars(select(CustomerTouch).where(CustomerTouch.customer_id == keep.id))
    }
    assert touches["first"].code_id == early.id
    assert touches["last"].code_id == late.id and touches["last"].at == NOW + timedelta(days=1)
    assert db.scalars(select(CustomerTouch).where(CustomerTouch.customer_id == gone.id)).all() == []
    # Both of the merged profile's adds moved; its add through `late` duplicated keep's and was dropped.
    adds = db.scalars(select(ChannelAdd).where(ChannelAdd.code_id.in_([early.id, late.id]))).all()
    assert sorted((x.code_id, x.customer_id) for x in adds) == sorted(
        [(late.id, keep.id), (early.id, keep.id)]
    )


def test_health_and_alerts(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    a = _account(db, tenant.org_id, "a", soft=10, hard=20)
    b = _account(db, tenant.org_id, "b", soft=100)
    pool_id = _pool(db, tenant.org_id, [(a, False)], daily_cap=10, warmup=[])
    code = service.create_code(
        db,
        tenant.org_id,
        CodeIn(name="S", state="s", channel="store", pool_id=pool_id),
        SandboxChannelCodes(),
    )
    people = []
    for i in range(9):
        c = Customer(org_id=tenant.org_id, name=f"c{i}")
        db.add(c)
        db.flush()
        people.append(c)
        service.route_for_code(db, tenant.org_id, code, now=NOW)
        follows.follow(db, tenant.org_id, c.id, a.id, since=NOW)
        service.record_add(db, tenant.org_id, code, c.id, a.id, NOW)
    kinds = {x.kind for x in health.list_alerts(db, tenant.org_id)}
    assert AlertKind.near_cap in kinds and AlertKind.near_daily_cap in kinds
    # Four customers delete the account within the day: a deletion spike.
    for c in people[:4]:
        follows.unfollow(db, tenant.org_id, c.id, a.id, by="customer", at=NOW + timedelta(hours=1))
        health.note_deletion(db, tenant.org_id, a.id, by="customer", at=NOW + timedelta(hours=1))
    c = Customer(org_id=tenant.org_id, name="staff-deleted")
    db.add(c)
    db.flush()
    follows.follow(db, tenant.org_id, c.id, b.id, since=NOW)
    follows.unfollow(db, tenant.org_id, c.id, b.id, by="staff", at=NOW + timedelta(hours=1))
    health.note_deletion(db, tenant.org_id, b.id, by="staff", at=NOW + timedelta(hours=1))
    alerts = health.list_alerts(db, tenant.org_id)
    assert {(x.account_id, x.kind) for x in alerts} >= {
        (a.id, AlertKind.deletion_spike),
        (b.id, AlertKind.deleted_by_staff),
    }
    scores = {h.account_id: h for h in health.account_health(db, tenant.org_id, now=NOW + timedelta(hours=2))}
    assert scores[a.id].deleted_by_customer == 4 and scores[a.id].adds == 9
    assert scores[b.id].deleted_by_staff == 1
    assert scores[a.id].score < 100 and scores[b.id].score == 95
    a.status = AccountStatus.blocked
    db.flush()
    assert health.account_health(db, tenant.org_id, account_ids=[a.id], now=NOW)[0].score == 0
    resolved = health.resolve_alert(db, tenant.org_id, alerts[0].id)
    assert resolved.resolved_at is not None
    assert alerts[0].id not in {x.id for x in health.list_alerts(db, tenant.org_id)}


def test_lead_code_provider_and_carrier_refusal(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    a = _account(db, tenant.org_id, "a")
    pool_id = _pool(db, tenant.org_id, [(a, False)])
    comment = SimpleNamespace(platform="douyin")
    with pytest.raises(Invalid, match="douyin"):
        service.lead_code_provider(db, tenant.org_id, SimpleNamespace(), comment)
    sandbox = SandboxChannelCodes()
    code = service.create_code(
        db,
        tenant.org_id,
        CodeIn(name="Comments", state="dy-comments", channel="douyin", pool_id=pool_id),
        sandbox,
    )
    state, url = service.lead_code_provider(db, tenant.org_id, SimpleNamespace(), comment)
    assert (state, url) == (code.state, code.qr_url)
    assert db.scalar(select(AccountDayLoad.pending).where(AccountDayLoad.account_id == a.id)) == 1
    # The carrier refusing (here: the same state issued twice on the sandbox) is a 422 naming the state.
    service.forget_routers()
    t2 = _account(db, tenant.org_id, "b")
    other_pool = _pool(db, tenant.org_id, [(t2, False)], name="other")
    db.delete(code)
    db.flush()
    with pytest.raises(Invalid, match="refused") as info:
        service.create_code(
            db,
            tenant.org_id,
            CodeIn(name="Again", state="dy-comments", channel="douyin", pool_id=other_pool),
            sandbox,
        )
    assert info.value.field == "state"


def test_periodic_sweep_raises_low_health_and_staff_alerts(engine, tenant) -> None:  # type: ignore[no-untyped-def]
    from siyu.channels.tasks import scan_all

    factory = make_sessionmaker(engine)
    with factory() as db:
        a = _account(db, tenant.org_id, "a", status=AccountStatus.blocked)
        c = Customer(org_id=tenant.org_id, name="x")
        db.add(c)
        db.flush()
        follows.follow(db, tenant.org_id, c.id, a.id, since=NOW - timedelta(hours=3))
        follows.unfollow(db, tenant.org_id, c.id, a.id, by="staff", at=NOW - timedelta(hours=2))
        db.commit()
        account_id = a.id
    assert scan_all(factory, now=NOW) == 2
    assert scan_all(factory, now=NOW) == 0  # one alert per account, kind and day
    with factory() as db:
        kinds = {x.kind for x in health.list_alerts(db, tenant.org_id) if x.account_id == account_id}
    assert kinds == {AlertKind.low_health, AlertKind.deleted_by_staff}


def test_remark_template_and_welcome(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    a = _account(db, tenant.org_id, "a")
    pool_id = _pool(db, tenant.org_id, [(a, False)])
    code = service.create_code(
        db,
        tenant.org_id,
        CodeIn(
            name="Parcel",
            state="tb-card",
            channel="taobao",
            campaign="618",
            pool_id=pool_id,
            remark_template="{name}-{channel}-{mobile_last4}",
            welcome_message="感谢购买",
        ),
        SandboxChannelCodes(),
    )
    cust = Customer(org_id=tenant.org_id, name="王芳", mobile="13812345678")
    assert adds.render_remark(code, cust) == "王芳-淘宝-5678"  # the channel in words
    assert service.welcome_for(code, "default") == "感谢购买"
    assert service.welcome_for(None, "default") == "default"
    for bad in ("{name.__class__}", "{mobile}", "{name"):
        with pytest.raises(ValidationError, match="remark_template"):
            CodeIn(name="x", state="x", channel="x", pool_id=pool_id, remark_template=bad)
