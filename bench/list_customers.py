"""Benchmark: GET /api/v1/customers with tag + stage filters over a 1,000,000-customer sandbox brand.

The sandbox database is built once (generate_world + load_world into SQLite) and cached under the
system temp dir, keyed by size and seed. The real app runs in-process under uvicorn on loopback and
is called over HTTP with httpx as the sandbox admin: several tag/stage combinations, each walked
page after page through next_cursor (about 200 timed requests).

Baseline, measured in the same run on the same server: ``naive_offset`` — a route added to this
process's app that answers the same filters with the same auth, session and response model, but
with the common naive shape: tags as ``id IN (SELECT ...)``, ``ORDER BY id DESC LIMIT 50 OFFSET k``
for page k. Both return the same customers for each page (checked), so only the query shape differs.

    python bench/list_customers.py            # 1,000,000 customers (first build takes minutes)
    python bench/list_customers.py --quick    # 100,000 customers
Last line: p95_ms=N (the keyset endpoint's p95 latency).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import Query
from sqlalchemy import create_engine, event, func, select

from siyu.app import create_app
from siyu.customers.models import Customer, CustomerTag, Stage, Tag
from siyu.customers.schemas import CustomerOut
from siyu.demo import generate_world
from siyu.demo.loader import load_world
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.migrate import MIGRATIONS_DIR, upgrade
from siyu.kit.pagination import Page
from siyu.kit.settings import Settings
from siyu.tenancy import service as identity
from siyu.tenancy.deps import CurrentPrincipal, DbSession

LIMIT = 50
ORG = "bench"


def _say(msg: str) -> None:
    print(msg, flush=True)


def build_database(customers: int, seed: int, cache: Path) -> Path:
    """The cached sandbox database for (customers, seed), building it if missing."""
    # The schema's fingerprint is part of the name, so a cache built before a migration change is not reused.
    digest = hashlib.sha256()
    for migration in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        digest.update(migration.read_bytes())
    schema = digest.hexdigest()[:10]
    path = cache / f"sandbox_{customers}_{seed}_{schema}.db"
    if path.exists():
        _say(f"reusing cached database {path}")
        return path
    cache.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    for leftover in cache.glob(building.name + "*"):
        leftover.unlink()
    url = f"sqlite:///{building}"
    started = time.perf_counter()
    upgrade(url)
    world = generate_world(customers=customers, seed=seed)
    generated = time.perf_counter() - started
    _say(f"generated {customers:,} customers in {generated:.1f}s; loading ...")
    # A throwaway cache file: no journal and no fsync while building (a crash just means a rebuild,
    # since the file only gets its final name once complete). The app later opens it normally (WAL).
    engine = create_engine(url)
    event.listen(engine, "connect", _fast_build_pragmas)
    last = {"step": ""}

    def progress(step: str, done: int, total: int) -> None:
        if step != last["step"] or done == total:
            last["step"] = step
            if done == total:
                _say(f"  {step}: {total:,} rows at {time.perf_counter() - started:.1f}s")

    summary = load_world(engine, world, org_slug=ORG, admin_password="bench-admin", progress=progress)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")  # the planner gets real statistics, as a maintained install would
    engine.dispose()
    _say(f"built in {time.perf_counter() - started:.1f}s (load {summary.seconds:.1f}s)")
    building.rename(path)
    return path


def _fast_build_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=OFF")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _admin_token(factory: Any) -> tuple[int, str]:
    with factory() as db:
        user = identity.authenticate(db, f"admin@{ORG}.example.com", "bench-admin")
        if user is None:
            raise SystemExit("the cached database has no bench admin; delete it and rerun")
        token = identity.issue_api_token(db, user, "bench").plaintext
        db.commit()
        return user.org_id, token


def _pick_tags(factory: Any, org_id: int, customers: int) -> dict[str, int]:
    """Tag ids by role: the tag closest to 10% of customers, a common one (~30%) and a rare one (~2%)
    from another group (tags of one group, like 身份, rarely overlap, which would make an empty walk)."""
    with factory() as db:
        rows = db.execute(
            select(CustomerTag.tag_id, Tag.group_id, func.count())
            .join(Tag, Tag.id == CustomerTag.tag_id)
            .where(CustomerTag.org_id == org_id)
            .group_by(CustomerTag.tag_id, Tag.group_id)
        ).all()
    share = {tag: n / customers for tag, _, n in rows}
    group = {tag: g for tag, g, _ in rows}

    def closest(target: float, avoid_group: int | None = None) -> int:
        pool = [t for t in share if group[t] != avoid_group]
        return min(pool, key=lambda t: abs(share[t] - target))

    common = closest(0.30)
    return {"ten_percent": closest(0.10), "common": common, "rare": closest(0.02, group[common])}


def _add_naive_route(app: Any) -> None:
    @app.get("/bench/naive-offset-customers", response_model=Page[CustomerOut])
    def naive(
        db: DbSession,
        principal: CurrentPrincipal,
        tag_ids: Annotated[list[int] | None, Query()] = None,
        stage: Stage | None = None,
        offset: int = 0,
        limit: int = LIMIT,
    ) -> Page[CustomerOut]:
        stmt = select(Customer).where(Customer.org_id == principal.org_id, Customer.merged_into_id.is_(None))
        if stage is not None:
            stmt = stmt.where(Customer.stage == stage)
        for tag in tag_ids or []:
            stmt = stmt.where(
                Customer.id.in_(select(CustomerTag.customer_id).where(CustomerTag.tag_id == tag))
            )
        rows = db.scalars(stmt.order_by(Customer.id.desc()).offset(offset).limit(limit)).all()
        return Page[CustomerOut](items=[CustomerOut.build(c, principal) for c in rows], next_cursor=None)


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
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    """Build or reuse the database, serve the app, time both query shapes, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 customers (under 30 s once cached)")
    parser.add_argument("--customers", type=int, default=None, help="sandbox size (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pages", type=int, default=34, help="pages walked per filter combination")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "siyu-bench")
    args = parser.parse_args()
    customers = args.customers or (100_000 if args.quick else 1_000_000)
    if customers < 1000:
        parser.error("--customers must be at least 1000")

    path = build_database(customers, args.seed, args.cache_dir)
    engine = make_engine(f"sqlite:///{path}")
    factory = make_sessionmaker(engine)
    org_id, token = _admin_token(factory)
    tags = _pick_tags(factory, org_id, customers)
    combos: list[tuple[str, dict[str, Any]]] = [
        ("tag10%+engaged", {"tag_ids": [tags["ten_percent"]], "stage": "engaged"}),
        ("tag10%+converted", {"tag_ids": [tags["ten_percent"]], "stage": "converted"}),
        ("common+rare tags", {"tag_ids": [tags["common"], tags["rare"]]}),
        ("rare tag+converted", {"tag_ids": [tags["rare"]], "stage": "converted"}),
        ("common tag+repeat", {"tag_ids": [tags["common"]], "stage": "repeat"}),
        ("stage=engaged", {"stage": "engaged"}),
    ]
    settings = Settings(
        data_dir=args.cache_dir / "var", database_url=f"sqlite:///{path}", secret_key="bench-secret-key"
    )
    app = create_app(settings, engine=engine)
    _add_naive_route(app)
    server, thread, base = _serve(app)
    headers = {"Authorization": f"Bearer {token}"}
    keyset: list[float] = []
    naive: list[float] = []
    mismatches = 0
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            for _name, params in combos:  # warm caches and connections: one untimed request per shape
                client.get("/api/v1/customers", params={**params, "limit": LIMIT}).raise_for_status()
                client.get(
                    "/bench/naive-offset-customers", params={**params, "limit": LIMIT}
                ).raise_for_status()
            for name, params in combos:
                cursor: int | None = None
                walked: list[float] = []
                for page in range(args.pages):
                    query = {**params, "limit": LIMIT, **({"cursor": cursor} if cursor else {})}
                    t0 = time.perf_counter()
                    response = client.get("/api/v1/customers", params=query)
                    walked.append((time.perf_counter() - t0) * 1000)
                    response.raise_for_status()
                    body = response.json()
                    t0 = time.perf_counter()
                    naive_resp = client.get(
                        "/bench/naive-offset-customers",
                        params={**params, "limit": LIMIT, "offset": page * LIMIT},
                    )
                    naive.append((time.perf_counter() - t0) * 1000)
                    naive_resp.raise_for_status()
                    if [c["id"] for c in body["items"]] != [c["id"] for c in naive_resp.json()["items"]]:
                        mismatches += 1
                    cursor = body["next_cursor"]
                    if cursor is None:
                        break
                keyset.extend(walked)
                _say(
                    f"{name:<20} pages={len(walked):<3} p50={statistics.median(walked):7.1f} ms  "
                    f"max={max(walked):7.1f} ms"
                )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
    if mismatches:
        raise SystemExit(
            f"{mismatches} pages differ between the endpoint and the baseline: results are not comparable"
        )
    p50, p95, p99 = (_pct(keyset, q) for q in (0.5, 0.95, 0.99))
    b50, b95, b99 = (_pct(naive, q) for q in (0.5, 0.95, 0.99))
    _say(
        f"customers={customers} requests={len(keyset)} (+{len(naive)} baseline) limit={LIMIT} "
        f"cpu_count={os.cpu_count()}"
    )
    _say(f"keyset endpoint:       p50={p50:.1f} ms p95={p95:.1f} ms p99={p99:.1f} ms")
    _say(f"naive_offset baseline: p50={b50:.1f} ms p95={b95:.1f} ms p99={b99:.1f} ms")
    _say(f"ratio_vs_naive_offset={b95 / p95:.2f}  (baseline p95 / endpoint p95; >1: endpoint faster)")
    _say(f"p95_ms={p95:.1f}")


if __name__ == "__main__":
    main()
