"""The console's personal-data pages: operators are refused export, erasure and the audit log; consent is
recorded on the customer page; operators never see a mobile inside a note."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.privacy.conftest import MOBILE, Person
from tests.web.test_wecom_settings import _login

from siyu.customers.models import Customer


def test_operators_are_refused_the_privacy_pages(client: TestClient, tenant, person: Person) -> None:  # type: ignore[no-untyped-def]
    csrf = _login(client, f"operator@{tenant.slug}.test")
    cid = person.customer_id
    for path in (
        "/audit",
        f"/customers/{cid}/export",
        f"/customers/{cid}/export.json",
        f"/customers/{cid}/erase",
    ):
        assert client.get(path).status_code == 403, path
    assert (
        client.post(f"/customers/{cid}/erase", data={"confirm": str(cid), "csrf_token": csrf}).status_code
        == 403
    )
    detail = client.get(f"/customers/{cid}")
    assert detail.status_code == 200 and MOBILE not in detail.text and "/erase" not in detail.text


def test_consent_is_recorded_on_the_customer_page(  # type: ignore[no-untyped-def]
    client: TestClient, db: Session, tenant, person: Person
) -> None:
    csrf = _login(client, f"operator@{tenant.slug}.test")
    cid = person.customer_id
    saved = client.post(
        f"/customers/{cid}/consents",
        data={
            "scope": "marketing",
            "granted": "no",
            "source": "phone",
            "note": "电话里拒绝",
            "csrf_token": csrf,
        },
        headers={"HX-Request": "true"},
    )
    assert saved.status_code == 200 and "电话里拒绝" in saved.text
    db.expire_all()
    customer = db.get(Customer, cid)
    assert customer is not None and customer.consent_marketing is False
    bad = client.post(
        f"/customers/{cid}/consents",
        data={"scope": "marketing", "granted": "yes", "source": "telepathy", "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert bad.status_code == 422 and 'role="alert"' in bad.text


def test_admin_sets_retention_on_the_audit_page(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    client.cookies.set("lang", "zh_CN")
    csrf = _login(client, f"admin@{tenant.slug}.test")
    bad = client.post("/audit/retention", data={"webhook_days": "x", "audit_days": "400", "csrf_token": csrf})
    assert bad.status_code == 422 and "请输入整数天数" in bad.text
    ok = client.post("/audit/retention", data={"webhook_days": "14", "audit_days": "400", "csrf_token": csrf})
    assert ok.status_code == 200 and 'value="14"' in ok.text  # after the redirect
    page = client.get("/audit?action=retention_changed")
    assert "保存期限已修改" in page.text
