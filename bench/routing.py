"""Routing decision for a new add over a pool of 10,000 accounts.

Measures, in one run: the heap router's decision (choose + commit in memory), the same decision by a
linear scan over every account (the baseline), and decision + database reservation through
`route_new_contact` on a migrated SQLite file (one transaction per add). Prints p50/p99 of each,
CPU time next to wall time (the machine is shared), and `p99_ms=N` (heap decision) on the last line.

    python bench/routing.py [--quick] [--accounts 10000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from siyu.channels.models import RoutingRule
from siyu.channels.routing import PoolRouter, Slot, linear_choose


def _slots(n: int, rng: random.Random) -> list[Slot]:
    return [
        Slot(
            account_id=i + 1,
            load=rng.randint(0, 2400),
            soft_cap=2500,
            hard_cap=5000,
            day_adds=rng.randint(0, 50),
            daily_cap=200,
            active=rng.random() > 0.05,
            is_backup=i % 50 == 0,
            regions=frozenset({rng.choice(["gd", "sh", "bj", "zj"])}),
        )
        for i in range(n)
    ]


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_memory(
    n: int, decisions: int, linear_decisions: int, rule: RoutingRule
) -> tuple[list[float], list[float]]:
    """Per-decision milliseconds for the heap router and for the linear scan, same pool and stream."""
    rng = random.Random(7)
    base = _slots(n, rng)
    router = PoolRouter.build(
        rule, date(2026, 11, 23), [Slot(**{f: getattr(s, f) for f in s.__slots__}) for s in base]
    )
    router.choose(region="gd")  # build the heaps outside the timed loop, as a cached router would be
    heap_ms = []
    for k in range(decisions):
        region = "gd" if k % 2 else "sh"
        t0 = time.perf_counter_ns()
        slot = router.choose(region=region)
        if slot is not None:
            router.commit(slot)
        heap_ms.append((time.perf_counter_ns() - t0) / 1e6)
    linear = [Slot(**{f: getattr(s, f) for f in s.__slots__}) for s in base]
    lin_router = PoolRouter.build(rule, date(2026, 11, 23), linear)
    lin_ms = []
    for k in range(linear_decisions):
        region = "gd" if k % 2 else "sh"
        t0 = time.perf_counter_ns()
        slot = linear_choose(rule, linear, region=region)
        if slot is not None:
            lin_router.commit(slot)
        lin_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return heap_ms, lin_ms


def bench_db(n: int, adds: int) -> tuple[list[float], list[float]]:
    """Per-add milliseconds on SQLite of route_new_contact (cached router + conditional UPDATE), without
    and with the commit that ends the add's transaction."""
    from sqlalchemy import insert

    from siyu.accounts.models import Account, AccountKind
    from siyu.channels import service
    from siyu.channels.schemas import MemberIn, PoolIn
    from siyu.kit.db import make_engine, make_sessionmaker
    from siyu.kit.migrate import upgrade
    from siyu.tenancy import service as identity

    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        now = datetime(2026, 11, 23, 4, tzinfo=UTC)
        with factory() as db:
            org = identity.create_organization(db, "Bench", "bench")
            db.execute(
                insert(Account),
                [
                    {
                        "org_id": org.id,
                        "kind": AccountKind.wecom_member,
                        "external_id": f"u{i}",
                        "name": f"u{i}",
                        "friend_count": rng.randint(0, 2400),
                        "soft_cap": 2500,
                        "hard_cap": 5000,
                        "created_at": now - timedelta(days=60),
                    }
                    for i in range(n)
                ],
            )
            ids = list(db.scalars(Account.__table__.select().with_only_columns(Account.id)))
            pool = service.create_pool(
                db,
                org.id,
                PoolIn(
                    name="bench",
                    rule=RoutingRule.least_loaded,
                    warmup=[],
                    members=[MemberIn(account_id=i, is_backup=i % 50 == 0) for i in ids],
                ),
            )
            db.commit()
            org_id, pool_id = org.id, pool.id
        with factory() as db:  # warm the router cache (the load is paid once per TTL, not per add)
            service.route_new_contact(db, org_id, pool_id, now=now)
            db.commit()
        reserve_ms, commit_ms = [], []
        for _ in range(adds):
            with factory() as db:
                t0 = time.perf_counter_ns()
                service.route_new_contact(db, org_id, pool_id, now=now)
                t1 = time.perf_counter_ns()
                db.commit()
                t2 = time.perf_counter_ns()
                reserve_ms.append((t1 - t0) / 1e6)
                commit_ms.append((t2 - t0) / 1e6)
        engine.dispose()
    return reserve_ms, commit_ms


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (under 30 s)")
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()
    decisions, linear_n, db_adds = (5_000, 150, 150) if args.quick else (50_000, 2_000, 1_000)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for rule in (RoutingRule.round_robin, RoutingRule.region):
        heap_ms, lin_ms = bench_memory(args.accounts, decisions, linear_n, rule)
        print(
            f"{rule.value:>13}: heap p50={_pct(heap_ms, 0.5):.4f} ms p99={_pct(heap_ms, 0.99):.4f} ms | "
            f"linear scan p50={_pct(lin_ms, 0.5):.3f} ms p99={_pct(lin_ms, 0.99):.3f} ms"
        )
    heap_ms, lin_ms = bench_memory(args.accounts, decisions, linear_n, RoutingRule.least_loaded)
    db_ms, db_commit_ms = bench_db(args.accounts, db_adds)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    p99 = _pct(heap_ms, 0.99)
    print(f"accounts={args.accounts} decisions={decisions} (linear {linear_n}) db_adds={db_adds}")
    print(
        f" least_loaded: heap p50={_pct(heap_ms, 0.5):.4f} ms p99={p99:.4f} ms mean={statistics.fmean(heap_ms):.4f} ms"
    )
    print(f" linear scan (baseline): p50={_pct(lin_ms, 0.5):.3f} ms p99={_pct(lin_ms, 0.99):.3f} ms")
    print(
        f" decision+reservation (SQLite, in transaction): p50={_pct(db_ms, 0.5):.3f} ms p99={_pct(db_ms, 0.99):.3f} ms"
    )
    print(
        f" decision+reservation+commit (SQLite): p50={_pct(db_commit_ms, 0.5):.3f} ms "
        f"p99={_pct(db_commit_ms, 0.99):.3f} ms"
    )
    print(f"decision_plus_reservation_p99_ms={_pct(db_ms, 0.99):.3f}")
    print(f"ratio_vs_linear_scan={_pct(lin_ms, 0.99) / p99:.1f}")
    print(f"wall_s={wall:.1f} cpu_s={cpu:.1f}")
    print(f"p99_ms={p99:.4f}")


if __name__ == "__main__":
    main()
