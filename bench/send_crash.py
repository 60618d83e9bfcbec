"""Crash-safety harness: mass messages submitted by a worker that is killed (SIGKILL) at a random moment and
restarted, counting the recipients WeCom got twice or never.

Set-up: the fake WeCom server in its own process with 20 members and N contacts (one follower each, seed 5);
a fresh PostgreSQL database ``<name>_send_crash`` on the server of the URL given (``--database-url`` or
``SIYU_BENCH_DATABASE_URL``), migrated, with one organization whose credentials point at the fake and whose
contacts were synced from it (the real sync). The queue is Redis (``--redis-url`` or ``SIYU_BENCH_REDIS_URL``,
default db 2 on the local server; its siyu queue is flushed first), as in production; the worker is the real
``siyu worker`` process (Huey consumer, two threads).

Each trial: the fake's tasks are wiped (reset and the same population generated again) and the previous
trial's messages deleted; two messages with the SAME text are created, A to the first 60 % of the contacts
and B to the last 60 % (a fifth get both), reserved as the API does (``start_submission``) and queued
(``campaigns.submit_mass_message``) for the running worker. Once it has begun submitting (a batch exists),
it is killed with SIGKILL after a random delay drawn uniformly from [0, the baseline's submission time],
and restarted; the restarted worker resumes by itself (its start-up sweep) and serves the next trial. When
both messages are no longer "submitting", the trial is counted from WeCom's side: for each contact, how many of
the fake's tasks (read through get_groupmsg_list_v2 / get_groupmsg_task / get_groupmsg_send_result) hold
it, against how many of A and B chose it. More = sent twice (duplicates); fewer = never sent (lost). A
siyu row recorded under a task that does not hold its recipient counts as lost too.

Baseline, same run: one trial without a kill (its submission time, from the first batch to both messages
done, sets the kill window); the ratio printed is the mean submission time of a trial with a kill and a
restart (the restart's imports included) over the baseline's. CPU of the bench and the
load average are printed: the machine may be shared.

    python bench/send_crash.py --database-url postgresql+psycopg://postgres@127.0.0.1/siyu_bench
    python bench/send_crash.py --quick      # 10 trials of 2,000 contacts instead of 100 of 10,000

--quick cannot finish in 30 s: each trial restarts a real worker process (about 2.5 CPU seconds of imports
before it takes work), so 10 trials take a minute or more on an idle machine.
Last line: anomalies=N (duplicates plus lost, over every trial; the goal is 0).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from benchkit import fresh_postgres, start_fake_wecom, stop  # bench/ is on sys.path
from sqlalchemy import delete, func, select
from wechatpy.session.memorystorage import MemoryStorage

from siyu.campaigns import service as campaigns
from siyu.campaigns.models import (
    MassBatch,
    MassChatType,
    MassMessage,
    MassMessageStatus,
    MassSend,
    SendStatus,
)
from siyu.campaigns.sending import paged
from siyu.campaigns.submission import listed_tasks
from siyu.customers.models import CustomerIdentity, IdentityKind
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.db import make_engine, make_sessionmaker, transaction
from siyu.kit.migrate import upgrade
from siyu.kit.settings import Settings
from siyu.tenancy import service as tenancy
from siyu.wecom.credentials import save_credentials
from siyu.wecom.schemas import CredentialsIn
from siyu.wecom.sync import run_sync
from siyu.worker import queue

SEED = 5
MEMBERS = 20
CORP_ID = "wwbenchcrash0001"
SECRET = "bench-crash-secret"
TOKEN = "bench-crash-token"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SECRET_KEY = "bench-crash-secret-key"
TRIAL_TIMEOUT = 180.0


def population(fake_url: str, contacts: int) -> None:
    """Wipe the fake (its mass-message tasks included) and generate the same population again."""
    httpx.post(f"{fake_url}/_control/reset", json={"corp_id": CORP_ID, "secret": SECRET}, timeout=60)
    httpx.post(
        f"{fake_url}/_control/generate",
        json={"members": MEMBERS, "contacts": contacts, "seed": SEED, "max_followers": 1},
        timeout=300,
    ).raise_for_status()


def worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The real ``siyu worker`` (two threads), in its own process."""
    return subprocess.Popen(
        [sys.executable, "-c", "from siyu.cli import app; app()", "worker", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(check: Any, timeout: float, what: str) -> float:
    """Poll `check()` until true; returns when it became true (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if check():
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


class Harness:
    """The database, the fake, the queue and the trial loop."""

    def __init__(self, url: str, redis_url: str, fake_url: str, contacts: int, data_dir: Path) -> None:
        self.fake_url = fake_url
        self.contacts = contacts
        upgrade(url)
        self.engine = make_engine(url)
        self.factory = make_sessionmaker(self.engine)
        settings = Settings(data_dir=data_dir, database_url=url, secret_key=SECRET_KEY, redis_url=redis_url)
        queue.bind_engine(self.engine)
        queue.bind_settings(settings)
        queue.configure(settings)
        queue.huey.storage.flush_queue()
        self.env = {
            **os.environ,
            "SIYU_DATABASE_URL": url,
            "SIYU_REDIS_URL": redis_url,
            "SIYU_SECRET_KEY": SECRET_KEY,
            "SIYU_DATA_DIR": str(data_dir),
        }
        self.client = WeComClient(CORP_ID, SECRET, base_url=fake_url, session=MemoryStorage())
        population(fake_url, contacts)
        with transaction(self.factory) as db:
            org = tenancy.create_organization(db, "Bench Crash", "bench-crash")
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
            self.org_id = org.id
        run_sync(self.factory, self.org_id, self.client)
        with self.factory() as db:
            self.customers = dict(
                db.execute(
                    select(CustomerIdentity.customer_id, CustomerIdentity.value)
                    .where(
                        CustomerIdentity.org_id == self.org_id,
                        CustomerIdentity.kind == IdentityKind.wecom_external_userid,
                    )
                    .order_by(CustomerIdentity.customer_id)
                ).all()
            )
        from siyu.campaigns import tasks

        self.tasks = tasks
        self.proc = worker(self.env)  # kept running between trials: each trial costs one restart

    def trial(self, n: int, kill_window: float | None, rng: random.Random) -> tuple[int, int, float, bool]:
        """One trial: (duplicates, lost, seconds from the first batch to both messages done, whether the kill
        came before they were)."""
        population(self.fake_url, self.contacts)
        with transaction(self.factory) as db:
            db.execute(delete(MassMessage).where(MassMessage.org_id == self.org_id))
        ids = list(self.customers)
        cut = int(len(ids) * 0.6)
        text = f"第 {n} 轮：新品上架，会员专享价"
        messages = []
        started = datetime.now(UTC)
        with transaction(self.factory) as db:
            for chosen in (ids[:cut], ids[len(ids) - cut :]):
                messages.append(
                    campaigns.create_message(
                        db, self.org_id, text=text, customer_ids=chosen, marketing=False
                    ).id
                )
        for mid in messages:
            campaigns.start_submission(self.factory, self.org_id, mid)
            self.tasks.submit_mass_message(self.org_id, mid)
        proc = worker(self.env)
        killed = False
        try:
            if kill_window is not None:
                wait_until(
                    lambda: self._batches(messages) > 0 or self._done(messages), 60, "the worker to start"
                )
                time.sleep(rng.uniform(0.0, kill_window))
                killed = not self._done(messages)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                proc = worker(self.env)
            begun = wait_until(lambda: self._batches(messages) > 0, TRIAL_TIMEOUT, "batches")
            done = wait_until(lambda: self._done(messages), TRIAL_TIMEOUT, "both messages to be submitted")
        finally:
            stop(proc)
        duplicates, lost = self._count(messages, started, text)
        return duplicates, lost, done - begun, killed

    def _batches(self, messages: list[int]) -> int:
        with self.factory() as db:
            return int(
                db.scalar(
                    select(func.count()).select_from(MassBatch).where(MassBatch.message_id.in_(messages))
                )
                or 0
            )

    def _done(self, messages: list[int]) -> bool:
        with self.factory() as db:
            statuses = set(db.scalars(select(MassMessage.status).where(MassMessage.id.in_(messages))))
        return not statuses & {MassMessageStatus.submitting, MassMessageStatus.cancelling}

    def _count(self, messages: list[int], started: datetime, text: str) -> tuple[int, int]:
        """Duplicates and lost recipients of the trial, from WeCom's side and siyu's rows."""
        held: Counter[str] = Counter()
        tasks_of: dict[str, set[str]] = {}
        end = datetime.now(UTC) + timedelta(minutes=1)
        for record in listed_tasks(self.client, started - timedelta(minutes=1), end, MassChatType.single):
            if record.text != text:
                continue
            members = {t.userid for t in self.client.list_mass_tasks(record.msgid).items}
            found = {
                r.external_userid
                for userid in members
                for r in paged(partial(self.client.list_mass_send_results, record.msgid, userid))
            }
            tasks_of[record.msgid] = found
            held.update(found)
        wanted: Counter[str] = Counter()
        misrecorded = 0
        with self.factory() as db:
            for customer_id, status, msgid in db.execute(
                select(MassSend.customer_id, MassSend.status, MassSend.msgid).where(
                    MassSend.message_id.in_(messages)
                )
            ):
                eid = self.customers[customer_id]
                wanted[eid] += 1
                if status != SendStatus.submitted or eid not in tasks_of.get(msgid, set()):
                    misrecorded += 1
        duplicates = sum(max(0, held[e] - wanted[e]) for e in held | wanted)
        lost = sum(max(0, wanted[e] - held[e]) for e in held | wanted)
        # A row not recorded as submitted under a task holding its recipient is lost to siyu's books even when
        # WeCom has it; count it unless it is already counted as lost on WeCom's side.
        return duplicates, max(lost, misrecorded)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 trials of 2,000 contacts")
    parser.add_argument("--trials", type=int, default=0, help="default 100 (10 with --quick)")
    parser.add_argument("--contacts", type=int, default=0, help="default 10,000 (2,000 with --quick)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SIYU_BENCH_DATABASE_URL", ""),
        help="a PostgreSQL URL (or SIYU_BENCH_DATABASE_URL): <database>_send_crash is (re)created there",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("SIYU_BENCH_REDIS_URL", "redis://127.0.0.1:6379/2"),
        help="the Redis the queue uses (its siyu queue is flushed)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url (or set SIYU_BENCH_DATABASE_URL): the harness runs on PostgreSQL")
    trials = args.trials or (10 if args.quick else 100)
    contacts = args.contacts or (2_000 if args.quick else 10_000)
    rng = random.Random(args.seed)
    fake, fake_url = start_fake_wecom(["--corp-id", CORP_ID, "--secret", SECRET, "--no-access-log"])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    duplicates = lost = kills = 0
    try:
        with tempfile.TemporaryDirectory(prefix="siyu-bench-crash-") as tmp:
            url = fresh_postgres(args.database_url, "send_crash")
            harness = Harness(url, args.redis_url, fake_url, contacts, Path(tmp))
            print(
                f"set-up: {contacts} contacts over {MEMBERS} members synced in {time.perf_counter() - wall0:.1f} s"
            )
            d, lo, base_seconds, _ = harness.trial(0, None, rng)
            window = base_seconds
            duplicates, lost = d, lo
            print(
                f"baseline (no kill): 2 messages, {int(contacts * 0.6)} recipients each, same text: "
                f"submitted in {base_seconds:.2f} s, duplicates={d} lost={lo}",
                flush=True,
            )
            times = []
            for n in range(1, trials + 1):
                d, lo, seconds, hit = harness.trial(n, window, rng)
                duplicates, lost, kills = duplicates + d, lost + lo, kills + hit
                times.append(seconds)
                print(
                    f"trial {n}: {'killed mid-submission' if hit else 'killed after it finished'}, "
                    f"{seconds:.2f} s, duplicates={d} lost={lo}",
                    flush=True,
                )
            stop(harness.proc)
            harness.engine.dispose()
    finally:
        stop(fake)
    mean = sum(times) / len(times)
    print(
        f"trials={trials} killed_mid_submission={kills} duplicates={duplicates} lost={lost} "
        f"wall_s={time.perf_counter() - wall0:.1f} bench_cpu_s={time.process_time() - cpu0:.1f} "
        f"load_avg={os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"ratio_vs_no_kill={mean / base_seconds:.2f} (mean trial {mean:.2f} s, baseline {base_seconds:.2f} s)"
    )
    print(f"anomalies={duplicates + lost}", flush=True)


if __name__ == "__main__":
    main()
