"""Schemathesis fuzzes every operation in /openapi.json: whatever it sends, siyu never answers 5xx.

The app is built at collection time (schemathesis needs the schema then) on its own seeded SQLite
file, so each operation becomes its own test and xdist can spread them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.app import create_app
from siyu.customers import service as customers
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.migrate import upgrade
from siyu.kit.settings import Settings
from siyu.tenancy import service as identity
from siyu.tenancy.models import Role


def _seeded_app():  # type: ignore[no-untyped-def]
    workdir = Path(tempfile.mkdtemp(prefix="siyu-fuzz-"))
    url = f"sqlite:///{workdir / 'fuzz.db'}"
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
            customer = customers.create_customer(db, org.id, {"name": f"客户{i}", "mobile": f"1380000000{i}"})
            customers.follow(db, org.id, customer.id, account.id, source="fuzz")
        token = identity.issue_api_token(db, admin, "fuzz").plaintext
        db.commit()
    app = create_app(
        Settings(data_dir=workdir / "var", database_url=url, secret_key="fuzz-secret"), engine=engine
    )
    return app, {"Authorization": f"Bearer {token}"}


APP, AUTH = _seeded_app()
# Revoking tokens would only lock the fuzzer out of the rest of the run.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(
    method="DELETE", path="/api/v1/tokens/{token_id}"
)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
