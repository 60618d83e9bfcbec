"""Times on the console are in the organization's time zone: Asia/Shanghai unless the organization sets its
own (organization setting ``timezone``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.customers import profiles
from siyu.customers.models import Customer
from siyu.kit.errors import Invalid
from siyu.tenancy import service as identity

from .test_console import hidden_csrf


def test_times_follow_the_organizations_zone(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    customer = profiles.create_customer(db, tenant.org_id, {"name": "时区客"})
    row = db.get(Customer, customer.id)
    assert row is not None
    row.created_at = datetime(2026, 7, 1, 23, 30, tzinfo=UTC)
    db.commit()
    form = client.get("/login")
    client.post(
        "/login",
        data={
            "email": f"admin@{tenant.slug}.test",
            "password": "password123",
            "csrf_token": hidden_csrf(form.text),
        },
    )
    assert "2026-07-02 07:30" in client.get(f"/customers/{customer.id}").text  # Shanghai, UTC+8
    identity.set_org_timezone(db, tenant.org_id, "Europe/London")
    db.commit()
    assert "2026-07-02 00:30" in client.get(f"/customers/{customer.id}").text  # London summer time, UTC+1
    assert identity.org_timezone(db, tenant.org_id, "Asia/Shanghai") == "Europe/London"


def test_an_unknown_zone_is_refused_naming_the_field(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Invalid) as refused:
        identity.set_org_timezone(db, tenant.org_id, "Mars/Olympus")
    assert refused.value.field == "timezone"
    assert identity.org_timezone(db, tenant.org_id, "Asia/Shanghai") == "Asia/Shanghai"
