"""Benchmark: every console page and every list and analytics API at a small and a large brand.

Loads the demo brand (``generate_world`` + ``load_world``, the bulk path ``siyu demo`` uses) at two
sizes — 10,000 and 1,000,000 customers (``--quick``: 10,000 and 100,000) — into SQLite, and into
PostgreSQL too when ``--pg-url`` is given (one database per size: ``<name>_<size>``). After a load it
does what the worker does after one (``siyu.analytics.tasks.after_bulk_load``: statistics, the
analytics projection, CLV), so no timed request pays for them. Then it serves the real app on
loopback, logs in through the console's login form (pages) and with an API token (APIs), and times
each request five times (after one untimed warm-up): the figure is the server's own time from
request to last body byte, taken by an ASGI wrapper, so the client's parsing is not counted.

Baseline, measured in the same run: the same requests at the small brand; ``growth`` is the large
brand's median over the small one's (the goal: at most 10x, and at most 300 ms at 1M customers).

    python bench/page_scale.py --quick                      # 10k and 100k on SQLite
    python bench/page_scale.py                              # 10k and 1M (the first 1M build is long)
    python bench/page_scale.py --pg-url postgresql+psycopg://postgres@127.0.0.1/siyu_bench
    python bench/page_scale.py --url sqlite:////tmp/copy.db --data-dir /tmp/copy.var --only rfm,roi
``--url``/``--data-dir`` time an already loaded database (migrated to head first; use a copy, the
projection writes to its data dir) as the largest size; ``--only`` times the probes whose name holds
one of the given words. The ``first`` column is each probe's warm-up request at the largest size: the
cost after new data, before analytics results are reused (the very first one also opens the projection).
Databases are cached under the temp dir (SQLite) or kept (PostgreSQL), keyed by size, seed, day and
the migrations' and loader's fingerprint. Last line: worst_p50_ms=N (slowest median at the largest size).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
from sqlalchemy import Engine, create_engine, make_url, select, text

from siyu.app import create_app
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.migrate import MIGRATIONS_DIR, upgrade
from siyu.kit.settings import Settings

ORG = "demo"
ADMIN_PASSWORD = "bench-admin"
REPEAT = 5
SEED = 42
_SRC = Path(__file__).resolve().parent.parent / "src" / "siyu"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _fingerprint(day: str) -> str:
    """Migrations, the loader and the day the world ends: a changed one means a rebuild."""
    digest = hashlib.sha256(day.encode())
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        digest.update(path.read_bytes())
    for name in ("loader.py", "world.py", "activity.py"):
        digest.update((_SRC / "demo" / name).read_bytes())
    return digest.hexdigest()[:10]


# -- building ------------------------------------------------------------------------------------


def _progress(started: float) -> Callable[[str, int, int], None]:
    last: dict[str, float] = {}

    def report(step: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last.get(step, 0.0) > 5:
            last[step] = now
            _say(f"  {step}: {done:,}/{total:,} rows at {now - started:.0f}s")

    return report


def _load(url: str, customers: int, end: datetime) -> None:
    """Migrate, load the demo brand, and run what the worker runs after a bulk load."""
    from siyu.demo import generate_world
    from siyu.demo.loader import load_world

    started = time.perf_counter()
    upgrade(url)
    world = generate_world(customers=customers, seed=SEED, end=end)
    _say(f"  generated {customers:,} customers in {time.perf_counter() - started:.1f}s; loading ...")
    engine = make_engine(url)
    summary = load_world(
        engine, world, org_slug=ORG, admin_password=ADMIN_PASSWORD, progress=_progress(started)
    )
    _say(f"  loaded in {summary.seconds:.1f}s: {', '.join(f'{n:,} {k}' for k, n in summary.counts.items())}")
    engine.dispose()


def _post_load(url: str, data_dir: Path) -> None:
    from siyu.analytics.tasks import after_bulk_load

    engine = make_engine(url)
    settings = Settings(data_dir=data_dir, database_url=url, secret_key="bench-secret-key")
    with engine.connect() as conn:
        org_id = conn.scalar(text("SELECT id FROM organizations WHERE slug = :s"), {"s": ORG})
    report = after_bulk_load(engine, settings, int(org_id))
    _say(f"  after the load (the worker's job): {report}")
    engine.dispose()


def sqlite_database(customers: int, cache: Path, end: datetime) -> tuple[str, Path]:
    """The cached SQLite file for this size (built when missing) and its data dir."""
    key = f"pages_{customers}_{SEED}_{_fingerprint(end.date().isoformat())}"
    path = cache / f"{key}.db"
    data_dir = cache / f"{key}.var"
    if path.exists() and (data_dir / "analytics.duckdb").exists():
        _say(f"reusing {path}")
        return f"sqlite:///{path}", data_dir
    cache.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    for leftover in cache.glob(building.name + "*"):
        leftover.unlink()
    _say(f"building {customers:,} customers on SQLite ...")
    _load(f"sqlite:///{building}", customers, end)
    building.rename(path)
    _post_load(f"sqlite:///{path}", data_dir)
    return f"sqlite:///{path}", data_dir


def pg_database(base_url: str, customers: int, cache: Path, end: datetime) -> tuple[str, Path]:
    """A PostgreSQL database for this size (``<name>_<size>``), loaded when missing or stale."""
    base = make_url(base_url)
    name = f"{base.database}_{customers}"
    url = base.set(database=name).render_as_string(hide_password=False)
    key = _fingerprint(end.date().isoformat())
    data_dir = cache / f"pg_{name}_{key}.var"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
    fresh = False
    if exists:
        probe = create_engine(url)
        with probe.connect() as conn:
            stamp = conn.execute(
                text("SELECT obj_description('organizations'::regclass)")
            ).scalar_one_or_none()
        probe.dispose()
        fresh = stamp == key and (data_dir / "analytics.duckdb").exists()
    if fresh:
        _say(f"reusing PostgreSQL database {name}")
        admin.dispose()
        return url, data_dir
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    _say(f"building {customers:,} customers on PostgreSQL ({name}) ...")
    _load(url, customers, end)
    _post_load(url, data_dir)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"COMMENT ON TABLE organizations IS '{key}'"))
    engine.dispose()
    return url, data_dir


# -- serving and timing --------------------------------------------------------------------------


class ServerTimer:
    """ASGI wrapper: the server's time per request, from the call to the last body byte, by request id."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ms: dict[str, float] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = dict(scope.get("headers") or []).get(b"x-bench-id", b"").decode()
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            # Stored before the last byte is handed over: after it, the client may already look for it.
            if message["type"] == "http.response.body" and not message.get("more_body", False) and rid:
                self.ms[rid] = (time.perf_counter() - started) * 1000
            await send(message)

        await self.app(scope, receive, timed_send)


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Probe:
    """One timed request: a name for the table, method, path, and (for POST) a JSON body."""

    name: str
    path: str
    api: bool
    body: dict[str, Any] | None = None


