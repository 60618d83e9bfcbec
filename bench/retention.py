"""Benchmark: our portable weekly retention SQL on DuckDB versus chdb's native retention() on the same data.

Run: python bench/retention.py [--quick]
Same data as bench/funnel.py (10M events over 1M customers; 1M/100k with --quick). First-time
weekly cohorts (follow_started), 8 weekly periods of return (message_received), "on" semantics.
Both sides must agree on every cohort before timing. Last line: ratio_vs_chdb=ours/chdb.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from funnel import load_both, timed

from siyu.analytics.funnels import Step
from siyu.analytics.retention import Period, RetentionQuery, period_start, run_retention


def main() -> None:
    """Run the retention benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M events / 100k customers")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n_events, n_customers = (1_000_000, 100_000) if args.quick else (10_000_000, 1_000_000)
    # A file-backed DuckDB, as the projection uses and as bench/funnel.py measures (compressed columns).
    tmp = tempfile.TemporaryDirectory(prefix="siyu-retention-")
    duck, ch = load_both(n_events, n_customers, duckdb_dir=tmp.name)

    q = RetentionQuery(1, Step("follow_started"), Step("message_received"), period=Period.week, periods=8)
    conds = ", ".join(["st AND p = co.c", *(f"rt AND p - co.c = {n}" for n in range(q.periods + 1))])
    baseline_sql = (
        "WITH ev AS (SELECT customer_id AS cid, intDiv(toInt64(toMonday(toDate(occurred_at))) + 3, 7) AS p, "
        "event_type = 'follow_started' AS st, event_type = 'message_received' AS rt FROM events "
        "WHERE org_id = 1 AND event_type IN ('follow_started', 'message_received')), "
        "co AS (SELECT cid, minIf(p, st) AS c FROM ev GROUP BY cid HAVING countIf(st) > 0) "
        f"SELECT c, sumForEach(r) FROM (SELECT ev.cid, co.c AS c, retention({conds}) AS r "
        "FROM ev INNER JOIN co ON ev.cid = co.cid GROUP BY ev.cid, co.c) GROUP BY c"
    )
    ours = {(c.cohort_start, c.size, *c.retained) for c in run_retention(duck, q)}
    ref = {(period_start(q.period, int(c)), *map(int, r)) for c, r in ch.query_native(baseline_sql)}
    print(f"cohorts: {len(ours)}; first: {sorted(ours)[0]}")
    if ours != ref:
        print("MISMATCH between our retention and chdb retention()", file=sys.stderr)
        sys.exit(1)

    t_ours, cpu_ours = timed(lambda: run_retention(duck, q), args.repeat)
    t_chdb, cpu_chdb = timed(lambda: ch.query_native(baseline_sql), args.repeat)
    t_ours_ch, _ = timed(lambda: run_retention(ch, q), 1)
    print(f"ours_duckdb_s={t_ours:.3f} (cpu {cpu_ours:.3f})")
    print(f"chdb_retention_s={t_chdb:.3f} (cpu {cpu_chdb:.3f})")
    print(f"ours_on_chdb_s={t_ours_ch:.3f} (same SQL transpiled; informative)")
    print(f"cpu_ratio_vs_chdb={cpu_ours / cpu_chdb:.3f}")
    duck.close()
    ch.close()
    tmp.cleanup()
    print(f"ratio_vs_chdb={t_ours / t_chdb:.3f}")


if __name__ == "__main__":
    main()
