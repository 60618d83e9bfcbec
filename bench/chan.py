"""Benchmark: the channels and accounts pages and APIs, commerce metrics, and the projection's refresh.

Times the requests of ``page_scale.probes`` that issue 14 left over 300 ms at a million customers
(``/channels``, ``/accounts``, the channel health, daily report and accounts APIs, commerce metrics)
the way ``page_scale`` does (the real app on loopback, server time, median of five after a warm-up),
then a refresh of the analytics projection when nothing changed, as a request pays it (median of five).

    python bench/chan.py --quick                 # 100,000 customers on SQLite (built once, cached)
    python bench/chan.py                         # 1,000,000 customers (the first build is long)
    python bench/chan.py --url sqlite:////tmp/x.db --data-dir /tmp/x.var   # a copy of a built one
Last line: worst_p50_ms=N (the slowest median of these requests).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import page_scale

from siyu.analytics.projection import (
    default_path,
    projection_for,
)
from siyu.app import create_app
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.settings import Settings
from siyu.tenancy import service as identity

NAMES = (
    "accounts",
    "channels",
    "api accounts",
    "api channel health",
    "api channel daily",
    "api analytics commerce",
    "analytics/funnel",
)


def _median_ms(fn: object, repeat: int = page_scale.REPEAT) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(url: str, data_dir: Path) -> float:
    """Time the probes and the no-change refresh; returns the slowest probe median (ms)."""
    now = datetime.now(UTC)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as db:
        user = identity.authenticate(db, f"admin@{page_scale.ORG}.example.com", page_scale.ADMIN_PASSWORD)
        if user is None:
            raise SystemExit("the database has no bench admin")
        token = identity.issue_api_token(db, user, "bench-chan").plaintext
        email = user.email
        db.commit()
    sample = page_scale._samples(engine)
    settings = Settings(data_dir=data_dir, database_url=url, secret_key="bench-secret-key")
    timer = page_scale.ServerTimer(create_app(settings, engine=engine))
    server, thread, base = page_scale._serve(timer)
    worst = 0.0
    try:
        with (
            httpx.Client(base_url=base, timeout=600) as console,
            httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {token}"}) as api,
        ):
            page_scale._login(console, email)
            for probe in page_scale.probes(sample, now):
                if probe.name not in NAMES:
                    continue
                client = api if probe.api else console
                times: list[float] = []
                for i in range(page_scale.REPEAT + 1):
                    rid = f"{probe.name}#{i}"
                    headers = {"x-bench-id": rid}
                    if probe.body is not None:
                        r = client.post(probe.path, json=probe.body, headers=headers)
                    else:
                        r = client.get(probe.path, headers=headers)
                    if r.status_code != 200:
                        raise SystemExit(f"{probe.name}: HTTP {r.status_code} {r.text[:300]}")
                    if i:
                        times.append(timer.ms.pop(rid))
                p50 = statistics.median(times)
                if probe.name != "analytics/funnel":  # only there to warm the projection
                    worst = max(worst, p50)
                print(f"    {probe.name:<28} p50={p50:8.1f} ms  max={max(times):8.1f} ms", flush=True)
        proj = projection_for(engine, default_path(data_dir))
        print(
            f"    {'refresh, nothing changed':<28} p50={_median_ms(lambda: proj.refresh(force=True)):8.1f} ms"
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()
    return worst


def main() -> None:
    """Build or reuse the brand (or take the one given), time the requests, print the worst median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 customers")
    parser.add_argument("--url", default="", help="an operational database already built by page_scale")
    parser.add_argument("--data-dir", type=Path, default=None, help="its data dir (analytics.duckdb)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "siyu-bench")
    args = parser.parse_args()
    if args.url:
        if args.data_dir is None:
            parser.error("--url needs --data-dir")
        url, data_dir = args.url, args.data_dir
    else:
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        url, data_dir = page_scale.sqlite_database(100_000 if args.quick else 1_000_000, args.cache_dir, end)
    worst = run(url, data_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"worst_p50_ms={worst:.0f}", flush=True)


if __name__ == "__main__":
    main()