def _samples(engine: Engine) -> dict[str, Any]:
    """Values the probes need: a customer with events, a name fragment, a mobile's last 4, a remark word."""
    from siyu.customers.models import Customer

    with make_sessionmaker(engine)() as db:
        org_id = db.scalar(text("SELECT id FROM organizations WHERE slug = :s"), {"s": ORG})
        row = db.execute(
            select(Customer.id, Customer.name, Customer.mobile, Customer.remark)
            .where(Customer.org_id == org_id, Customer.mobile.is_not(None), Customer.remark != "")
            .order_by(Customer.id)
            .limit(1)
        ).one()
    words = [w for w in re.split(r"[\s，。,.!！？?、]+", row.remark or "") if len(w) >= 2]
    return {
        "customer_id": row.id,
        "name": (row.name or "客户")[:2],
        "last4": (row.mobile or "0000")[-4:],
        "remark": (words[0] if words else (row.remark or "")[:3])[:6],
    }


def probes(s: dict[str, Any], now: datetime) -> list[Probe]:
    """Every console page in the navigation (and the customer pages it leads to), every list and analytics API."""
    since = (now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    dates = f"date_from={(now - timedelta(days=89)).date()}&date_to={now.date()}"
    cid = s["customer_id"]
    # Quoted: a remark word such as "李建+直播+" would otherwise reach the server as "李建 直播 ".
    s = {**s, **{k: quote(str(s[k]), safe="") for k in ("name", "remark", "last4")}}
    pages = [
        ("dashboard /", "/"),
        ("customers page", "/customers"),
        ("customers page ?q=name", f"/customers?q={s['name']}"),
        ("customers page ?q=remark", f"/customers?q={s['remark']}"),
        ("customers page ?mobile=last4", f"/customers?mobile={s['last4']}"),
        ("customer detail", f"/customers/{cid}"),
        ("customer timeline", f"/customers/{cid}/timeline"),
        ("accounts", "/accounts"),
        ("channels", "/channels"),
        ("leads", "/leads"),
        ("leads inbox", "/leads/inbox"),
        ("analytics/funnel", "/analytics/funnel"),
        ("analytics/retention", "/analytics/retention"),
        ("analytics/repurchase", "/analytics/repurchase"),
        ("analytics/rfm", "/analytics/rfm"),
        ("analytics/clv", "/analytics/clv"),
        ("analytics/roi", "/analytics/roi"),
        ("wecom/settings", "/wecom/settings"),
        ("wecom/departure", "/wecom/departure"),
        ("wecom/mass-messages", "/wecom/mass-messages"),
    ]
    apis = [
        ("api customers", "/api/v1/customers"),
        ("api customers ?stage", "/api/v1/customers?stage=engaged"),
        ("api customers ?name", f"/api/v1/customers?name={s['name']}"),
        ("api customers ?mobile=last4", f"/api/v1/customers?mobile={s['last4']}"),
        ("api customer", f"/api/v1/customers/{cid}"),
        ("api customer timeline", f"/api/v1/customers/{cid}/timeline"),
        ("api events limit=100", "/api/v1/events?limit=100"),
        ("api events ?type", "/api/v1/events?type=order_paid"),
        ("api events ?since=7d", f"/api/v1/events?since={since}"),
        ("api events ?customer_id", f"/api/v1/events?customer_id={cid}"),
        ("api orders", "/api/v1/orders"),
        ("api leads", "/api/v1/leads"),
        ("api accounts", "/api/v1/accounts"),
        ("api tags", "/api/v1/tags"),
        ("api channel pools", "/api/v1/channels/pools"),
        ("api channel codes", "/api/v1/channels/codes"),
        ("api channel health", "/api/v1/channels/health"),
        ("api channel alerts", "/api/v1/channels/alerts"),
        ("api channel daily", f"/api/v1/channels/reports/daily?{dates}"),
        ("api analytics commerce", "/api/v1/analytics/commerce"),
        ("api analytics rfm", "/api/v1/analytics/rfm"),
        ("api analytics clv", "/api/v1/analytics/clv"),
        ("api analytics roi", f"/api/v1/analytics/roi?{dates}"),
        ("api channel-costs", "/api/v1/analytics/channel-costs"),
    ]
    out = [Probe(n, p, False) for n, p in pages] + [Probe(n, p, True) for n, p in apis]
    out.append(
        Probe(
            "api analytics funnel",
            "/api/v1/analytics/funnel",
            True,
            {"steps": [{"event_type": "customer_added"}, {"event_type": "order_paid"}]},
        )
    )
    out.append(
        Probe(
            "api analytics retention",
            "/api/v1/analytics/retention",
            True,
            {"start": {"event_type": "customer_added"}, "returning": {"event_type": "order_paid"}},
        )
    )
    return out


def _login(client: httpx.Client, email: str) -> None:
    client.get("/login")
    csrf = client.cookies.get("siyu_login_csrf") or next(
        (v for k, v in client.cookies.items() if "csrf" in k), ""
    )
    r = client.post(
        "/login", data={"email": email, "password": ADMIN_PASSWORD, "csrf_token": csrf, "next": "/"}
    )
    if r.status_code != 303:
        raise SystemExit(f"login failed: HTTP {r.status_code}")


def time_size(
    url: str, data_dir: Path, now: datetime, only: tuple[str, ...] = (), first: dict[str, float] | None = None
) -> dict[str, float]:
    """Serve the app over the database and time every probe (or those whose name holds one of ``only``);
    returns median server ms per probe, and fills ``first`` with each warm-up request's ms (the cost of a
    request after new data, before any result is reused)."""
    from siyu.tenancy import service as identity

    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with factory() as db:
        user = identity.authenticate(db, f"admin@{ORG}.example.com", ADMIN_PASSWORD)
        if user is None:
            raise SystemExit("the bench database has no admin; delete it and rerun")
        token = identity.issue_api_token(db, user, "bench").plaintext
        email = user.email
        db.commit()
    sample = _samples(engine)
    settings = Settings(data_dir=data_dir, database_url=url, secret_key="bench-secret-key")
    timer = ServerTimer(create_app(settings, engine=engine))
    server, thread, base = _serve(timer)
    medians: dict[str, float] = {}
    try:
        with (
            httpx.Client(base_url=base, timeout=600) as console,
            httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {token}"}) as api,
        ):
            _login(console, email)
            for probe in probes(sample, now):
                if only and not any(word in probe.name for word in only):
                    continue
                client = api if probe.api else console
                times: list[float] = []
                for i in range(REPEAT + 1):
                    rid = f"{probe.name}#{i}"
                    headers = {"x-bench-id": rid}
                    if probe.body is not None:
                        r = client.post(probe.path, json=probe.body, headers=headers)
                    else:
                        r = client.get(probe.path, headers=headers)
                    if r.status_code != 200:
                        raise SystemExit(f"{probe.name}: HTTP {r.status_code} {r.text[:300]}")
                    if i:  # the first is a warm-up
                        times.append(timer.ms.pop(rid))
                    elif first is not None:
                        first[probe.name] = timer.ms.pop(rid)
                medians[probe.name] = statistics.median(times)
                _say(f"    {probe.name:<32} p50={medians[probe.name]:8.1f} ms  max={max(times):8.1f} ms")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()
    return medians


def main() -> None:
    """Build or reuse the brands, time every page at each size, print the table and the worst median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 and 100,000 customers")
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=None)
    parser.add_argument("--pg-url", default=os.environ.get("SIYU_BENCH_PG_URL", ""))
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "siyu-bench")
    parser.add_argument(
        "--only", default="", help="comma-separated words: time only probes whose name holds one"
    )
    parser.add_argument(
        "--url", default="", help="time this loaded database (migrated to head first) as the largest size"
    )
    parser.add_argument("--data-dir", type=Path, help="with --url: its data dir (the analytics projection)")
    args = parser.parse_args()
    only = tuple(w.strip() for w in args.only.split(",") if w.strip())
    if args.url and args.data_dir is None:
        parser.error("--url needs --data-dir")
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 1_000_000])
    now = datetime.now(UTC)
    end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if args.url:
        kinds = [make_url(args.url).get_backend_name()]
        if kinds == ["postgresql"] and not args.pg_url:
            parser.error("--url on PostgreSQL: give --pg-url too, for the smaller sizes")
    else:
        kinds = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.pg_url else [])
    if not kinds:
        parser.error("nothing to run: give --pg-url or drop --no-sqlite")

    def build(kind: str, n: int) -> tuple[str, Path]:
        if args.url and n == sizes[-1]:
            upgrade(args.url)  # a database loaded before the newest migrations
            return args.url, args.data_dir
        if kind == "sqlite":
            return sqlite_database(n, args.cache_dir, end)
        return pg_database(args.pg_url, n, args.cache_dir, end)

    t0, c0 = time.perf_counter(), time.process_time()
    worst = 0.0
    tables: list[str] = []
    for backend in kinds:
        results: dict[int, dict[str, float]] = {}
        first: dict[str, float] = {}
        for n in sizes:
            url, data_dir = build(backend, n)
            _say(f"timing {backend} at {n:,} customers ...")
            results[n] = time_size(url, data_dir, now, only, first if n == sizes[-1] else None)
        small, large = sizes[0], sizes[-1]
        lines = [
            f"{backend}: median server ms of {REPEAT} requests (one client; shared 2-core machine)",
            f"{'request':<32} " + " ".join(f"{n:>10,}" for n in sizes) + f" {'growth':>8} {'first':>9}",
        ]
        for name in results[small]:
            row = [results[n][name] for n in sizes]
            growth = row[-1] / row[0] if row[0] > 0 else float("inf")
            lines.append(
                f"{name:<32} " + " ".join(f"{v:10.1f}" for v in row) + f" {growth:7.1f}x {first[name]:9.1f}"
            )
        top = max(results[large].items(), key=lambda kv: kv[1])
        worst_growth = max(results[large][k] / results[small][k] for k in results[small])
        cold = max(first.items(), key=lambda kv: kv[1])
        lines.append(
            f"{backend}: slowest at {large:,} = {top[0]} {top[1]:.1f} ms; "
            f"largest growth {small:,}->{large:,} = {worst_growth:.1f}x; "
            f"slowest first request = {cold[0]} {cold[1]:.1f} ms"
        )
        worst = max(worst, top[1])
        tables.append("\n".join(lines))
    for table in tables:
        _say("")
        _say(table)
    _say(
        f"wall={time.perf_counter() - t0:.0f}s cpu={time.process_time() - c0:.0f}s cpu_count={os.cpu_count()}"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    _say(f"worst_p50_ms={worst:.0f}")


if __name__ == "__main__":
    main()
