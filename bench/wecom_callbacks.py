"""Benchmark: the WeCom callback endpoint at a fixed 500 requests/s, duplicates included.

Set-up: a fresh SQLite database (migrated), one organization with WeCom credentials pointing at the fake
WeCom server, and the fake seeded deterministically (seed 7) with members and contacts; the tag library
is mirrored first, as the periodic sync would have done. The bench builds the same population in-process
to know the contact ids, picks contacts with exactly one follower, and pre-encrypts one
add_external_contact event per request with the fake's crypto (a fresh nonce and ciphertext each time,
as WeCom's retries are): ~20% of requests repeat an earlier event.

Three processes on loopback: the fake WeCom server, the siyu app (uvicorn, one process, started from this
file with ``--serve``), and this driver sending at a fixed rate over 64 keep-alive connections (request i is
sent at t0 + i/rate whether or not earlier ones finished, so a slow server shows as latency, not as a
lower rate). Latency is measured from the scheduled send time to the response.

After the load, a Huey consumer (2 threads, the same SQLite queue the app asked for drains on) runs until the
inbox is drained, and the run checks every distinct event had exactly one effect: one inbox row each,
all processed with attempts == 1, one customer and one active follow per event, friend counts summing to
the events, and exactly one externalcontact/get per event in the fake's call log.

Baseline, same run: ``inline processing`` — the same app with Huey in immediate mode, so each new event
is processed (fetch from WeCom, write customers) inside the request; a shorter load at the same rate.
The ratio printed is the app's CPU time per callback, inline / queued (start-up included in both), since
p99s under a backlog depend on how long the load lasts. CPU and load average are printed because the
benchmark machine may be shared.

    python bench/wecom_callbacks.py           # 10 s at 500/s
    python bench/wecom_callbacks.py --quick   # 1 s at 500/s (under 30 s in all)
    python bench/wecom_callbacks.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/siyu_bench
Last line: p99_ms=N (queued mode).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
from benchkit import cpu_of, free_port, fresh_postgres, start_fake_wecom, stop, wait_http
from sqlalchemy import func, select

RATE = 500
#: Callbacks sent before the measured load (distinct events too, checked like the rest), at a low rate.
WARMUP = 100
WARMUP_RATE = 100
DUP_SHARE = 0.20
SEED = 7
MEMBERS = 20
TOKEN = "bench-callback-token"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "wwfake0000000001"
SECRET = "fake-customer-contact-secret"
SECRET_KEY = "bench-secret-key"


def serve(data_dir: str, port: int, inline: bool) -> None:
    """Child process: the siyu app on loopback; tasks queued in data_dir (or run inline)."""
    import uvicorn

    from siyu.app import create_app
    from siyu.kit.serving import settle_heap
    from siyu.kit.settings import Settings
    from siyu.worker import queue

    settings = Settings(data_dir=Path(data_dir), secret_key=SECRET_KEY)
    app = create_app(settings)
    queue.bind_engine(app.state.engine)
    queue.bind_settings(settings)
    queue.configure(settings, immediate=inline)
    settle_heap()  # as `siyu serve` does
    # Keep-alive longer than the load, so the server never closes a connection the driver is reusing.
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=120
    )


@dataclass
class Setup:
    data_dir: Path
    url: str  # the app's database URL
    org_slug: str
    events: list[tuple[str, str]]  # (external_userid, userid) per distinct event


def prepare(root: Path, fake_url: str, contacts: int, database_url: str = "") -> Setup:
    """Migrate a fresh database, create the org with credentials, mirror the tag library."""
    from siyu.integrations.wecom.fake_state import FakeWeComState
    from siyu.kit.db import make_engine, make_sessionmaker, transaction
    from siyu.kit.migrate import upgrade
    from siyu.tenancy import service as identity
    from siyu.wecom.credentials import client_for, load_plain, save_credentials
    from siyu.wecom.schemas import CredentialsIn
    from siyu.wecom.tag_events import upsert_corp_tags

    data_dir = root / "var"
    data_dir.mkdir(parents=True)
    url = fresh_postgres(database_url, root.name) if database_url else f"sqlite:///{data_dir / 'siyu.db'}"
    upgrade(url)
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as db:
        org = identity.create_organization(db, "Bench Tea", "bench")
        save_credentials(
            db,
            org.id,
            CredentialsIn(
                corp_id=CORP_ID,
                secret=SECRET,
                token=TOKEN,
                encoding_aes_key=AES_KEY,
                base_url=fake_url,  # type: ignore[arg-type]
            ),
            SECRET_KEY,
        )
        db.flush()
        client = client_for(load_plain(db, org.id, SECRET_KEY))
        upsert_corp_tags(db, org.id, client.list_corp_tags())
    engine.dispose()
    # The fake generated the same population from the same seed: read the ids here.
    twin = FakeWeComState(CORP_ID, SECRET)
    twin.generate(members=MEMBERS, contacts=contacts, seed=SEED, max_followers=1)
    events = [(eid, next(iter(f))) for eid, f in twin.follows.items() if len(f) == 1]
    return Setup(data_dir, url, "bench", events)


def build_requests(
    events: list[tuple[str, str]], total: int, rng: random.Random
) -> tuple[list[tuple[str, dict[str, str]]], int]:
    """Pre-encrypt ``total`` callbacks: distinct events in order, ~20% of slots repeating an earlier one."""
    from siyu.integrations.wecom.crypto import CallbackCrypto, build_event_xml

    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
    now = int(time.time())
    plaintexts: list[str] = []
    out: list[tuple[str, dict[str, str]]] = []
    used = 0
    for i in range(total):
        if plaintexts and rng.random() < DUP_SHARE:
            xml = plaintexts[rng.randrange(len(plaintexts))]
        else:
            eid, userid = events[used]
            used += 1
            xml = build_event_xml(
                {
                    "ToUserName": CORP_ID,
                    "FromUserName": "sys",
                    "CreateTime": now + i // RATE,
                    "MsgType": "event",
                    "Event": "change_external_contact",
                    "ChangeType": "add_external_contact",
                    "UserID": userid,
                    "ExternalUserID": eid,
                    "State": "douyin_live",
                }
            )
            plaintexts.append(xml)
        out.append(crypto.encrypt_request(xml, nonce=str(rng.randrange(10**10))))
    return out, used


async def drive(
    endpoint: str, requests: list[tuple[str, dict[str, str]]], rate: int, connections: int = 64
) -> tuple[list[float], int]:
    """Send each request at its scheduled time; return latencies (ms, from schedule) and non-200 count.

    A minimal HTTP/1.1 client on asyncio streams over ``connections`` keep-alive connections: the load
    generator shares the machine with the app, and httpx spent more CPU per request than the endpoint
    it measured, which showed up as the app's latency. Requests are rendered to bytes before the clock
    starts; a request waiting for a free connection counts that wait in its latency."""
    url = urlsplit(endpoint)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await asyncio.open_connection(host, port))
    wire = []
    for body, params in requests:
        payload = body.encode()
        wire.append(
            (
                f"POST {url.path}?{urlencode(params)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: text/xml\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode()
            + payload
        )
    latencies: list[float] = []
    bad = 0
    loop = asyncio.get_running_loop()
    # The driver's own heap (this file imports the whole app to prepare the run) made its full garbage
    # collections pause it 40-210 ms, which showed up as the server's latency; the load creates no cycles
    # worth collecting in ten seconds.
    gc.collect()
    gc.freeze()
    gc.disable()

    async def one(data: bytes, due: float) -> None:
        nonlocal bad
        reader, writer = await free.get()
        try:
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0
            )
            if length:
                await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            bad += 1  # a failed delivery (WeCom would retry it); no latency recorded
            writer.close()
            free.put_nowait(await asyncio.open_connection(host, port))
            return
        free.put_nowait((reader, writer))
        latencies.append((loop.time() - due) * 1000)
        if head[9:12] != b"200":
            bad += 1

    t0 = loop.time() + 0.2
    tasks = []
    # Spawn each request at its due time, so only the requests actually in flight exist.
    for i, data in enumerate(wire):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(data, due)))
    await asyncio.gather(*tasks)
    gc.enable()
    gc.unfreeze()
    while not free.empty():
        free.get_nowait()[1].close()
    return latencies, bad


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def start_app(setup: Setup, inline: bool) -> tuple[subprocess.Popen[bytes], str]:
    """Start the app process; returns it and its callback endpoint."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(setup.data_dir), str(port)]
        + (["--inline"] if inline else []),
        env={**os.environ, "SIYU_DATABASE_URL": setup.url},
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc, f"http://127.0.0.1:{port}/hooks/wecom/{setup.org_slug}"


