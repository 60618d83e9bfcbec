"""Benchmark: our portable 4-step funnel SQL on DuckDB versus chdb's native windowFunnel on the same data.

Run: python bench/funnel.py [--quick] [--mode MODE]
Generates 10M events over 1M customers (1M over 100k with --quick), seeded and vectorised, loads
them into DuckDB and chdb (load time reported, not measured), checks that both engines agree on
the per-step counts, then times the query. Last line: ratio_vs_chdb=ours/chdb (lower is better).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta

import numpy as np

from siyu.analytics.engines import ChdbEngine, DuckDBEngine
from siyu.analytics.funnels import FunnelQuery, Step, run_funnel, window_funnel_reference_sql

EVENT_TYPES = np.array(
    ["message_received", "friend_added", "joined_group", "content_read", "coupon_claimed", "order_paid",
     "message_sent", "tag_added"]
)
# Weights make later funnel steps rarer, as in real traffic.
EVENT_WEIGHTS = np.array([0.25, 0.10, 0.08, 0.20, 0.07, 0.05, 0.15, 0.10])
SOURCES = np.array(["douyin", "taobao", "jd", "offline", "referral", "zhihu"], dtype=object)
START = np.datetime64("2024-01-01T00:00:00", "us")
DAYS = 90


def generate(n_events: int, n_customers: int, seed: int = 7) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Seeded synthetic events and customers as column arrays matching siyu.analytics.schema."""
    rng = np.random.default_rng(seed)
    customer = rng.integers(0, n_customers, n_events, dtype=np.int64)
    types = EVENT_TYPES[rng.choice(len(EVENT_TYPES), n_events, p=EVENT_WEIGHTS / EVENT_WEIGHTS.sum())]
    # Whole seconds, as event sources report them: ties at one instant happen and must be handled.
    seconds = rng.integers(0, DAYS * 86400, n_events, dtype=np.int64)
    props = np.array(['{}', '{"plan":"pro"}', '{"plan":"basic"}'], dtype=object)[rng.choice(3, n_events, p=[0.6, 0.2, 0.2])]
    events = {
        "org_id": np.ones(n_events, dtype=np.int64),
        "event_id": np.arange(n_events, dtype=np.int64),
        "customer_id": customer,
        "event_type": types.astype(object),
        "occurred_at": START + (seconds * 1_000_000).astype("timedelta64[us]"),
        "account_id": rng.integers(1, 200, n_events, dtype=np.int64),
        "source": SOURCES[rng.integers(0, len(SOURCES), n_events)],
        "properties": props,
    }
    cust_ids = np.arange(n_customers, dtype=np.int64)
    customers = {
        "org_id": np.ones(n_customers, dtype=np.int64),
        "customer_id": cust_ids,
        "source": SOURCES[rng.integers(0, len(SOURCES), n_customers)],
        "channel": np.array(["qr_a", "qr_b", None], dtype=object)[rng.integers(0, 3, n_customers)],
        "stage": np.array(["new", "retained", "converted"], dtype=object)[rng.integers(0, 3, n_customers)],
        "account_id": rng.integers(1, 200, n_customers, dtype=np.int64),
        "operator_id": rng.integers(1, 20, n_customers, dtype=np.int64),
        "first_seen_at": np.full(n_customers, START),
    }
    return events, customers


def load_both(n_events: int, n_customers: int) -> tuple[DuckDBEngine, ChdbEngine]:
    """Generate data and load it into fresh DuckDB and chdb engines, printing the timings."""
    t0 = time.perf_counter()
    events, customers = generate(n_events, n_customers)
    print(f"generate: {n_events:,} events, {n_customers:,} customers in {time.perf_counter() - t0:.2f}s")
    duck, ch = DuckDBEngine(), ChdbEngine()
    for name, engine in (("duckdb", duck), ("chdb", ch)):
        t0 = time.perf_counter()
        engine.create_schema()
        engine.load("events", events)
        engine.load("customers", customers)
        print(f"load {name}: {time.perf_counter() - t0:.2f}s (not part of the measured query time)")
    return duck, ch


def best_of(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median wall time of `repeat` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Run the funnel benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M events / 100k customers")
    parser.add_argument("--mode", default="default", help="default, strict_order, strict_deduplication, strict_increase")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n_events, n_customers = (1_000_000, 100_000) if args.quick else (10_000_000, 1_000_000)
    duck, ch = load_both(n_events, n_customers)

    q = FunnelQuery(
        org_id=1,
        steps=[Step("friend_added"), Step("joined_group"), Step("coupon_claimed"), Step("order_paid", {"plan": "pro"})],
        window=timedelta(days=14),
        modes=frozenset() if args.mode == "default" else frozenset({args.mode}),  # type: ignore[arg-type]
    )
    n = len(q.steps)
    baseline_sql = (
        f"SELECT {', '.join(f'countIf(level >= {k})' for k in range(1, n + 1))} "
        f"FROM ({window_funnel_reference_sql(q)})"
    )
    ours = run_funnel(duck, q)[0]
    ref = ch.query_native(baseline_sql)[0]
    ours_counts = [s.count for s in ours.steps]
    print(f"steps: {[s.event_type for s in q.steps]} mode={args.mode} window=14d")
    print(f"ours (duckdb) counts: {ours_counts}")
    print(f"windowFunnel (chdb) counts: {list(ref)}")
    print(f"medians (s): {[s.median_seconds_from_previous for s in ours.steps]}")
    if ours_counts != [int(v) for v in ref]:
        print("MISMATCH between our funnel and windowFunnel", file=sys.stderr)
        sys.exit(1)

    t_ours = best_of(lambda: run_funnel(duck, q), args.repeat)
    t_chdb = best_of(lambda: ch.query_native(baseline_sql), args.repeat)
    t_ours_ch = best_of(lambda: run_funnel(ch, q), 1)
    print(f"ours_duckdb_s={t_ours:.3f}")
    print(f"chdb_windowFunnel_s={t_chdb:.3f}")
    print(f"ours_on_chdb_s={t_ours_ch:.3f} (same SQL transpiled; informative)")
    duck.close()
    ch.close()
    print(f"ratio_vs_chdb={t_ours / t_chdb:.3f}")


if __name__ == "__main__":
    main()
