"""Benchmark: server time of the chat sidebar on the demo brand.

The demo brand (10,000 customers; 1,500 with --quick) is loaded into a fresh SQLite database and connected
to the fake WeCom and Douyin servers as `make demo` does. The app runs in-process under uvicorn on loopback
and is called over HTTP as an operator whose session the sidebar's OAuth2 would have started: the page
itself (agentConfig signed, the app's ticket cached after the first call) and the customer card of a chat,
for customers that operator follows. Each request's server time is read from a timing middleware.

Baseline, measured in the same run on the same server: the console's customer page (/customers/{id}) of the
same customers, which shows a comparable amount of one customer's data.

    python bench/sidebar.py            # 10,000 customers, 200 cards
    python bench/sidebar.py --quick    # 1,500 customers, 40 cards
Last line: card_p95_ms=N (the sidebar card's p95 server time).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from siyu.accounts.models import Account, AccountKind
from siyu.app import create_app
from siyu.customers.models import CustomerIdentity, FollowRelation, FollowStatus, IdentityKind
from siyu.demo import generate_world
from siyu.demo.fakes import running_fakes
from siyu.demo.loader import load_world
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.loopback import LoopbackServer
from siyu.kit.migrate import upgrade
from siyu.kit.settings import Settings
from siyu.tenancy import service as identity
from siyu.tenancy.deps import SESSION_COOKIE
from siyu.tenancy.models import User

ORG = "bench-sidebar"
SECRET_KEY = "bench-sidebar-secret"
SERVER_TIME = "x-bench-server-ms"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    """Load, serve, time; print the ratio against the console's customer page and the headline last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    customers, cards = (1_500, 40) if args.quick else (10_000, 200)
    with tempfile.TemporaryDirectory(prefix="siyu-bench-sidebar-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'siyu.db'}"
        upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        summary = load_world(engine, generate_world(customers=customers, seed=42, end=end), org_slug=ORG)
        _say(f"loaded {customers:,} customers in {time.perf_counter() - started:.1f} s")
        settings = Settings(data_dir=Path(tmp), database_url=url, secret_key=SECRET_KEY)
        app = create_app(settings, engine=engine)

        @app.middleware("http")
        async def server_time(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            t0 = time.perf_counter()
            response = await call_next(request)
            response.headers[SERVER_TIME] = f"{(time.perf_counter() - t0) * 1000:.3f}"
            return response

        with (
            LoopbackServer(app, name="siyu-bench") as live,
            running_fakes(
                engine, summary.org_id, ORG, SECRET_KEY, live.base_url, wecom_port=0, douyin_port=0
            ),
        ):
            with make_sessionmaker(engine)() as db:
                account = db.scalars(
                    select(Account)
                    .where(
                        Account.org_id == summary.org_id,
                        Account.kind == AccountKind.wecom_member,
                        Account.operator_id.is_not(None),
                    )
                    .order_by(Account.id)
                ).first()
                assert account is not None and account.operator_id is not None
                followed = db.execute(
                    select(CustomerIdentity.customer_id, CustomerIdentity.value)
                    .join(FollowRelation, FollowRelation.customer_id == CustomerIdentity.customer_id)
                    .where(
                        FollowRelation.account_id == account.id,
                        FollowRelation.status == FollowStatus.active,
                        CustomerIdentity.kind == IdentityKind.wecom_external_userid,
                    )
                ).all()
                user = db.get(User, account.operator_id)
                assert user is not None
                session = identity.start_session(db, user, 1)
                db.commit()
            picked = random.Random(7).sample(followed, min(cards, len(followed)))
            _say(f"operator {user.email}: {len(followed):,} WeCom customers; timing {len(picked)} of them")
            http = httpx.Client(
                base_url=live.base_url, cookies={SESSION_COOKIE: session.cookie_value}, timeout=60
            )

            def timed(path: str) -> float:
                res = http.get(path)
                assert res.status_code == 200, (path, res.status_code, res.text[:300])
                return float(res.headers[SERVER_TIME])

            # Warm-up: the first page fetches the app's ticket, the first card trains the intent model.
            timed(f"/sidebar/{ORG}/")
            timed(f"/sidebar/{ORG}/contact/{picked[0][1]}")
            timed(f"/customers/{picked[0][0]}")
            cpu0 = time.process_time()
            page = [timed(f"/sidebar/{ORG}/") for _ in range(len(picked) // 2)]
            card = [timed(f"/sidebar/{ORG}/contact/{external}") for _, external in picked]
            cpu_sidebar = time.process_time() - cpu0
            cpu0 = time.process_time()
            console = [timed(f"/customers/{cid}") for cid, _ in picked]
            cpu_console = time.process_time() - cpu0
            http.close()
        engine.dispose()
    for name, values in (("sidebar page", page), ("sidebar card", card), ("console customer page", console)):
        _say(
            f"{name:<22} p50 {statistics.median(values):7.1f} ms  p95 {_pct(values, 0.95):7.1f} ms  "
            f"max {max(values):7.1f} ms  (n={len(values)})"
        )
    _say(f"process CPU: sidebar page+card {cpu_sidebar:.2f} s, console pages {cpu_console:.2f} s")
    _say(f"card p95 / console customer page p95 = {_pct(card, 0.95) / _pct(console, 0.95):.2f}")
    _say(f"card_p95_ms={_pct(card, 0.95):.1f}")


if __name__ == "__main__":
    main()