def child_cpu() -> float:
    """CPU seconds used by reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def drain_and_check(setup: Setup, distinct: int, fake_url: str) -> tuple[float, list[str]]:
    """Run a consumer until the inbox is drained; check each distinct event had exactly one effect."""
    import siyu.wecom.tasks  # noqa: F401  (registers the task with the consumer)
    from siyu.accounts.models import Account
    from siyu.customers.models import Customer, FollowRelation, FollowStatus
    from siyu.kit.db import make_engine, make_sessionmaker
    from siyu.kit.settings import Settings
    from siyu.wecom.models import InboxItem
    from siyu.worker import queue

    settings = Settings(data_dir=setup.data_dir, secret_key=SECRET_KEY)
    engine = make_engine(setup.url)
    queue.bind_engine(engine)
    queue.bind_settings(settings)
    queue.configure(settings)
    factory = make_sessionmaker(engine)
    started = time.perf_counter()
    with queue.ThreadedConsumer(workers=2):
        while True:
            with factory() as db:
                left = db.scalar(
                    select(func.count()).select_from(InboxItem).where(InboxItem.processed_at.is_(None))
                )
            if not left:
                break
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"{left} inbox rows still unprocessed after 10 minutes")
            time.sleep(0.1)
    drain_s = time.perf_counter() - started
    problems: list[str] = []
    with factory() as db:

        def count(stmt) -> int:  # type: ignore[no-untyped-def]
            return int(db.scalar(stmt) or 0)

        rows = count(select(func.count()).select_from(InboxItem))
        once = count(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.attempts == 1, InboxItem.processed_at.is_not(None))
        )
        customers = count(select(func.count()).select_from(Customer))
        follows = count(
            select(func.count())
            .select_from(FollowRelation)
            .where(FollowRelation.status == FollowStatus.active)
        )
        friends = count(select(func.sum(Account.friend_count)))
        for name, value in (
            ("inbox rows", rows),
            ("processed once", once),
            ("customers", customers),
            ("active follows", follows),
            ("friend_count sum", friends),
        ):
            if value != distinct:
                problems.append(f"{name} = {value}, expected {distinct}")
    calls = httpx.get(f"{fake_url}/_control/calls", params={"api": "externalcontact/get"}, timeout=30).json()[
        "calls"
    ]
    if len(calls) != distinct:
        problems.append(f"externalcontact/get called {len(calls)} times, expected {distinct}")
    engine.dispose()
    return drain_s, problems


def run(seconds: float, baseline_seconds: float, database_url: str = "") -> float:
    """The whole benchmark; returns the queued path's p99 latency in ms (printed last by ``main``)."""
    total = int(RATE * seconds)
    base_total = int(RATE * baseline_seconds)
    contacts = int((total + base_total) * 1.3) + 200
    fake, fake_url = start_fake_wecom(
        ["--members", str(MEMBERS), "--contacts", str(contacts), "--groups", "0", "--seed", str(SEED)]
    )
    try:
        # generate() in the fake used max_followers=2 by default from the CLI; re-seed with one follower each.
        httpx.post(f"{fake_url}/_control/reset", json={"corp_id": CORP_ID, "secret": SECRET}, timeout=30)
        httpx.post(
            f"{fake_url}/_control/generate",
            timeout=120,
            json={
                "members": MEMBERS,
                "contacts": contacts,
                "seed": SEED,
                "max_followers": 1,
            },
        )
        rng = random.Random(SEED)
        with tempfile.TemporaryDirectory(prefix="siyu-bench-wecom-") as tmp:
            # --- queued (the real path) ---
            setup = prepare(Path(tmp) / "queued", fake_url, contacts, database_url)
            print(f"database: {setup.url.split('@')[-1] if database_url else 'SQLite (WAL)'}", flush=True)
            every, distinct = build_requests(setup.events, WARMUP + total, rng)
            warmup, requests = every[:WARMUP], every[WARMUP:]
            print(
                f"queued: {total} callbacks at {RATE}/s over {seconds:.0f} s after {WARMUP} at {WARMUP_RATE}/s; "
                f"{distinct} distinct events ({WARMUP + total - distinct} duplicates)",
                flush=True,
            )
            cpu0 = child_cpu()
            proc, endpoint = start_app(setup, inline=False)
            try:
                warm_latencies, bad = asyncio.run(drive(endpoint, warmup, WARMUP_RATE))
                print(
                    f"warm-up: p50_ms={pct(warm_latencies, 0.5):.1f} max_ms={max(warm_latencies):.1f} "
                    "(first callbacks pay one-off costs: credentials, statement compilation)",
                    flush=True,
                )
                # Start-up (imports, app build) costs seconds of CPU; measure the load window on its own too.
                load_cpu0 = cpu_of(proc.pid)
                wall0 = time.perf_counter()
                latencies, measured_bad = asyncio.run(drive(endpoint, requests, RATE))
                bad += measured_bad
                wall = time.perf_counter() - wall0
                load_cpu = cpu_of(proc.pid) - load_cpu0
            finally:
                stop(proc)
            cpu = child_cpu() - cpu0  # start-up, warm-up and load
            p50, p99 = pct(latencies, 0.50), pct(latencies, 0.99)
            print(
                f"queued: p50_ms={p50:.1f} p99_ms={p99:.1f} max_ms={max(latencies):.1f} non_200={bad} "
                f"wall_s={wall:.1f} app_cpu_s={cpu:.1f} (incl. start-up) "
                f"achieved_rps={total / wall:.0f} load_avg={os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
                flush=True,
            )
            httpx.request("DELETE", f"{fake_url}/_control/calls", timeout=30)
            drain_s, problems = drain_and_check(setup, distinct, fake_url)
            print(
                f"drain: {distinct} events processed in {drain_s:.1f} s "
                f"({distinct / drain_s:.0f} events/s, one drain at a time)",
                flush=True,
            )
            if problems or bad:
                print(
                    "EXACTLY-ONCE CHECK FAILED: " + "; ".join([*problems, f"{bad} non-200 answers"]),
                    flush=True,
                )
            else:
                print(
                    "exactly once: every distinct event has one inbox row, one processing, one customer, "
                    "one follow, one externalcontact/get",
                    flush=True,
                )

            # --- baseline: inline processing inside the request ---
            base = prepare(Path(tmp) / "inline", fake_url, contacts, database_url)
            base_events = base.events[distinct:]  # contacts the queued run did not touch
            base_requests, base_distinct = build_requests(base_events, base_total, random.Random(SEED + 1))
            cpu0 = child_cpu()
            proc, endpoint = start_app(base, inline=True)
            try:
                base_load_cpu0 = cpu_of(proc.pid)
                wall0 = time.perf_counter()
                base_lat, base_bad = asyncio.run(drive(endpoint, base_requests, RATE))
                base_wall = time.perf_counter() - wall0
                base_load_cpu = cpu_of(proc.pid) - base_load_cpu0
            finally:
                stop(proc)
            base_cpu = child_cpu() - cpu0
            base_p99 = pct(base_lat, 0.99)
            print(
                f"inline processing: {base_total} callbacks ({base_distinct} distinct) at {RATE}/s: "
                f"p50_ms={pct(base_lat, 0.5):.1f} p99_ms={base_p99:.1f} non_200={base_bad} "
                f"wall_s={base_wall:.1f} app_cpu_s={base_cpu:.1f}",
                flush=True,
            )
            # Both modes may saturate a shared machine, and the baseline runs shorter, so p99s under
            # backlog are not comparable; the request path's CPU cost per callback is.
            queued_ms, inline_ms = cpu / (WARMUP + total) * 1000, base_cpu / base_total * 1000
            print(
                f"app CPU per callback: queued {queued_ms:.2f} ms, inline {inline_ms:.2f} ms; achieved "
                f"{total / wall:.0f} vs {base_total / base_wall:.0f} callbacks/s",
                flush=True,
            )
            print(
                f"app CPU per callback during the load only (start-up excluded): queued "
                f"{load_cpu / total * 1000:.2f} ms, inline {base_load_cpu / base_total * 1000:.2f} ms",
                flush=True,
            )
            print(
                f"ratio_vs_inline_processing={inline_ms / queued_ms:.1f} (app CPU per callback, inline / queued)",
                flush=True,
            )
    finally:
        stop(fake)
    return p99


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s of load instead of 10 s")
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--inline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL URL: the bench (re)creates "
        "<database>_queued and <database>_inline on that server instead of using SQLite",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.inline)
        return
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    p99 = run(1.0, 0.5, args.database_url) if args.quick else run(10.0, 3.0, args.database_url)
    # Last, after every child process (the app, the fake server's uvicorn) has stopped and logged its
    # "Finished server process": the headline is the last line of stdout and stderr together.
    sys.stderr.flush()
    print(f"p99_ms={p99:.1f}", flush=True)


if __name__ == "__main__":
    main()
