"""Schemathesis fuzzes every operation in /openapi.json: whatever it sends, siyu never answers 5xx.

The app is built at collection time (schemathesis needs the schema then) on its own seeded SQLite
file, so each operation becomes its own test and xdist can spread them. When SIYU_TEST_DATABASE_URL
names a PostgreSQL server, the same run fuzzes a second app on a database of its own there
(``<name>_fuzz``, recreated), since PostgreSQL refuses input SQLite takes (NUL characters, ids past
64 bits).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import create_engine, make_url, text

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.app import create_app
from siyu.customers import follows, profiles
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.migrate import upgrade
from siyu.kit.settings import Settings
from siyu.tenancy import service as identity
from siyu.tenancy.models import Role


def _fuzz_database(base_url: str) -> str:
    """A fresh database of its own beside the test database (the suite resets that one between tests), one
    per xdist worker: each worker collects this module, and one dropping the other's would end its run."""
    base = make_url(base_url)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    target = base.set(database=f"{base.database}_fuzz{'_' + worker if worker else ''}")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    return target.render_as_string(hide_password=False)


def _seeded_app(url: str | None = None):  # type: ignore[no-untyped-def]
    workdir = Path(tempfile.mkdtemp(prefix="siyu-fuzz-"))
    url = url or f"sqlite:///{workdir / 'fuzz.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as db:
        org = identity.create_organization(db, "Fuzz", "fuzz")
        admin = identity.create_user(db, org.id, "admin@fuzz.test", "Admin", "password123", Role.admin)
        account = accounts.create_account(
            db,
            org.id,
            AccountIn(kind=AccountKind.wecom_member, external_id="u1", name="Member 1", operator_id=admin.id),
        )
        for i in range(3):
            customer = profiles.create_customer(db, org.id, {"name": f"客户{i}", "mobile": f"1380000000{i}"})
            follows.follow(db, org.id, customer.id, account.id, source="fuzz")
        token = identity.issue_api_token(db, admin, "fuzz").plaintext
        db.commit()
    app = create_app(
        Settings(data_dir=workdir / "var", database_url=url, secret_key="fuzz-secret"), engine=engine
    )
    return app, {"Authorization": f"Bearer {token}"}


def _schema(app):  # type: ignore[no-untyped-def]
    # Revoking tokens would only lock the fuzzer out of the rest of the run.
    return schemathesis.openapi.from_asgi("/openapi.json", app).exclude(
        method="DELETE", path="/api/v1/tokens/{token_id}"
    )


APP, AUTH = _seeded_app()
schema = _schema(APP)
PG_URL = os.environ.get("SIYU_TEST_DATABASE_URL", "")
if PG_URL.startswith("postgresql"):
    PG_APP, PG_AUTH = _seeded_app(_fuzz_database(PG_URL))
    pg_schema = _schema(PG_APP)
else:
    PG_AUTH = {}
    pg_schema = schema  # its tests are skipped below


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])


@pytest.mark.slow
@pytest.mark.skipif(not PG_URL.startswith("postgresql"), reason="SIYU_TEST_DATABASE_URL names no PostgreSQL")
@pg_schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_on_postgresql(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=PG_AUTH, checks=[not_a_server_error])
