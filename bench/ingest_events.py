"""Benchmark: sustained event ingestion through the HTTP batch API into SQLite.

Starts the real app under uvicorn in a subprocess on a loopback port against a fresh SQLite file,
creates a tenant with an API token and 2,000 customers, then POSTs batches of 1,000 events with httpx
for ~10 s (--quick: ~3 s) and reports the sustained rate. Baseline in the same run: the single-event
endpoint, one request per event. Target: at least 20,000 events/s.

    python bench/ingest_events.py [--quick] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from benchkit import cpu_of, free_port, stop, wait_http  # bench/ is on sys.path

from siyu.customers.models import Customer
from siyu.kit.db import make_engine, make_sessionmaker, transaction
from siyu.kit.migrate import upgrade
from siyu.tenancy import service as identity
from siyu.tenancy.models import Role

SERVER = """
import sys, uvicorn
from siyu.app import create_app
from siyu.kit.settings import Settings
url, port, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = create_app(Settings(database_url=url, data_dir=data, secret_key="bench-secret"))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""
TYPES = ["message.received", "message.sent", "moments.liked", "live.viewed", "content.read", "order.paid"]


def setup(url: str, customers: int) -> tuple[str, list[int]]:
    """Create the tenant, an admin API token and customers; returns (token, customer ids)."""
    upgrade(url)
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as db:
        org = identity.create_organization(db, "Bench", "bench")
        user = identity.create_user(db, org.id, "admin@bench.test", "Admin", "password123", Role.admin)
        token = identity.issue_api_token(db, user, "bench").plaintext
        db.add_all([Customer(org_id=org.id, name=f"客户{i}") for i in range(customers)])
        db.flush()
        ids = [c for (c,) in db.query(Customer.id).all()]
    engine.dispose()
    return token, ids


def make_event(rng: random.Random, key: str, customer_ids: list[int], t0: datetime) -> dict[str, object]:
    """One realistic event (customer, type, time in the last days, a few properties)."""
    return {
        "type": rng.choice(TYPES),
        "customer_id": rng.choice(customer_ids),
        "occurred_at": (t0 - timedelta(seconds=rng.randrange(7 * 86400))).isoformat(),
        "properties": {"channel": rng.choice(["wecom", "douyin", "taobao"]), "value": rng.randrange(1000)},
        "source": "bench",
        "idempotency_key": key,
    }


def main() -> None:
    """Run the batch load and the single-event baseline; the last line is events_per_s=N."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~3 s of load (<30 s in all)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument(
        "--connections", type=int, default=2, help="concurrent client connections (default 2)"
    )
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    baseline_seconds = 1.0 if args.quick else 3.0
    rng = random.Random(7)
    t0 = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="siyu-bench-") as tmpdir:
        url = f"sqlite:///{Path(tmpdir) / 'events.db'}"
        token, customer_ids = setup(url, 2000)
        # Bodies are serialized before the clock starts so the client's cost stays out of the measurement.
        n_batches = int(seconds * 40) + 10
        bodies = [
            json.dumps(
                {"events": [make_event(rng, f"b{b}-{i}", customer_ids, t0) for i in range(1000)]}
            ).encode()
            for b in range(n_batches)
        ]
        singles = [json.dumps(make_event(rng, f"s{i}", customer_ids, t0)).encode() for i in range(5000)]
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-c", SERVER, url, str(port), tmpdir], env=env)
        try:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
                wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120, proc=proc)
                for body in bodies[:2]:  # warm-up: imports, first compiled statements, page cache
                    client.post("/api/v1/events/batch", content=body).raise_for_status()
                # Several connections, as an ingestion client would use, so the server never waits for the
                # client's round trip; SQLite still serialises the writes.
                queue = iter(bodies[2:])
                lock = threading.Lock()
                totals = {"sent": 0, "inserted": 0}
                server_cpu = cpu_of(proc.pid)
                started = time.perf_counter()

                def sender() -> None:
                    with httpx.Client(
                        base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
                    ) as conn:
                        while time.perf_counter() - started < seconds:
                            with lock:
                                body = next(queue, None)
                            if body is None:
                                return
                            response = conn.post("/api/v1/events/batch", content=body)
                            response.raise_for_status()
                            with lock:
                                totals["inserted"] += response.json()["inserted"]
                                totals["sent"] += 1000

                threads = [threading.Thread(target=sender) for _ in range(args.connections)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                batch_s = time.perf_counter() - started
                sent, inserted = totals["sent"], totals["inserted"]
                server_cpu = cpu_of(proc.pid) - server_cpu
                if inserted != sent:
                    raise SystemExit(f"expected {sent} inserted, server reported {inserted}")
                batch_rate = sent / batch_s
                print(
                    f"batch API: {sent:,} events in {batch_s:.2f} s ({sent // 1000} requests of 1,000); "
                    f"server used {server_cpu:.2f} s CPU = {sent / server_cpu:,.0f} events per server CPU-second; "
                    f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
                )

                done = 0
                started = time.perf_counter()
                for body in singles:
                    client.post("/api/v1/events", content=body).raise_for_status()
                    done += 1
                    if time.perf_counter() - started >= baseline_seconds:
                        break
                single_rate = done / (time.perf_counter() - started)
                print(
                    f"baseline single_event: {done:,} events in {baseline_seconds:.0f} s = {single_rate:,.0f} events/s"
                )
        finally:
            stop(proc)
    # After the server has stopped: the headline is the last line of stdout and stderr together.
    print(f"target: >= 20,000 events/s -> {'met' if batch_rate >= 20_000 else 'NOT met'}")
    print(f"ratio_vs_single_event={batch_rate / single_rate:.1f}")
    print(f"events_per_s={batch_rate:.0f}")


if __name__ == "__main__":
    main()
