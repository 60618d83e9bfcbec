"""Shared fixtures: a migrated database per test on SQLite, and on PostgreSQL when configured.

Set SIYU_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1/siyu_test) to run every
database test on PostgreSQL as well; the schema is always built by the Alembic migrations.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles
from fastapi.testclient import TestClient
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session

from siyu.app import create_app
from siyu.kit.db import Base, make_engine, make_sessionmaker
from siyu.kit.migrate import upgrade
from siyu.kit.settings import Settings
from siyu.leads.intent import get_classifier
from siyu.tenancy import service as identity
from siyu.tenancy.models import Role
from siyu.worker import queue

PG_URL = os.environ.get("SIYU_TEST_DATABASE_URL", "")

# Real argon2id, at its cheapest parameters: tests create many users and need no brute-force resistance.
identity._hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="session", autouse=True)
def _intent_classifier_ready() -> None:
    """Fit the intent classifier once, as a served app warms it at start-up (the test servers run
    without their lifespan): a fake Douyin webhook waits 10 s, as Douyin does, for the first comment."""
    get_classifier()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy (much faster than migrating per test)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _worker_database(url: str) -> str:
    """Under pytest-xdist each worker gets its own database (name_gw0, ...), created when missing."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    target = base.set(database=f"{base.database}_{worker}")
    admin = make_engine(base.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    return target.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_migrated() -> str:
    """The PostgreSQL test database (one per xdist worker), wiped and migrated once per run."""
    url = _worker_database(PG_URL)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)
    return url


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database on each configured backend."""
    if request.param == "sqlite":
        path = tmp_path / "siyu.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        eng = make_engine(f"sqlite:///{path}")
        yield eng
        eng.dispose()
        return
    eng = make_engine(request.getfixturevalue("pg_migrated"))
    yield eng
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with eng.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session for arranging data and checking results directly (commit to make it visible to the app)."""
    session = make_sessionmaker(engine)()
    yield session
    session.close()


@pytest.fixture
def app(engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The application bound to the test database."""
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=str(engine.url.render_as_string(False)),
        secret_key="test-secret-key",
        wecom_api_hosts="qyapi.weixin.qq.com,127.0.0.1",  # the fake WeCom server listens on loopback
    )
    return create_app(settings, engine=engine)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """An HTTP client without credentials."""
    with TestClient(app) as c:
        yield c


@dataclass
class Tenant:
    """An organization with an owner, an admin and an operator, each with an API token."""

    org_id: int
    slug: str
    owner_id: int
    admin_id: int
    operator_id: int
    owner_token: str
    admin_token: str
    operator_token: str

    def auth(self, role: str = "admin") -> dict[str, str]:
        """Authorization header for the user of that role."""
        return {"Authorization": f"Bearer {getattr(self, role + '_token')}"}


@pytest.fixture
def make_tenant(db: Session):  # type: ignore[no-untyped-def]
    """Factory: create an organization with its three users and their tokens."""
    counter = {"n": 0}

    def factory(slug: str | None = None) -> Tenant:
        counter["n"] += 1
        slug = slug or f"brand-{counter['n']}"
        org = identity.create_organization(db, slug.title(), slug)
        users = {}
        tokens = {}
        for role in (Role.owner, Role.admin, Role.operator):
            user = identity.create_user(
                db, org.id, f"{role}@{slug}.test", f"{role} of {slug}", "password123", role
            )
            users[role] = user.id
            tokens[role] = identity.issue_api_token(db, user, "test").plaintext
        db.commit()
        return Tenant(
            org.id,
            slug,
            users[Role.owner],
            users[Role.admin],
            users[Role.operator],
            tokens[Role.owner],
            tokens[Role.admin],
            tokens[Role.operator],
        )

    return factory


@pytest.fixture
def tenant(make_tenant) -> Tenant:  # type: ignore[no-untyped-def]
    """One organization with owner, admin and operator."""
    return make_tenant()


@pytest.fixture
def inline_worker(app):  # type: ignore[no-untyped-def]
    """Tasks run inline at enqueue (Huey immediate mode) against the test's database and settings."""
    queue.bind_engine(app.state.engine)
    queue.bind_settings(app.state.settings)
    queue.configure(immediate=True)
    yield queue.huey
    queue.huey.immediate = False
