"""What happens to sandbox customers after they arrive: events, follows, lifecycle stage and tags.

Interest is heterogeneous and tied to the purchase rate: each customer draws an interaction
intensity iota = (0.012 + 0.8 lambda) * Gamma(1.5, 1/1.5) per day, and replies, link clicks,
group joins, live views and survey answers are Poisson or Bernoulli draws from it over the
customer's age. Events use the product's vocabulary (siyu.events.vocabulary), and the stage is what
the product's stage rules (siyu.customers.stages.derive) give for the record, never a separate coin:
lost when every follow ended, repeat / converted for two / one paid orders not fully refunded,
engaged after an interaction, contacted once messaged, else new.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from siyu.customers.stages import Facts, derive
from siyu.demo import vocab as V
from siyu.demo.records import CustomerTags, Events, Follows, Orders
from siyu.demo.vocab import DAY

__all__ = ["Activity", "simulate_activity"]


@dataclass(frozen=True, eq=False)
class Activity:
    """The outputs of `simulate_activity` (see world.World for the field types)."""

    events: Events
    follows: Follows
    customer_tags: CustomerTags
    stage: NDArray[np.int8]
    consent_marketing: NDArray[np.bool_]
    last_event_at: NDArray[np.int64]
    tag_groups: list[tuple[str, tuple[str, ...]]]
    tags: list[tuple[int, str]]


class _Log:
    """Accumulates event columns from vectorised draws."""

    def __init__(self) -> None:
        self.parts: list[
            tuple[NDArray[np.int32], NDArray[np.int32], int, NDArray[np.int64], NDArray[np.int32]]
        ] = []

    def add(
        self,
        customer: NDArray[np.integer],
        account: NDArray[np.integer],
        kind: int,
        at: NDArray[np.integer],
        ref: NDArray[np.integer] | None = None,
    ) -> None:
        customer_arr = np.asarray(customer, dtype=np.int32)
        ref_arr = (
            np.full(len(customer_arr), -1, dtype=np.int32) if ref is None else np.asarray(ref, dtype=np.int32)
        )
        self.parts.append(
            (customer_arr, np.asarray(account, dtype=np.int32), kind, np.asarray(at, dtype=np.int64), ref_arr)
        )

    def columns(
        self,
    ) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int8], NDArray[np.int64], NDArray[np.int32]]:
        c = np.concatenate([p[0] for p in self.parts])
        a = np.concatenate([p[1] for p in self.parts])
        k = np.concatenate([np.full(p[0].shape[0], p[2], dtype=np.int8) for p in self.parts])
        t = np.concatenate([p[3] for p in self.parts])
        r = np.concatenate([p[4] for p in self.parts])
        return c, a, k, t, r


def _spread(
    counts: NDArray[np.int64],
    lo: NDArray[np.int64],
    hi: NDArray[np.int64],
    rng: np.random.Generator,
    shape: float = 1.0,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Repeat each customer `counts` times with a time in [lo, hi); shape > 1 skews early (Beta(1, shape))."""
    owner = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    u = rng.random(owner.shape[0]) if shape == 1.0 else rng.beta(1.0, shape, owner.shape[0])
    span = np.maximum(hi - lo, 0)
    return owner, lo[owner] + (u * span[owner]).astype(np.int64)


def _stages(events: Events, orders: Orders, n: int) -> NDArray[np.int8]:
    """Each customer's stage as the stage rules derive it from their events (the facts the rules read,
    counted per customer; ``derive`` runs once per distinct combination of facts)."""
    kind, who = events.type, events.customer.astype(np.int64)
    follows = np.bincount(who[kind == V.FOLLOW_STARTED], minlength=n)
    active = follows - np.bincount(who[kind == V.FOLLOW_ENDED], minlength=n)
    fully_refunded = np.zeros(len(orders), dtype=bool)
    refunds = events.ref[kind == V.REFUND]
    fully_refunded[refunds] = orders.refunded_fen[refunds] >= orders.amount_fen[refunds]
    paid_events = kind == V.ORDER
    kept = ~fully_refunded[events.ref[paid_events]]
    paid = np.minimum(np.bincount(who[paid_events][kept], minlength=n), 2)
    outbound = np.bincount(who[kind == V.MSG_SENT], minlength=n) > 0
    engaged = np.bincount(who[np.isin(kind, V.INTERACTIONS)], minlength=n) > 0
    facts = np.stack([follows > 0, active > 0, paid, outbound, engaged], axis=1).astype(np.int64)
    combos, inverse = np.unique(facts, axis=0, return_inverse=True)
    index = {s: i for i, s in enumerate(V.STAGES)}
    stage_of = np.array(
        [
            index[derive(Facts(int(f), int(a), int(p), bool(o), bool(e))).value]
            for f, a, p, o, e in combos.tolist()
        ],
        dtype=np.int8,
    )
    return stage_of[inverse.reshape(-1)]


