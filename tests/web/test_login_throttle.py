"""Login throttling: attempts are counted before the password is checked, atomically, per (email, address)
pair with a ceiling per address; on the in-memory counter and on the real Redis alike."""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from siyu.app import create_app
from siyu.kit.loopback import LoopbackServer
from siyu.kit.settings import Settings
from siyu.tenancy import service as identity
from siyu.tenancy.models import Role

REDIS_URL = os.environ.get("SIYU_TEST_REDIS_URL", "")
COUNTERS = ["memory"] + (["redis"] if REDIS_URL else [])
PASSWORD = "correct-horse-battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
pytestmark = pytest.mark.slow  # tens of logins each (a password hash per attempt)


@pytest.fixture(params=COUNTERS)
def throttled_app(request: pytest.FixtureRequest, engine: Engine, tmp_path) -> Iterator[FastAPI]:  # type: ignore[no-untyped-def]
    """The app with a pair limit of 10 and an address ceiling of 30, counting in memory or in Redis."""
    redis_url = REDIS_URL if request.param == "redis" else ""
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=engine.url.render_as_string(False),
        secret_key="test-secret-key",
        redis_url=redis_url,
        login_max_failures=10,
        login_max_failures_per_address=30,
    )
    yield create_app(settings, engine=engine)
    if redis_url:  # the counters' keys name addresses every test shares: start each test from zero
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter("siyu:attempts:*"):
            client.delete(key)


@pytest.fixture
def owner_email(db: Session) -> str:
    """A fresh organization's owner, with password PASSWORD."""
    slug = f"t{uuid.uuid4().hex[:8]}"
    org = identity.create_organization(db, slug, slug)
    user = identity.create_user(db, org.id, f"owner@{slug}.test", "Owner", PASSWORD, Role.owner)
    db.commit()
    return user.email


def _attempt(client: httpx.Client | TestClient, email: str, password: str) -> int:
    client.cookies.clear()  # each attempt a new visitor (a session from a success would skip the form)
    token = CSRF.search(client.get("/login").text)
    assert token
    form = {"email": email, "password": password, "csrf_token": token.group(1)}
    return client.post("/login", data=form, follow_redirects=False).status_code


def test_concurrent_guesses_get_no_more_401s_than_the_limit(throttled_app: FastAPI, owner_email: str) -> None:
    statuses: list[int] = []
    start = threading.Barrier(40)

    with LoopbackServer(throttled_app, name="login") as server:

        def guess(i: int) -> None:
            with httpx.Client(base_url=server.base_url, timeout=60) as client:
                token = CSRF.search(client.get("/login").text)
                assert token
                form = {"email": owner_email, "password": f"wrong-{i}", "csrf_token": token.group(1)}
                start.wait()  # all 40 posts leave together
                statuses.append(client.post("/login", data=form, follow_redirects=False).status_code)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert Counter(statuses) == {401: 10, 429: 30}


def test_the_owner_is_not_locked_out_by_guesses_from_elsewhere(
    throttled_app: FastAPI, owner_email: str
) -> None:
    with (
        TestClient(throttled_app, client=("203.0.113.7", 50000)) as attacker,
        TestClient(throttled_app, client=("198.51.100.2", 50000)) as owner,
    ):
        assert [_attempt(attacker, owner_email, "guess") for _ in range(11)] == [401] * 10 + [429]
        assert _attempt(attacker, owner_email, PASSWORD) == 429  # the guessing address waits out the window
        assert _attempt(owner, owner_email, PASSWORD) == 303  # the owner, elsewhere, logs in


def test_one_address_spraying_many_accounts_hits_its_ceiling(
    throttled_app: FastAPI, owner_email: str
) -> None:
    with TestClient(throttled_app, client=("203.0.113.9", 50000)) as sprayer:
        statuses = [_attempt(sprayer, f"user{i}@example.test", "123456") for i in range(31)]
        assert statuses == [401] * 30 + [429]
        assert _attempt(sprayer, owner_email, PASSWORD) == 429


def test_successful_logins_do_not_use_up_an_address(throttled_app: FastAPI, owner_email: str) -> None:
    # Forty colleagues behind one office address log in within the window.
    with TestClient(throttled_app, client=("192.0.2.1", 50000)) as office:
        assert {_attempt(office, owner_email, PASSWORD) for _ in range(40)} == {303}
        assert _attempt(office, owner_email, "typo") == 401
