"""The settings pages answer another organization's ids like missing ones, and change nothing of theirs."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels import service as channels
from siyu.channels.schemas import CodeIn
from siyu.customers import access, profiles
from siyu.integrations.sandbox.channel_codes import SandboxChannelCodes
from siyu.tenancy.models import ApiToken, User

from .settings_fixtures import console_login, setup_org


def test_an_admin_of_one_organization_cannot_reach_another_ones_rows(
    client: TestClient, make_tenant, db: Session
) -> None:  # type: ignore[no-untyped-def]
    victim = setup_org(db, make_tenant("victim"))
    code = channels.create_code(
        db,
        victim.tenant.org_id,  # type: ignore[attr-defined]
        CodeIn(name="v", state="victim-1", channel="douyin", pool_id=victim.pool_id),
        SandboxChannelCodes(),
    )
    customer = profiles.create_customer(db, victim.tenant.org_id, {"name": "受害者"})  # type: ignore[attr-defined]
    db.commit()
    token_id = db.scalar(select(ApiToken.id).where(ApiToken.org_id == victim.tenant.org_id))  # type: ignore[attr-defined]
    intruder = make_tenant("intruder")
    csrf = console_login(client, f"admin@{intruder.slug}.test")
    gets = [
        f"/settings/channel-codes/{code.id}/edit",
        f"/settings/channel-codes/{code.id}/qr",
        f"/settings/pools/{victim.pool_id}/edit",
        f"/settings/accounts/{victim.account_id}/edit",
        f"/customers/{customer.id}/edit",
    ]
    for path in gets:
        assert client.get(path).status_code == 404, path
    posts = {
        f"/settings/channel-codes/{code.id}": {"name": "taken", "pool_id": victim.pool_id},
        f"/settings/pools/{victim.pool_id}": {"name": "taken", "daily_cap": "1", "warmup": "1"},
        f"/settings/accounts/{victim.account_id}": {"name": "taken", "soft_cap": "1", "hard_cap": "1"},
        f"/settings/users/{victim.tenant.operator_id}": {"is_active": "false"},  # type: ignore[attr-defined]
        f"/settings/tokens/{token_id}/revoke": {},
        f"/settings/tags/{victim.tag_ids[0]}": {"name": "taken"},
        f"/settings/tags/{victim.tag_ids[0]}/delete": {},
        f"/settings/tags/groups/{victim.tag_ids[0]}/delete": {},
        f"/customers/{customer.id}/edit": {"name": "taken"},
    }
    for path, data in posts.items():
        answer = client.post(path, data={"csrf_token": csrf, **data})
        assert answer.status_code in (404, 422), f"{path}: {answer.status_code}"
    merge = client.post(
        "/settings/customers/merge",
        data={"csrf_token": csrf, "survivor_id": customer.id, "merged_id": customer.id + 1, "reason": "x"},
    )
    assert merge.status_code == 404
    db.expire_all()
    assert channels.get_code(db, victim.tenant.org_id, code.id).name == "v"  # type: ignore[attr-defined]
    assert db.get(User, victim.tenant.operator_id).is_active  # type: ignore[attr-defined,union-attr]
    assert db.get(ApiToken, token_id).revoked_at is None  # type: ignore[union-attr]
    assert access.live_customer(db, victim.tenant.org_id, customer.id).name == "受害者"  # type: ignore[attr-defined]