def simulate_activity(
    *,
    created: NDArray[np.int64],
    source: NDArray[np.int8],
    end: int,
    lam: NDArray[np.float64],
    primary: NDArray[np.int32],
    secondary: NDArray[np.int32],
    second_since: NDArray[np.int64],
    orders: Orders,
    n_orders: NDArray[np.int64],
    gender: NDArray[np.int8],
    campaign: tuple[int, ...],
    live_day: int,
    rng: np.random.Generator,
) -> Activity:
    """Draw every customer's events, follows, stage and tags; see the module docstring."""
    n = int(created.shape[0])
    idx = np.arange(n, dtype=np.int64)
    age = (end - created) / DAY
    iota = (0.012 + 0.8 * lam) * rng.gamma(1.5, 1 / 1.5, n)
    log = _Log()
    ends = np.full(n, end, dtype=np.int64)

    log.add(idx, primary, V.CUSTOMER_ADDED, created)
    log.add(idx, primary, V.FOLLOW_STARTED, created)
    has_second = (secondary >= 0) & (second_since < end)
    log.add(idx[has_second], secondary[has_second], V.FOLLOW_STARTED, second_since[has_second])
    dy = source == V.DOUYIN
    # Comment mining: the contact is added within minutes to hours of the comment.
    log.add(idx[dy], primary[dy], V.COMMENT, created[dy] - rng.integers(120, 3 * 3600, int(dy.sum())))
    lv = source == V.LIVE
    log.add(idx[lv], primary[lv], V.VIEWED_LIVE, created[lv] - rng.integers(300, 5400, int(lv.sum())))

    welcome = created + 30 + rng.exponential(1200, n).astype(np.int64)
    # About 3% slip through the welcome and wait in the follow-up backlog; the last hours'
    # arrivals may not be reached yet.
    welcomed = (rng.random(n) >= 0.03) & (welcome < end)
    log.add(idx[welcomed], primary[welcomed], V.MSG_SENT, welcome[welcomed])
    c, t = _spread(np.where(welcomed, rng.poisson(0.025 * age), 0), welcome + 3600, ends, rng)
    log.add(c, primary[c], V.MSG_SENT, t)

    c, t = _spread(np.minimum(rng.poisson(0.6 * iota * age), 40), created + 60, ends, rng, shape=2.5)
    log.add(c, primary[c], V.MSG_RECEIVED, t)
    c, t = _spread(rng.poisson(0.3 * iota * age), created + 300, ends, rng)
    log.add(c, primary[c], V.CLICKED, t)
    joins = rng.random(n) < 1 - np.exp(-0.5 * iota * age)
    c, t = _spread(joins.astype(np.int64), created + 600, ends, rng, shape=4.0)
    log.add(c, primary[c], V.JOINED_GROUP, t)
    c, t = _spread(rng.poisson(0.2 * iota * age), created + 3600, ends, rng)
    log.add(c, primary[c], V.VIEWED_LIVE, t)
    if live_day >= 0:
        watch = (created < live_day) & (rng.random(n) < 0.15)
        at = live_day + rng.integers(int(19.5 * 3600), 22 * 3600, n)
        watch &= at < end
        log.add(idx[watch], primary[watch], V.VIEWED_LIVE, at[watch])
    survey = rng.random(n) < np.minimum(0.85, 0.25 + 4 * iota)
    c, survey_at = _spread(survey.astype(np.int64), created + 1800, ends, rng, shape=3.0)
    survey = np.zeros(n, dtype=bool)
    survey[c] = True
    survey_time = np.full(n, -1, dtype=np.int64)
    survey_time[c] = survey_at
    log.add(c, primary[c], V.SURVEY, survey_at)

    o_cust = orders.customer
    o_acct = orders.account
    o_paid = orders.paid_at
    o_ref = np.arange(o_cust.shape[0], dtype=np.int32)
    log.add(o_cust, o_acct, V.ORDER, o_paid, o_ref)
    # Mini-program orders start from a link the operator sent.
    mp = (orders.platform == V.WECHAT_PLATFORM) & (o_acct >= 0)
    log.add(
        o_cust[mp],
        o_acct[mp],
        V.CLICKED,
        np.maximum(o_paid[mp] - rng.integers(60, 1800, int(mp.sum())), created[o_cust[mp]] + 1),
    )
    rf = orders.refunded_at >= 0
    log.add(o_cust[rf], o_acct[rf], V.REFUND, orders.refunded_at[rf], o_ref[rf])

    ev_c, ev_a, ev_k, ev_t, ev_r = log.columns()
    keep = ev_t < end
    ev_c, ev_a, ev_k, ev_t, ev_r = ev_c[keep], ev_a[keep], ev_k[keep], ev_t[keep], ev_r[keep]
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, ev_c, ev_t)

    # Some customers delete the contact later (more of those who never bought); always after their last event.
    p_delete = np.where(n_orders > 0, 0.03, 0.08)
    roll = rng.random(n)
    room = end - last > DAY
    by_customer = room & (roll < p_delete)
    by_staff = room & ~by_customer & (roll > 0.99)
    ended = by_customer | by_staff
    ended_at = np.where(ended, last + (rng.random(n) * (end - last)).astype(np.int64), -1)
    ended_at = np.where(ended, np.maximum(ended_at, last + 1), -1)
    d_c = idx[ended]
    status = np.where(by_customer, 1, np.where(by_staff, 2, 0)).astype(np.int8)
    ev_c = np.concatenate([ev_c, d_c.astype(np.int32)])
    ev_a = np.concatenate([ev_a, primary[d_c]])
    ev_k = np.concatenate([ev_k, np.full(d_c.shape[0], V.FOLLOW_ENDED, dtype=np.int8)])
    ev_t = np.concatenate([ev_t, ended_at[d_c]])
    ev_r = np.concatenate([ev_r, status[d_c].astype(np.int32)])  # who ended it: vocab.ENDED_BY
    o = np.lexsort((ev_k, ev_c, ev_t))
    events = Events(customer=ev_c[o], account=ev_a[o], type=ev_k[o], occurred_at=ev_t[o], ref=ev_r[o])
    last_event = np.maximum(last, ended_at)

    f_c = np.concatenate([idx, idx[has_second]]).astype(np.int32)
    f_o = np.lexsort((np.r_[np.zeros(n), np.ones(int(has_second.sum()))], f_c))
    follows = Follows(
        customer=f_c[f_o],
        account=np.concatenate([primary, secondary[has_second]]).astype(np.int32)[f_o],
        since=np.concatenate([created, second_since[has_second]])[f_o],
        status=np.concatenate([status, np.zeros(int(has_second.sum()), dtype=np.int8)])[f_o],
        ended_at=np.concatenate([ended_at, np.full(int(has_second.sum()), -1, dtype=np.int64)])[f_o],
    )

    interacted = np.zeros(n, dtype=bool)
    inter = np.isin(events.type, V.INTERACTIONS) & (events.occurred_at > created[events.customer])
    interacted[events.customer[inter]] = True
    stage = _stages(events, orders, n)

    groups = list(V.TAG_GROUPS)
    offsets = np.cumsum([0] + [len(g[1]) for g in groups])
    tags = [(g, name) for g, (_, names) in enumerate(groups) for name in names]
    tag_parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]] = []

    def tag(customers: NDArray[np.int64], tag_index: NDArray[np.int64] | int, at: NDArray[np.int64]) -> None:
        tag_parts.append(
            (
                customers,
                np.broadcast_to(np.asarray(tag_index, dtype=np.int64), customers.shape).copy(),
                np.minimum(np.maximum(at, created[customers] + 60), end - 1),
            )
        )

    cap_age = (np.minimum(age, 3.0) * DAY).astype(np.int64)
    marked = idx[rng.random(n) < 0.95]
    tag(marked, offsets[2] + source[marked], created[marked] + 60)
    score = np.log(lam) + rng.normal(0, 0.6, n) + 1.5 * (n_orders > 0) + 0.5 * interacted
    rank = np.argsort(np.argsort(score, kind="stable"), kind="stable") / max(n - 1, 1)
    level = np.where(rank >= 0.75, 0, np.where(rank >= 0.35, 1, 2))
    marked = idx[rng.random(n) < 0.8]
    tag(
        marked,
        offsets[0] + level[marked],
        created[marked] + (rng.random(marked.shape[0]) * cap_age[marked]).astype(np.int64),
    )
    pains = idx[survey]
    w = np.asarray(V.PAIN_WEIGHTS)
    first = rng.choice(len(w), size=len(pains), p=w / w.sum())
    tag(pains, offsets[1] + first, survey_time[pains] + 60)
    two = rng.random(pains.shape[0]) < 0.4
    second_pain = (first + rng.integers(1, len(w), len(pains))) % len(w)
    tag(pains[two], offsets[1] + second_pain[two], survey_time[pains[two]] + 60)
    role_p = {0: [0.4, 0.1, 0.3, 0.1, 0.1], 1: [0.0, 0.55, 0.3, 0.1, 0.05], 2: [0.72, 0.0, 0.18, 0.06, 0.04]}
    has_role = rng.random(n) < 0.65
    for g, p in role_p.items():
        who = idx[has_role & (gender == g)]
        roles = rng.choice(5, size=who.shape[0], p=p)
        tag(
            who, offsets[3] + roles, created[who] + (rng.random(who.shape[0]) * cap_age[who]).astype(np.int64)
        )
    if campaign:
        in_campaign = (created >= campaign[0]) & (created < campaign[-1] + DAY)
        bought = np.zeros(n, dtype=bool)
        bought[o_cust[(o_paid >= campaign[0]) & (o_paid < campaign[-1] + DAY)]] = True
        who = idx[in_campaign | bought]
        tag(who, offsets[4], np.maximum(created[who], campaign[0]) + 60)
    if live_day >= 0:
        watched = np.zeros(n, dtype=bool)
        on_day = (
            (events.type == V.VIEWED_LIVE)
            & (events.occurred_at >= live_day)
            & (events.occurred_at < live_day + DAY)
        )
        watched[events.customer[on_day]] = True
        who = idx[watched]
        tag(who, offsets[4] + 1, np.maximum(created[who], live_day + 19 * 3600))
    joined = events.type == V.JOINED_GROUP
    tag(events.customer[joined].astype(np.int64), offsets[4] + 2, events.occurred_at[joined] + 60)

    t_c = np.concatenate([p[0] for p in tag_parts]).astype(np.int32)
    t_t = np.concatenate([p[1] for p in tag_parts]).astype(np.int16)
    t_at = np.concatenate([p[2] for p in tag_parts])
    o = np.lexsort((t_t, t_c))
    t_c, t_t, t_at = t_c[o], t_t[o], t_at[o]
    unique = np.r_[True, (np.diff(t_c) != 0) | (np.diff(t_t) != 0)]
    customer_tags = CustomerTags(customer=t_c[unique], tag=t_t[unique], created_at=t_at[unique])

    consent = np.zeros(n, dtype=bool)
    consent[events.customer[joined]] = True
    consent |= survey
    return Activity(
        events=events,
        follows=follows,
        customer_tags=customer_tags,
        stage=stage,
        consent_marketing=consent,
        last_event_at=np.maximum(last_event, created),
        tag_groups=groups,
        tags=tags,
    )
