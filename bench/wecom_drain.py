"""Benchmark: draining a backlog of WeCom callbacks with parallel drains that keep per-contact order.

Set-up: the fake WeCom server in its own process, seeded deterministically (seed 11) with members and
contacts (one or two followers each); a fresh database (SQLite by default; with --database-url, a fresh
``<name>_drain`` on that PostgreSQL server, recreated for each run), migrated, with one organization whose
credentials point at the fake and whose tag library is mirrored first, as the periodic sync would have
done. The bench builds the same population in-process to know the contact ids.

The backlog: four callbacks per contact, queued in the inbox the way the inbox writer stores them
(``store_events``, 500 a transaction), contacts interleaved at random while each contact's own events stay
in the order add_external_contact, edit_external_contact, edit_external_contact, del_follow_user. Three of
the four read the contact from WeCom (externalcontact/get) when applied.

Timed: ``drain()`` until the inbox is empty, in a process already started the way ``siyu worker`` starts
(task modules and event subscribers loaded), first the baseline, the previous design: every row in its own
transaction, ``DRAIN_WORKERS`` keys at a time (``drain(batch=0)``, each row read from WeCom just before it is
claimed), and then the batched drain (the first waiting row of up to ``BATCH_SIZE`` keys claimed and applied
set-wise in one transaction, their WeCom reads made ``DRAIN_WORKERS`` at a time beforehand, the next batch
chosen and read while one is applied), each on a fresh
database, in the same run. Checked after each: every row processed exactly once (attempts 1),
per contact the rows claimed in arrival order (each row's processed_at later than the previous row of the
same contact: a row can only be claimed once the one before it committed), one externalcontact/get per
reading event, one customer per contact and every follow ended by the customer (the del_follow_user came
last). CPU of siyu's process and of the fake, and the load average, are printed because the machine may
be shared.

    python bench/wecom_drain.py [--quick] [--database-url postgresql+psycopg://postgres@127.0.0.1/siyu_x]
Last line: events_per_s=N (the batched drain; on PostgreSQL when a URL is given).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from benchkit import cpu_of, fresh_postgres, start_fake_wecom, stop  # bench/ is on sys.path
from sqlalchemy import func, select

from siyu.customers.models import Customer, FollowRelation, FollowStatus
from siyu.integrations.wecom.crypto import parse_event_xml
from siyu.integrations.wecom.fake_state import FakeWeComState
from siyu.kit.db import make_engine, make_sessionmaker, transaction
from siyu.kit.migrate import upgrade
from siyu.kit.settings import Settings
from siyu.tenancy import service as tenancy
from siyu.wecom import tasks
from siyu.wecom.callbacks import store_events
from siyu.wecom.credentials import client_for, load_plain, save_credentials
from siyu.wecom.models import InboxItem
from siyu.wecom.schemas import CredentialsIn
from siyu.wecom.tag_events import upsert_corp_tags
from siyu.worker import queue
from siyu.worker.registry import load_tasks

SEED = 11
MEMBERS = 20
CORP_ID = "wwbenchdrain0001"
SECRET = "bench-drain-secret"
TOKEN = "bench-drain-token"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SECRET_KEY = "bench-secret-key"
CHANGES = ("add_external_contact", "edit_external_contact", "edit_external_contact", "del_follow_user")
READING = 3  # of the four changes, the ones that call externalcontact/get
STORE_BATCH = 500


def backlog(contacts: int) -> list[dict[str, Any]]:
    """The callbacks, in arrival order: each contact's four in order, contacts interleaved at random."""
    twin = FakeWeComState(CORP_ID, SECRET)
    twin.generate(members=MEMBERS, contacts=contacts, seed=SEED)
    people = [(eid, next(iter(follows))) for eid, follows in twin.follows.items()]
    slots = [i for i in range(len(people)) for _ in CHANGES]
    random.Random(SEED).shuffle(slots)
    seen: dict[int, int] = defaultdict(int)
    start = int(time.time()) - len(slots)
    events = []
    for n, i in enumerate(slots):
        eid, userid = people[i]
        change = CHANGES[seen[i]]
        seen[i] += 1
        xml = (
            f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{start + n}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[change_external_contact]]></Event>"
            f"<ChangeType><![CDATA[{change}]]></ChangeType><UserID><![CDATA[{userid}]]></UserID>"
            f"<ExternalUserID><![CDATA[{eid}]]></ExternalUserID><State><![CDATA[douyin_live]]></State></xml>"
        )
        events.append(parse_event_xml(xml))
    return events


@dataclass
class Result:
    seconds: float
    cpu: float
    fake_cpu: float
    problems: list[str]


def prepare(url: str, fake_url: str, events: list[dict[str, Any]]) -> tuple[Any, int]:
    """Migrate, create the organization with credentials, mirror the tags, queue the backlog."""
    upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        org = tenancy.create_organization(db, "Bench Drain", "bench-drain")
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
        upsert_corp_tags(db, org.id, client_for(load_plain(db, org.id, SECRET_KEY)).list_corp_tags())
        org_id = org.id
    for at in range(0, len(events), STORE_BATCH):
        with transaction(factory) as db:
            store_events(db, [(org_id, e) for e in events[at : at + STORE_BATCH]])  # type: ignore[misc]
    return engine, org_id


