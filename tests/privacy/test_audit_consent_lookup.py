"""Defect 8 (full-number search oracle, unmasked mobiles in notes), the audit log of admin actions, consent
records driving the flag, and retention."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from tests.privacy.conftest import MOBILE, NOTE_TEXT, Person

from siyu.kit.ratelimit import RedisAttemptCounter
from siyu.kit.settings import Settings

REDIS_URL = os.environ.get("SIYU_TEST_REDIS_URL", "")


@pytest.fixture(params=["memory"] + (["redis"] if REDIS_URL else []))
def lookups(request: pytest.FixtureRequest, app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app's full-number search counter: in memory, and the shared Redis one when configured."""
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        prefix = f"siyu-test:{uuid.uuid4().hex}:"
        app.state.mobile_lookups = RedisAttemptCounter(client, window_seconds=3600, prefix=prefix)
        yield request.param
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)
        return
    yield request.param


def test_full_number_search_is_rate_limited_per_user_and_audited(  # type: ignore[no-untyped-def]
    client: TestClient, tenant, person: Person, lookups: str
) -> None:
    limit = Settings().mobile_lookups_per_hour
    guesses = [f"139123{n:05d}" for n in range(limit + 5)]
    answers = [
        client.get(f"/api/v1/customers?mobile={g}", headers=tenant.auth("operator")).status_code
        for g in guesses
    ]
    assert answers[:limit] == [200] * limit
    assert set(answers[limit:]) == {429}  # the oracle is shut before a number can be found by guessing
    assert (
        client.get(f"/api/v1/customers/count?mobile={MOBILE}", headers=tenant.auth("operator")).status_code
        == 429
    )
    # The last 4 digits (what the mask shows anyway) and admins are not limited.
    assert client.get("/api/v1/customers?mobile=5678", headers=tenant.auth("operator")).status_code == 200
    assert client.get(f"/api/v1/customers?mobile={MOBILE}", headers=tenant.auth("admin")).status_code == 200
    entries = client.get("/api/v1/audit?action=mobile_lookup&limit=200", headers=tenant.auth("admin")).json()
    assert len(entries["items"]) == limit
    assert all(e["actor_id"] == tenant.operator_id and "****" in e["target_id"] for e in entries["items"])


def test_notes_and_timeline_mask_mobiles_for_operators(client: TestClient, tenant, person: Person) -> None:  # type: ignore[no-untyped-def]
    cid = person.customer_id
    notes = client.get(f"/api/v1/customers/{cid}/notes", headers=tenant.auth("operator")).json()
    assert [n["body"] for n in notes] == ["客户说手机 139****5678 白天打"]
    timeline = client.get(f"/api/v1/customers/{cid}/timeline?limit=200", headers=tenant.auth("operator")).text
    assert MOBILE not in timeline and "139****5678" in timeline
    page = client.get(f"/customers/{cid}", headers=tenant.auth("operator"))
    assert page.status_code == 200 and MOBILE not in page.text
    admin_notes = client.get(f"/api/v1/customers/{cid}/notes", headers=tenant.auth("admin")).json()
    assert [n["body"] for n in admin_notes] == [NOTE_TEXT]


def test_admin_actions_are_audited_and_operators_cannot_read_the_log(  # type: ignore[no-untyped-def]
    client: TestClient, db: Session, tenant
) -> None:
    admin = tenant.auth("admin")
    assert (
        client.patch(f"/api/v1/users/{tenant.operator_id}", json={"role": "admin"}, headers=admin).status_code
        == 200
    )
    token = client.post("/api/v1/tokens", json={"name": "ci"}, headers=admin).json()
    assert client.delete(f"/api/v1/tokens/{token['id']}", headers=admin).status_code == 204
    saved = client.put(
        "/api/v1/wecom/credentials",
        json={"corp_id": "ww1234567890", "secret": "s" * 43, "token": "tok", "encoding_aes_key": "a" * 43},
        headers=admin,
    )
    assert saved.status_code == 200, saved.text
    douyin = client.put(
        "/api/v1/leads-config/douyin",
        json={"client_key": "ck", "client_secret": "douyin-app-secret-0042"},
        headers=admin,
    )
    assert douyin.status_code == 200, douyin.text
    retention = client.put(
        "/api/v1/privacy/retention", json={"webhook_days": 7, "audit_days": 400}, headers=admin
    )
    assert retention.status_code == 200
    actions = [e["action"] for e in client.get("/api/v1/audit", headers=admin).json()["items"]]
    assert actions == [
        "retention_changed",
        "douyin_app_saved",
        "wecom_credentials_saved",
        "api_token_revoked",
        "api_token_created",
        "user_role_changed",
    ]
    log = client.get("/api/v1/audit", headers=admin).text
    # Secrets never logged. A distinctive Douyin secret: a short one could occur by chance in a random token.
    assert "s" * 43 not in log and "douyin-app-secret-0042" not in log
    # The promoted operator is an admin now; a fresh operator cannot read or page the log.
    assert (
        client.patch(
            f"/api/v1/users/{tenant.operator_id}", json={"role": "operator"}, headers=admin
        ).status_code
        == 200
    )
    assert client.get("/api/v1/audit", headers=tenant.auth("operator")).status_code == 403
    # No route alters it, and the database itself refuses an update.
    assert client.delete("/api/v1/audit", headers=admin).status_code == 405
    with pytest.raises(DBAPIError):
        db.execute(text("UPDATE audit_log SET action = 'nothing'"))
        db.flush()
    db.rollback()


def test_consent_records_drive_the_flag(client: TestClient, tenant, person: Person) -> None:  # type: ignore[no-untyped-def]
    cid = person.customer_id
    url = f"/api/v1/customers/{cid}/consents"

    def flag() -> bool:
        return bool(
            client.get(f"/api/v1/customers/{cid}", headers=tenant.auth("admin")).json()["consent_marketing"]
        )

    assert flag() is True  # created with consent: one record (source unspecified) says so
    withdrawn = client.post(
        url,
        json={"granted": False, "source": "chat", "note": "聊天中说不要再发"},
        headers=tenant.auth("operator"),
    )
    assert withdrawn.status_code == 201, withdrawn.text
    assert flag() is False
    # A record dated before the latest one does not override it.
    old = client.post(
        url,
        json={"granted": True, "source": "form", "at": "2020-01-01T00:00:00+00:00"},
        headers=tenant.auth("admin"),
    )
    assert old.status_code == 201 and flag() is False
    assert (
        client.post(url, json={"granted": True, "source": "form"}, headers=tenant.auth("admin")).status_code
        == 201
    )
    assert flag() is True
    # The profile patch goes through a record too, so flag and latest record never disagree.
    client.patch(f"/api/v1/customers/{cid}", json={"consent_marketing": False}, headers=tenant.auth("admin"))
    records = client.get(url, headers=tenant.auth("admin")).json()
    assert flag() is False and records[0]["granted"] is False
    bad = client.post(url, json={"granted": True, "source": "telepathy"}, headers=tenant.auth("admin"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "source"]
