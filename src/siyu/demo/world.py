"""A seeded, deterministic generator of a realistic brand's private domain: the sandbox world.

`generate_world(customers, days, seed, end)` returns plain dataclasses and numpy arrays (no
database, no siyu domain code): operators, carrier accounts, customers arriving over `days`
from five sources, their identities, tags, follow relations, events and orders. The same
arguments give the same world byte for byte (`World.fingerprint()`).

Purchases follow the BG/NBD story: each customer draws a purchase rate lambda ~ Gamma(r, alpha)
(per day) and a dropout probability p ~ Beta(a, b); while alive they buy as a Poisson process
with rate lambda, and after each purchase they leave for good with probability p. Spend follows
Gamma-Gamma: nu ~ Gamma(q, rate gamma) per customer, each order's target value ~ Gamma(p_s,
rate nu), snapped onto the product catalogue. Everything is vectorised; a million customers take
seconds.

Times are int64 UTC epoch seconds throughout (`*_at` arrays); -1 means "none".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from siyu.demo import people
from siyu.demo.activity import Activity, simulate_activity
from siyu.demo.records import (
    AccountSpec,
    Customers,
    Identities,
    Operator,
    OrderItems,
    Orders,
    World,
)
from siyu.demo.vocab import (
    ACCOUNT_KINDS,
    BRAND_NAME,
    DAY,
    DOUYIN,
    DOUYIN_VIDEOS,
    FIRST_ORDER_PLATFORM,
    FLYER_VENUES,
    HOUR_PROFILES,
    INTENTS,
    LIVE,
    PRODUCTS,
    REFERRAL,
    REFUND_RATE,
    REPEAT_ORDER_PLATFORM,
    SOURCES,
    TAOBAO,
    TAOBAO_PLATFORM,
    WECOM_SHARE,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A fixed default end (2025-07-01 00:00 Asia/Shanghai) so the default world never changes with the clock.
DEFAULT_END = datetime(2025, 6, 30, 16, 0, tzinfo=UTC)
MAX_CUSTOMERS = 20_000_000


@dataclass(frozen=True, slots=True)
class BGNBD:
    """Purchase-process parameters (time unit: days)."""

    r: float = 0.3
    alpha: float = 30.0
    a: float = 0.8
    b: float = 2.4


@dataclass(frozen=True, slots=True)
class GammaGamma:
    """Spend-model parameters in fen: mean order value is p * gamma / (q - 1)."""

    p: float = 6.0
    q: float = 4.0
    gamma: float = 12_000.0


def _stream(seed: int, name: str) -> np.random.Generator:
    # One independent stream per component: changing how one part draws never shifts another.
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(key,)))


def _validate(customers: int, days: int, seed: int, end: datetime) -> None:
    if isinstance(customers, bool) or not isinstance(customers, int) or not 1 <= customers <= MAX_CUSTOMERS:
        raise ValueError(f"customers must be an integer from 1 to {MAX_CUSTOMERS:,}, got {customers!r}")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise ValueError(f"days must be an integer from 1 to 3650, got {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if end.tzinfo is None:
        raise ValueError("end must be a timezone-aware datetime")


def _window(days: int, end: datetime) -> tuple[int, int]:
    """Arrivals cover `days` whole Shanghai days ending at the local midnight at or before `end`."""
    local_end = end.astimezone(SHANGHAI)
    midnight = local_end.replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - timedelta(days=days)).timestamp()), int(midnight.timestamp())


def _arrivals(
    n: int, days: int, start: int, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int8], tuple[int, ...], int]:
    """Arrival times and sources: growth trend, busier weekends, a 3-day campaign and one big live day."""
    d = np.arange(days)
    weekday = np.array([(datetime.fromtimestamp(start + i * DAY, SHANGHAI)).weekday() for i in range(days)])
    day_weight = np.linspace(0.7, 1.3, days) * np.where(weekday >= 5, 1.35, 1.0)
    campaign = (
        tuple(int(x) for x in d[(d >= int(days * 0.68)) & (d < int(days * 0.68) + 3)]) if days >= 14 else ()
    )
    day_weight[list(campaign)] *= 3.0
    # The big live session falls on the Saturday nearest 40% into the window.
    saturdays = d[weekday == 5]
    live_day = int(saturdays[np.argmin(np.abs(saturdays - days * 0.4))]) if saturdays.size else -1
    shares = np.array([s[2] for s in SOURCES])
    cell = day_weight[:, None] * shares[None, :]
    live_boost = np.ones(days)
    live_boost[weekday == 2] = 2.5  # a weekly Wednesday-night live session
    if live_day >= 0:
        live_boost[live_day] = 25.0
    cell[:, 2] *= live_boost
    counts = rng.multinomial(n, (cell / cell.sum()).ravel())
    cells = np.repeat(np.arange(counts.shape[0]), counts)
    day, source = cells // len(SOURCES), (cells % len(SOURCES)).astype(np.int8)
    hour = np.empty(n, dtype=np.int64)
    for s, profile in enumerate(HOUR_PROFILES):
        mask = source == s
        prob = np.asarray(profile, dtype=np.float64)
        hour[mask] = rng.choice(24, size=int(mask.sum()), p=prob / prob.sum())
    t = start + day * DAY + hour * 3600 + rng.integers(0, 3600, n)
    order = np.argsort(t, kind="stable")
    return t[order].astype(np.int64), source[order], campaign, live_day


def _accounts(
    source: NDArray[np.int8], created: NDArray[np.int64], start: int, rng: np.random.Generator, operators: int
) -> tuple[list[AccountSpec], NDArray[np.int32], NDArray[np.int32], NDArray[np.int64]]:
    """Open enough accounts and route each arrival to one with room: per-account caps always hold.

    Slots (one per unit of soft cap) are ordered by account opening rank with some overlap, then
    handed to customers in arrival order, so early accounts fill first and newer ones take over,
    as a channel code's routing does. About 5% of customers are also added by an account of the
    other kind (an operator's personal WeChat as well as the WeCom member), days later.
    """
    n = int(source.shape[0])
    wecom = rng.random(n) < np.asarray(WECOM_SHARE)[source]
    second = rng.random(n) < 0.05
    caps = {0: (8000, 20000), 1: (2500, 5000)}
    primary = np.empty(n, dtype=np.int32)
    secondary = np.full(n, -1, dtype=np.int32)
    second_since = np.full(n, -1, dtype=np.int64)
    specs: list[AccountSpec] = []
    for kind in (0, 1):
        soft, hard = caps[kind]
        first_mask = wecom if kind == 0 else ~wecom
        second_mask = second & ~first_mask
        need = int(first_mask.sum() + second_mask.sum())
        count = max(3 if kind == 1 else operators, int(np.ceil(need / (soft * 0.8))))
        offset = len(specs)
        slot_account = np.repeat(np.arange(count), soft)
        slot_key = slot_account + rng.uniform(0, 3, slot_account.shape[0])
        slots = slot_account[np.argsort(slot_key, kind="stable")]
        # Primary contacts take slots in arrival order; second adds take the next free ones.
        k1 = int(first_mask.sum())
        primary[first_mask] = offset + slots[:k1]
        k2 = int(second_mask.sum())
        secondary[second_mask] = offset + slots[k1 : k1 + k2]
        first_use = np.full(count, np.iinfo(np.int64).max)
        np.minimum.at(first_use, slots[:k1], created[first_mask])
        last_arrival = int(created[-1]) if n else start
        for a in range(count):
            # An account opens before its first contact; one still empty was opened in the last days.
            first = int(first_use[a]) if first_use[a] < np.iinfo(np.int64).max else last_arrival
            opened = (
                min(first, start + DAY) - int(rng.integers(DAY, 20 * DAY))
                if first_use[a] < np.iinfo(np.int64).max
                else first - int(rng.integers(DAY, 5 * DAY))
            )
            op = 1 + (a + kind) % operators  # World.operators[0] is the admin, who runs no account
            label = "企微" if kind == 0 else "个微"
            specs.append(
                AccountSpec(
                    kind=ACCOUNT_KINDS[kind],
                    external_id=(f"zl_wecom_{a + 1:04d}" if kind == 0 else f"wxid_zl{a + 1:05d}"),
                    name=f"{label}-小知{a + 1:02d}" if kind == 0 else f"{label}-知了老师{a + 1:02d}",
                    operator=op,
                    soft_cap=soft,
                    hard_cap=hard,
                    created_at=opened,
                )
            )
    second_since[second] = created[second] + rng.integers(DAY, 10 * DAY, int(second.sum()))
    return specs, primary, secondary, second_since


def _orders(
    src: NDArray[np.int8],
    created: NDArray[np.int64],
    end: int,
    lam: NDArray[np.float64],
    p: NDArray[np.float64],
    rng: np.random.Generator,
) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.int32], NDArray[np.bool_]]:
    """Order times from the Poisson-with-dropout process; Taobao parcel-card customers bought first.

    Returns (customer, paid_at, index within the customer's orders, alive at end) with orders
    grouped by customer in time order.
    """
    n = int(src.shape[0])
    age = (end - created) / DAY
    taobao = src == TAOBAO
    n_events = rng.poisson(lam * age)
    k = rng.geometric(p)  # purchases made up to and including the one after which they leave
    after = np.where(taobao, np.minimum(n_events, k - 1), np.minimum(n_events, k))
    alive = np.where(taobao, n_events < k - 1, n_events < k)
    # Purchase times are the first `after` of n_events sorted uniforms on (created, end).
    total = int(n_events.sum())
    owner = np.repeat(np.arange(n, dtype=np.int64), n_events)
    u = rng.random(total)
    order = np.lexsort((u, owner))
    u, owner = u[order], owner[order]
    starts = np.cumsum(n_events) - n_events
    rank = np.arange(total) - starts[owner]
    keep = rank < after[owner]
    post_c, post_u = owner[keep], u[keep]
    post_t = created[post_c] + (post_u * (end - created[post_c])).astype(np.int64)
    pre_c = np.flatnonzero(taobao)
    pre_t = created[pre_c] - rng.integers(int(1.5 * DAY), 6 * DAY, pre_c.shape[0])
    cust = np.concatenate([pre_c, post_c]).astype(np.int32)
    paid = np.concatenate([pre_t, post_t])
    o = np.lexsort((paid, cust))
    cust, paid = cust[o], paid[o]
    first = np.r_[0, np.flatnonzero(np.diff(cust)) + 1]
    counts = np.diff(np.r_[first, cust.shape[0]])
    index = (np.arange(cust.shape[0]) - np.repeat(first, counts)).astype(np.int32)
    return cust, paid, index, alive


def _baskets(
    target: NDArray[np.float64], rng: np.random.Generator
) -> tuple[NDArray[np.int32], NDArray[np.int8], NDArray[np.int16]]:
    """Snap each target spend onto catalogue lines: the dearest product that fits, then an add-on."""
    prices = np.array([p[2] for p in PRODUCTS], dtype=np.float64)
    main = np.clip(np.searchsorted(prices, target, side="right") - 1, 0, len(prices) - 1)
    qty_main = np.where((main == len(prices) - 1) & (target > 2.2 * prices[-1]), 2, 1)
    rest = target - prices[main] * qty_main
    addon = np.searchsorted(prices, rest, side="right") - 1
    has_addon = (addon >= 0) & (rng.random(target.shape[0]) < 0.6)
    n = int(target.shape[0])
    line_order = np.concatenate([np.arange(n), np.flatnonzero(has_addon)]).astype(np.int32)
    product = np.concatenate([main, addon[has_addon]]).astype(np.int8)
    quantity = np.concatenate([qty_main, np.ones(int(has_addon.sum()), dtype=np.int64)]).astype(np.int16)
    o = np.argsort(line_order, kind="stable")
    return line_order[o], product[o], quantity[o]


def generate_world(
    customers: int = 10_000,
    days: int = 90,
    seed: int = 42,
    end: datetime = DEFAULT_END,
    bgnbd: BGNBD = BGNBD(),
    spend: GammaGamma = GammaGamma(),
) -> World:
    """Generate the sandbox brand; the same arguments always give the same world."""
    _validate(customers, days, seed, end)
    end_s = int(end.timestamp())
    start, arrivals_end = _window(days, end)
    n = customers

    created, src, campaign, live_day = _arrivals(n, days, start, _stream(seed, "arrivals"))
    rng = _stream(seed, "people")
    gender = rng.choice(3, size=n, p=[0.08, 0.3, 0.62]).astype(np.int8)
    pools = people.NamePools(seed)
    names = pools.names(gender, rng)
    # Who leaves a mobile differs by source: buyers and flyer forms nearly always, commenters rarely.
    gives_mobile = rng.random(n) < np.array([0.45, 0.95, 0.5, 0.9, 0.65])[src]
    mobiles = np.where(gives_mobile, people.unique_mobiles(n, rng), 0)
    region_names, region = people.regions(n, rng)

    rng = _stream(seed, "latent")
    rate_boost = np.array([1.0, 1.5, 1.2, 0.8, 1.3])[src]
    lam = np.minimum(rng.gamma(bgnbd.r, 1.0 / bgnbd.alpha, n) * rate_boost, 1.0)
    p_drop = rng.beta(bgnbd.a, bgnbd.b, n)
    nu = rng.gamma(spend.q, 1.0 / spend.gamma, n)

    operators_needed = max(6, int(np.ceil(n / 12_000)))
    specs, primary, secondary, second_since = _accounts(
        src, created, start, _stream(seed, "accounts"), operators_needed
    )

    rng = _stream(seed, "orders")
    o_cust, o_paid, o_index, alive = _orders(src, created, end_s, lam, p_drop, rng)
    m = int(o_cust.shape[0])
    target = rng.gamma(spend.p, 1.0 / nu[o_cust])
    item_order, item_product, item_qty = _baskets(target, rng)
    price = np.array([p[2] for p in PRODUCTS], dtype=np.int64)
    cost = np.array([p[3] for p in PRODUCTS], dtype=np.int64)
    amount = np.bincount(item_order, weights=price[item_product] * item_qty, minlength=m).astype(np.int64)
    pre = o_paid < created[o_cust]
    first_post = np.where(src[o_cust] == TAOBAO, o_index == 1, o_index == 0)
    probs = np.where(
        first_post[:, None],
        np.asarray(FIRST_ORDER_PLATFORM)[src[o_cust]],
        np.asarray(REPEAT_ORDER_PLATFORM)[None, :],
    )
    platform = (rng.random(m)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, 2).astype(np.int8)
    platform[pre] = TAOBAO_PLATFORM
    refunded_at = np.where(
        rng.random(m) < np.asarray(REFUND_RATE)[platform],
        o_paid + 2 * 3600 + rng.exponential(2 * DAY, m).astype(np.int64),
        -1,
    )
    refunded_at[refunded_at >= end_s] = -1
    full_refund = rng.random(m) < 0.75
    cheapest_line = np.full(m, np.iinfo(np.int64).max)
    np.minimum.at(cheapest_line, item_order, price[item_product])
    refunded = np.where(refunded_at >= 0, np.where(full_refund, amount, np.minimum(cheapest_line, amount)), 0)
    o_account = np.where(pre, -1, primary[o_cust]).astype(np.int32)
    by_time = np.argsort(o_paid, kind="stable")
    remap = np.empty(m, dtype=np.int32)
    remap[by_time] = np.arange(m, dtype=np.int32)
    prefixes = ("", "69", "WX")
    bases = (
        3_900_000_000_000_000_000 + seed * 10_000_000,
        4_900_000_000_000_000 + seed * 10_000_000,
        start // DAY * 10_000_000,
    )
    external = [f"{prefixes[pf]}{bases[pf] + i}" for i, pf in enumerate(platform[by_time].tolist())]
    orders = Orders(
        customer=o_cust[by_time],
        account=o_account[by_time],
        platform=platform[by_time],
        external_id=external,
        amount_fen=amount[by_time],
        refunded_fen=refunded[by_time].astype(np.int64),
        paid_at=o_paid[by_time],
        refunded_at=refunded_at[by_time],
    )
    items = OrderItems(
        order=remap[item_order],
        product=item_product,
        quantity=item_qty,
        unit_price_fen=price[item_product],
        unit_cost_fen=cost[item_product],
    )
    o = np.lexsort((items.product, items.order))
    items = OrderItems(*(getattr(items, f.name)[o] for f in fields(OrderItems)))

    activity: Activity = simulate_activity(
        created=created,
        source=src,
        end=end_s,
        lam=lam,
        primary=primary,
        secondary=secondary,
        second_since=second_since,
        orders=orders,
        n_orders=np.bincount(o_cust, minlength=n),
        gender=gender,
        campaign=tuple(start + d * DAY for d in campaign),
        live_day=(start + live_day * DAY if live_day >= 0 else -1),
        rng=_stream(seed, "activity"),
    )

    rng = _stream(seed, "profile")
    intents, details, referrer = _intents_and_details(src, created, start, names, live_day, rng)
    remarks = [
        people.remark(nm, SOURCES[s][1], it, str(mb) if mb else None)
        for nm, s, it, mb in zip(names, src.tolist(), intents, mobiles.tolist(), strict=False)
    ]
    consent = activity.consent_marketing | (rng.random(n) < 0.25)
    wecom_account = np.array([a.kind == ACCOUNT_KINDS[0] for a in specs], dtype=bool)
    identities = _identities(src, mobiles, primary, secondary, wecom_account, _stream(seed, "identities"))

    return World(
        seed=seed,
        start=datetime.fromtimestamp(start, UTC),
        end=end,
        campaign_days=campaign,
        live_day=live_day,
        operators=_operators(operators_needed, seed),
        accounts=specs,
        regions=region_names,
        tag_groups=activity.tag_groups,
        tags=activity.tags,
        customers=Customers(
            created_at=created,
            source=src,
            name=names,
            gender=gender,
            mobile=mobiles,
            region=region,
            intent=intents,
            source_detail=details,
            remark=remarks,
            stage=activity.stage,
            consent_marketing=consent,
            updated_at=activity.last_event_at,
            referrer=referrer,
            purchase_rate=lam,
            dropout_probability=p_drop,
            alive=alive,
        ),
        identities=identities,
        follows=activity.follows,
        customer_tags=activity.customer_tags,
        orders=orders,
        order_items=items,
        events=activity.events,
        params={
            "r": bgnbd.r,
            "alpha": bgnbd.alpha,
            "a": bgnbd.a,
            "b": bgnbd.b,
            "p": spend.p,
            "q": spend.q,
            "gamma": spend.gamma,
            "arrivals_end": float(arrivals_end),
        },
    )


def _operators(count: int, seed: int) -> list[Operator]:
    """One admin and `count` operators with distinct Chinese names (stable for a seed)."""
    pools = people.NamePools(seed + 1, size=max(64, count * 2))
    rng = _stream(seed, "operators")
    gender = rng.choice([1, 2], size=4 * (count + 1), p=[0.3, 0.7]).astype(np.int8)
    names: list[str] = []
    for name in pools.names(gender, rng):
        # Staff use their real names at work: skip the nickname styles.
        if name not in names and not name.startswith("A") and "妈妈" not in name and name[0] != name[-1]:
            names.append(name)
    names += [f"运营{i:02d}" for i in range(len(names), count + 1)]  # only if the pool ran dry
    ops = [Operator(handle="admin", name=names[0], role="admin")]
    ops += [Operator(handle=f"op{i:02d}", name=names[i], role="operator") for i in range(1, count + 1)]
    return ops


def _intents_and_details(
    src: NDArray[np.int8],
    created: NDArray[np.int64],
    start: int,
    names: list[str],
    live_day: int,
    rng: np.random.Generator,
) -> tuple[list[str], list[str], NDArray[np.int32]]:
    """The request each customer came with, where exactly they came from, and who referred them."""
    n = int(src.shape[0])
    intent_idx = np.zeros(n, dtype=np.int64)
    for s, options in enumerate(INTENTS):
        mask = src == s
        w = np.array([o[1] for o in options])
        intent_idx[mask] = rng.choice(len(options), size=int(mask.sum()), p=w / w.sum())
    intents = [INTENTS[s][i][0] for s, i in zip(src.tolist(), intent_idx.tolist(), strict=False)]
    video = rng.integers(0, len(DOUYIN_VIDEOS), n).tolist()
    venue = rng.integers(0, len(FLYER_VENUES), n).tolist()
    region_city = rng.choice(["杭州", "上海", "苏州", "南京", "成都", "深圳"], size=n).tolist()
    # A referral points at someone who arrived earlier (uniformly among them); the first arrival cannot.
    idx = np.arange(n)
    referrer = np.where(src == REFERRAL, (rng.random(n) * idx).astype(np.int64), -1)
    referrer[(src == REFERRAL) & (idx == 0)] = -1
    details: list[str] = []
    sessions: dict[int, str] = {}
    for i, (s, t) in enumerate(zip(src.tolist(), created.tolist(), strict=False)):
        if s == 0:
            details.append(f"视频《{DOUYIN_VIDEOS[video[i]]}》评论区")
        elif s == 1:
            details.append(f"淘宝「{BRAND_NAME}旗舰店」包裹卡·返现5元")
        elif s == 2:
            day = (t - start) // DAY
            if day not in sessions:
                label = datetime.fromtimestamp(start + day * DAY, SHANGHAI).strftime("%m-%d")
                sessions[day] = f"抖音直播间 {label}" + (" 周年专场" if day == live_day else "")
            details.append(sessions[day])
        elif s == 3:
            details.append(f"线下传单·{region_city[i]}{FLYER_VENUES[venue[i]]}")
        else:
            r = int(referrer[i])
            details.append(f"老客推荐·{names[r]}" if r >= 0 else "老客推荐")
    return intents, details, referrer.astype(np.int32)


def _identities(
    src: NDArray[np.int8],
    mobiles: NDArray[np.int64],
    primary: NDArray[np.int32],
    secondary: NDArray[np.int32],
    wecom_account: NDArray[np.bool_],
    rng: np.random.Generator,
) -> Identities:
    """Mobile for those who gave one, WeCom userid for WeCom contacts, Douyin/Taobao ids."""
    n = int(src.shape[0])
    idx = np.arange(n, dtype=np.int32)
    parts: list[tuple[NDArray[np.int32], int, list[str]]] = []
    has_mobile = mobiles > 0
    parts.append((idx[has_mobile], 0, [str(v) for v in mobiles[has_mobile].tolist()]))
    # The external userid is per corp, so one per customer however many WeCom members added them.
    wecom = wecom_account[primary] | ((secondary >= 0) & wecom_account[np.maximum(secondary, 0)])
    parts.append((idx[wecom], 1, people.wecom_external_userids(int(wecom.sum()), rng)))
    douyin = (src == DOUYIN) | (src == LIVE)
    parts.append((idx[douyin], 2, people.douyin_open_ids(int(douyin.sum()), rng)))
    taobao = src == TAOBAO
    parts.append((idx[taobao], 3, people.taobao_nicks(int(taobao.sum()), rng)))
    customer = np.concatenate([p[0] for p in parts])
    kind = np.concatenate([np.full(p[0].shape[0], p[1], dtype=np.int8) for p in parts])
    values = [v for p in parts for v in p[2]]
    o = np.lexsort((kind, customer))
    return Identities(customer=customer[o], kind=kind[o], value=[values[i] for i in o.tolist()])