def check(factory: Any, contacts: int, events: int, fake_url: str) -> list[str]:
    """Exactly once, per-contact order, one WeCom read per reading event, the end state."""
    problems: list[str] = []
    with factory() as db:
        rows = db.execute(
            select(
                InboxItem.id, InboxItem.partition_key, InboxItem.processed_at, InboxItem.attempts
            ).order_by(InboxItem.id)
        ).all()
        if len(rows) != events:
            problems.append(f"{len(rows)} inbox rows, expected {events}")
        if any(r.processed_at is None or r.attempts != 1 for r in rows):
            problems.append(
                f"{sum(r.processed_at is None or r.attempts != 1 for r in rows)} rows not processed once"
            )
        last: dict[str, Any] = {}
        out_of_order = 0
        for r in rows:
            before = last.get(r.partition_key)
            if before is not None and r.processed_at is not None and r.processed_at <= before:
                out_of_order += 1
            last[r.partition_key] = r.processed_at
        if out_of_order:
            problems.append(f"{out_of_order} rows applied before an earlier row of their contact")
        customers = db.scalar(select(func.count()).select_from(Customer))
        active = db.scalar(
            select(func.count())
            .select_from(FollowRelation)
            .where(FollowRelation.status == FollowStatus.active)
        )
        if customers != contacts:
            problems.append(f"{customers} customers, expected {contacts}")
    calls = httpx.get(f"{fake_url}/_control/calls", params={"api": "externalcontact/get"}, timeout=60).json()
    if len(calls["calls"]) != contacts * READING:
        problems.append(
            f"externalcontact/get called {len(calls['calls'])} times, expected {contacts * READING}"
        )
    del active  # the second follower of a two-follower contact stays active: WeCom still lists it
    return problems


def one_run(
    label: str,
    url: str,
    fake_url: str,
    fake_pid: int,
    events: list[dict[str, Any]],
    contacts: int,
    batch: int,
) -> Result:
    """Queue the backlog into a fresh database and drain it (``batch`` keys per transaction; 0: a row per
    transaction)."""
    engine, _ = prepare(url, fake_url, events)
    load_tasks()  # as `siyu worker` does at start-up, before its first job
    queue.bind_engine(engine)
    queue.bind_settings(Settings(secret_key=SECRET_KEY))
    httpx.request("DELETE", f"{fake_url}/_control/calls", timeout=30)
    fake0, cpu0, wall0 = cpu_of(fake_pid), time.process_time(), time.perf_counter()
    applied = tasks.drain(batch=batch)
    seconds = time.perf_counter() - wall0
    cpu, fake_cpu = time.process_time() - cpu0, cpu_of(fake_pid) - fake0
    problems = check(make_sessionmaker(engine), contacts, len(events), fake_url)
    if applied != len(events):
        problems.append(f"drain() reported {applied} applied, expected {len(events)}")
    engine.dispose()
    print(
        f"{label}: {len(events)} events in {seconds:.2f} s = {len(events) / seconds:.0f} events/s "
        f"(siyu cpu_s={cpu:.1f}, fake cpu_s={fake_cpu:.1f}, load_avg={os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores)",
        flush=True,
    )
    print(
        f"{label}: "
        + ("CHECK FAILED: " + "; ".join(problems) if problems else "exactly once, order per contact held"),
        flush=True,
    )
    return Result(seconds, cpu, fake_cpu, problems)


def run_backend(name: str, make_url: Any, fake_url: str, fake_pid: int, contacts: int) -> float:
    """The baseline and the batched drain on one backend; returns the batched events/s."""
    events = backlog(contacts)
    print(
        f"{name}: {len(events)} queued callbacks over {contacts} contacts "
        f"({len(events) // contacts} each, {READING} reading WeCom)",
        flush=True,
    )
    base = one_run(
        f"{name} {tasks.DRAIN_WORKERS} parallel drains, a row per transaction",
        make_url(),
        fake_url,
        fake_pid,
        events,
        contacts,
        0,
    )
    par = one_run(
        f"{name} batches of {tasks.BATCH_SIZE} keys",
        make_url(),
        fake_url,
        fake_pid,
        events,
        contacts,
        tasks.BATCH_SIZE,
    )
    rate = len(events) / par.seconds
    print(f"{name}: ratio_vs_row_per_transaction={base.seconds / par.seconds:.2f}", flush=True)
    return rate


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="60 contacts (240 events) instead of 5,000 (20,000 events)"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL URL: the bench also runs there, (re)creating <database>_drain on that server",
    )
    args = parser.parse_args()
    contacts = 60 if args.quick else 5000
    fake, fake_url = start_fake_wecom(
        [
            "--corp-id",
            CORP_ID,
            "--secret",
            SECRET,
            "--members",
            str(MEMBERS),
            "--contacts",
            str(contacts),
            "--groups",
            "0",
            "--seed",
            str(SEED),
            "--no-access-log",
        ],
        timeout=60,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="siyu-bench-drain-") as tmp:
            runs = iter(range(100))
            rate = run_backend(
                "SQLite",
                lambda: f"sqlite:///{Path(tmp) / f'drain{next(runs)}.db'}",
                fake_url,
                fake.pid,
                contacts,
            )
            if args.database_url:
                rate = run_backend(
                    "PostgreSQL",
                    lambda: fresh_postgres(args.database_url, "drain"),
                    fake_url,
                    fake.pid,
                    contacts,
                )
    finally:
        stop(fake)
    print(f"events_per_s={rate:.0f}", flush=True)


if __name__ == "__main__":
    main()
