"""Benchmark: incremental projection of new events into DuckDB versus a full rebuild of the same data.

Run: python bench/projection.py [--quick] [--postgres URL]
Builds a migrated SQLite operational database (or uses an empty PostgreSQL database given by URL)
with 20,000 customers, 100,000 events already projected and orders; then inserts 100,000 new events
(20,000 with --quick) and times one incremental refresh, then a full rebuild of everything (the
baseline). Prints wall and CPU time of both; ``ratio_vs_full_rebuild`` = rebuild / incremental
wall time (higher is better); the last line is ``events_per_s`` of the incremental refresh.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert
from sqlalchemy.orm import Session

from siyu.analytics.projection import Projection
from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.events.models import Event
from siyu.kit.bulk import chunked, driver_datetime, executemany_raw
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.migrate import upgrade
from siyu.tenancy import service as identity

TYPES = np.array(
    ["customer_added", "message_received", "message_sent", "link_clicked", "order_paid"], dtype=object
)
START = datetime(2026, 1, 1, tzinfo=UTC)


def add_events(
    db: Session, org_id: int, customer_ids: np.ndarray, n: int, seed: int, key_prefix: str
) -> None:
    """Insert n synthetic events straight through the driver (seeded)."""
    rng = np.random.default_rng(seed)
    to_db = driver_datetime(db)
    cust = customer_ids[rng.integers(0, len(customer_ids), n)]
    kinds = TYPES[rng.integers(0, len(TYPES), n)]
    secs = rng.integers(0, 90 * 86_400, n)
    props = [json.dumps({"plan": "pro"}), json.dumps({})]
    rows = [
        {
            "org_id": org_id,
            "customer_id": int(c),
            "account_id": None,
            "type": k,
            "occurred_at": to_db(START + timedelta(seconds=int(s))),
            "properties": props[i % 2],
            "source": "douyin",
            "idempotency_key": f"{key_prefix}{i}",
            "received_at": to_db(START),
            "backfill": False,
        }
        for i, (c, k, s) in enumerate(zip(cust.tolist(), kinds.tolist(), secs.tolist(), strict=True))
    ]
    table = Event.__table__
    for part in chunked(rows, 20_000):
        executemany_raw(db, insert(table), list(part))
    db.commit()


def timed(fn):  # type: ignore[no-untyped-def]
    """Run fn, returning (result, wall seconds, CPU seconds of this process)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> int:
    """Set up, measure and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="20,000 new events instead of 100,000")
    ap.add_argument("--postgres", help="an EMPTY PostgreSQL database URL to use instead of SQLite")
    args = ap.parse_args()
    new_events = 20_000 if args.quick else 100_000
    base_events, n_customers = (20_000, 5_000) if args.quick else (100_000, 20_000)

    with tempfile.TemporaryDirectory(prefix="siyu-bench-proj-") as tmp:
        url = args.postgres or f"sqlite:///{Path(tmp) / 'siyu.db'}"
        upgrade(url)
        engine = make_engine(url)
        db = make_sessionmaker(engine)()
        org = identity.create_organization(db, "Bench", f"bench-{int(time.time())}")
        now = START
        db.execute(
            insert(Customer),
            [
                {
                    "org_id": org.id,
                    "source": ["douyin", "taobao", "wechat"][i % 3],
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n_customers)
            ],
        )
        db.commit()
        ids = np.array(
            sorted(
                db.scalars(
                    Customer.__table__.select()
                    .with_only_columns(Customer.id)
                    .where(Customer.org_id == org.id)
                )
            ),
            dtype=np.int64,
        )
        db.execute(
            insert(Order),
            [
                {
                    "org_id": org.id,
                    "customer_id": int(c),
                    "platform": "p",
                    "external_id": str(i),
                    "amount_fen": 1_000 + i,
                    "paid_at": now + timedelta(days=i % 90),
                }
                for i, c in enumerate(ids[: n_customers // 2].tolist())
            ],
        )
        db.commit()
        add_events(db, org.id, ids, base_events, seed=1, key_prefix="base-")

        proj = Projection(engine, Path(tmp) / "analytics.duckdb", min_interval_seconds=0)
        _, w0, _ = timed(proj.rebuild)
        print(f"setup: {n_customers} customers, {base_events} events projected in {w0:.2f} s")
        add_events(db, org.id, ids, new_events, seed=2, key_prefix="new-")

        rep, w_inc, c_inc = timed(proj.refresh)
        assert rep.events == new_events, rep
        noop, w_noop, c_noop = timed(proj.refresh)
        assert not noop.changed, noop
        _, w_full, c_full = timed(proj.rebuild)
        total = proj.query("SELECT count(*) FROM events", refresh=False)[0][0]
        assert total == base_events + new_events, total
        proj.close()
        db.close()
        engine.dispose()

    print(f"backend: {'postgresql' if args.postgres else 'sqlite'}")
    print(f"refresh with nothing new: wall {w_noop * 1000:.1f} ms, cpu {c_noop * 1000:.1f} ms")
    print(f"incremental ({new_events} new events): wall {w_inc:.3f} s, cpu {c_inc:.3f} s")
    print(
        f"full rebuild ({base_events + new_events} events, {n_customers} customers): wall {w_full:.3f} s, cpu {c_full:.3f} s"
    )
    print(f"ratio_vs_full_rebuild={w_full / w_inc:.2f}")
    print(f"events_per_s={new_events / w_inc:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
