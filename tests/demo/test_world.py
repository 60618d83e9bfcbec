"""The sandbox generator: deterministic, internally consistent, and shaped like a real brand."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pytest

from siyu.customers.remarks import compose_remark
from siyu.demo import generate_world
from siyu.demo import vocab as V
from siyu.demo.records import World

MOBILE = re.compile(r"^1[3-9]\d{9}$")
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(customers=3000, days=90, seed=11)


def test_same_seed_same_world_and_other_seed_differs() -> None:
    a = generate_world(customers=600, seed=5)
    b = generate_world(customers=600, seed=5)
    c = generate_world(customers=600, seed=6)
    assert a.fingerprint() == b.fingerprint()
    assert a.customers.name == b.customers.name
    assert np.array_equal(a.events.occurred_at, b.events.occurred_at)
    assert a.fingerprint() != c.fingerprint()
    assert a.customers.name != c.customers.name


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"customers": 0}, "customers"),
        ({"customers": 1.5}, "customers"),
        ({"days": 0}, "days"),
        ({"seed": -1}, "seed"),
        ({"end": datetime(2025, 1, 1)}, "end"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        generate_world(**kwargs)  # type: ignore[arg-type]


def test_arrivals_fill_the_window_in_order_with_every_source(world: World) -> None:
    created = world.customers.created_at
    assert len(world.customers) == 3000
    assert np.all(np.diff(created) >= 0)
    assert created.min() >= int(world.start.timestamp())
    assert created.max() < int(world.end.timestamp())
    shares = np.bincount(world.customers.source, minlength=5) / 3000
    assert np.all(shares > 0.05)
    assert shares[V.DOUYIN] == shares.max()


def test_daily_rhythm_has_weekends_a_campaign_and_a_live_day() -> None:
    w = generate_world(customers=20_000, days=90, seed=3)
    start = int(w.start.timestamp())
    day = (w.customers.created_at - start) // V.DAY
    per_day = np.bincount(day, minlength=90)
    weekday = np.array([datetime.fromtimestamp(start + d * V.DAY + 43200, UTC).weekday() for d in range(90)])
    ordinary = np.ones(90, dtype=bool)
    ordinary[[*list(w.campaign_days), w.live_day]] = False
    assert per_day[ordinary & (weekday >= 5)].mean() > 1.15 * per_day[ordinary & (weekday < 5)].mean()
    assert per_day[list(w.campaign_days)].mean() > 2 * per_day[ordinary].mean()
    live = (day == w.live_day) & (w.customers.source == V.LIVE)
    assert live.sum() > 5 * np.bincount(day[w.customers.source == V.LIVE], minlength=90)[ordinary].mean()


def test_mobiles_are_valid_unique_and_identities_unique(world: World) -> None:
    mobiles = [str(m) for m in world.customers.mobile.tolist() if m]
    assert len(mobiles) > 1500
    assert all(MOBILE.match(m) for m in mobiles)
    assert len(set(mobiles)) == len(mobiles)
    ids = world.identities
    pairs = list(zip(ids.kind.tolist(), ids.value, strict=False))
    assert len(set(pairs)) == len(pairs)
    kinds = {V.IDENTITY_KINDS[k] for k in ids.kind.tolist()}
    assert kinds == set(V.IDENTITY_KINDS)
    taobao = set(ids.customer[ids.kind == 3].tolist())
    assert taobao == set(np.flatnonzero(world.customers.source == V.TAOBAO).tolist())


def test_names_remarks_and_regions_look_chinese(world: World) -> None:
    c = world.customers
    assert sum(bool(CJK.search(n)) for n in c.name) == len(c)
    assert len(set(c.name)) > 1000
    for i in range(0, len(c), 97):
        mobile = c.mobile_text(i)
        label = V.SOURCE_LABELS[int(c.source[i])]
        assert c.remark[i] == compose_remark(c.name[i], label, c.intent[i], mobile)
        assert len(c.remark[i]) <= 20
        if mobile:
            assert c.remark[i].endswith("+" + mobile)
    assert all(CJK.search(r) for r in world.regions)
    assert all(op.name and CJK.search(op.name) for op in world.operators)
    assert [op.role for op in world.operators].count("admin") == 1


def test_routing_respects_every_account_cap(world: World) -> None:
    per_account = np.bincount(world.follows.account, minlength=len(world.accounts))
    for spec, count in zip(world.accounts, per_account.tolist(), strict=False):
        assert count <= spec.soft_cap <= spec.hard_cap
        assert spec.operator >= 1  # operators run accounts, not the admin
    pairs = set(zip(world.follows.customer.tolist(), world.follows.account.tolist(), strict=False))
    assert len(pairs) == world.follows.customer.shape[0]
    assert set(world.follows.customer.tolist()) == set(range(len(world.customers)))


@pytest.mark.slow
def test_scaled_world_opens_more_accounts_and_still_respects_caps() -> None:
    w = generate_world(customers=60_000, days=30, seed=2)
    per_account = np.bincount(w.follows.account, minlength=len(w.accounts))
    caps = np.array([a.soft_cap for a in w.accounts])
    assert len(w.accounts) > 10
    assert np.all(per_account <= caps)


def test_orders_are_positive_fen_and_items_add_up(world: World) -> None:
    o = world.orders
    assert o.amount_fen.dtype == np.int64
    assert np.all(o.amount_fen > 0)
    assert np.all((o.refunded_fen >= 0) & (o.refunded_fen <= o.amount_fen))
    assert np.all((o.refunded_fen > 0) == (o.refunded_at >= 0))
    items = world.order_items
    totals = np.bincount(items.order, weights=items.unit_price_fen * items.quantity, minlength=len(o))
    assert np.array_equal(totals.astype(np.int64), o.amount_fen)
    assert len(set(zip(o.platform.tolist(), o.external_id, strict=False))) == len(o)
    assert np.all(np.diff(o.paid_at) >= 0)
    assert np.all(o.paid_at < int(world.end.timestamp()))


def test_stage_follows_from_the_record(world: World) -> None:
    c, e = world.customers, world.events
    n = len(c)
    stage = np.asarray(V.STAGES, dtype=object)[c.stage]
    orders = np.bincount(world.orders.customer, minlength=n)
    refunded = world.orders.refunded_fen >= world.orders.amount_fen
    kept = np.bincount(world.orders.customer[~refunded], minlength=n)
    ended = np.bincount(e.customer[e.type == V.FOLLOW_ENDED], minlength=n)
    started = np.bincount(e.customer[e.type == V.FOLLOW_STARTED], minlength=n)
    lost = ended == started
    assert np.array_equal(stage == "lost", lost) and lost.any()
    assert np.array_equal(stage == "repeat", ~lost & (kept >= 2))
    assert np.array_equal(stage == "converted", ~lost & (kept == 1))
    interacted = np.zeros(n, dtype=bool)
    interacted[e.customer[np.isin(e.type, V.INTERACTIONS)]] = True
    assert np.array_equal(stage == "engaged", ~lost & (kept == 0) & interacted)
    messaged = np.zeros(n, dtype=bool)
    messaged[e.customer[e.type == V.MSG_SENT]] = True
    assert np.array_equal(stage == "contacted", ~lost & (kept == 0) & ~interacted & messaged)
    assert not np.any(stage == "retained")  # the rules never derive it
    placed = np.bincount(e.customer[e.type == V.ORDER], minlength=n)
    assert np.array_equal(placed, orders)
    assert np.array_equal(np.bincount(e.customer[e.type == V.CUSTOMER_ADDED], minlength=n), np.ones(n))


def test_events_stay_in_time_and_stop_when_the_contact_is_deleted(world: World) -> None:
    e, f = world.events, world.follows
    assert np.all(np.diff(e.occurred_at) >= 0)
    assert np.all(e.occurred_at < int(world.end.timestamp()))
    ended = f.ended_at >= 0
    assert ended.any()
    last = np.full(len(world.customers), -1, dtype=np.int64)
    np.maximum.at(last, e.customer, e.occurred_at)
    deleted = e.type == V.FOLLOW_ENDED
    assert set(e.customer[deleted].tolist()) == set(f.customer[ended].tolist())
    assert np.array_equal(last[e.customer[deleted]], e.occurred_at[deleted])


def test_repeat_purchase_process_is_heterogeneous(world: World) -> None:
    orders = np.bincount(world.orders.customer, minlength=len(world.customers))
    zero = (orders == 0).mean()
    assert 0.35 < zero < 0.85
    assert orders.max() >= 5
    assert (orders >= 2).sum() > 0.15 * (orders >= 1).sum()
    rate = world.customers.purchase_rate
    assert rate.std() / rate.mean() > 1.0  # Gamma(r < 1) rates: most near zero, a long tail
    taobao = world.customers.source == V.TAOBAO
    assert np.all(orders[taobao] >= 1)  # a parcel card only reaches buyers


def test_tags_are_plausible(world: World) -> None:
    ct = world.customer_tags
    assert len(set(zip(ct.customer.tolist(), ct.tag.tolist(), strict=False))) == ct.customer.shape[0]
    share = np.bincount(ct.tag, minlength=len(world.tags)) / len(world.customers)
    names = [t[1] for t in world.tags]
    assert all(0.01 < s < 0.6 for s in share)
    assert 0.05 < share[names.index("识字量少")] < 0.3
    assert np.all(ct.created_at >= world.customers.created_at[ct.customer])
    mum = names.index("宝妈")
    held = ct.customer[ct.tag == mum]
    assert (world.customers.gender[held] == 2).mean() > 0.8
