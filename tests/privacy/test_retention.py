"""Retention: raw webhook payloads and audit entries are pruned by the worker jobs after each
organization's own number of days (the installation's default where it set none)."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from siyu.audit import service as audit
from siyu.audit.models import AuditEntry
from siyu.audit.service import AuditAction
from siyu.audit.tasks import prune_audit
from siyu.kit.clock import utcnow
from siyu.leads.models import WebhookReceipt
from siyu.leads.tasks import prune_receipts
from siyu.wecom.models import InboxItem
from siyu.wecom.tasks import prune
from siyu.worker import queue


def test_each_organization_keeps_payloads_and_audit_entries_as_long_as_it_set(  # type: ignore[no-untyped-def]
    client: TestClient, engine, db: Session, make_tenant
) -> None:
    queue.bind_engine(engine)
    short, default = make_tenant("short-keep"), make_tenant("default-keep")
    bad = client.put(
        "/api/v1/privacy/retention", json={"webhook_days": 0, "audit_days": 400}, headers=short.auth()
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "webhook_days"]
    assert (
        client.put(
            "/api/v1/privacy/retention", json={"webhook_days": 7, "audit_days": 200}, headers=short.auth()
        ).status_code
        == 200
    )
    assert client.get("/api/v1/privacy/retention", headers=default.auth()).json() == {
        "webhook_days": 30,
        "audit_days": 3 * 365,
    }
    assert client.get("/api/v1/privacy/retention", headers=short.auth("operator")).status_code == 403
    ten_days, year = utcnow() - timedelta(days=10), utcnow() - timedelta(days=365)
    for t in (short, default):
        db.add(
            InboxItem(
                org_id=t.org_id,
                source="wecom",
                external_key=f"k{t.org_id}",
                payload={},
                received_at=ten_days,
                processed_at=ten_days,
            )
        )
        db.add(
            WebhookReceipt(
                org_id=t.org_id,
                platform="douyin",
                msg_id=f"m{t.org_id}",
                event="e",
                body={},
                received_at=ten_days,
            )
        )
        entry = audit.record(db, t.org_id, AuditAction.customer_exported, target_type="customer", target_id=1)
        # Ageing an entry needs a new row: the log refuses updates, so insert one dated a year ago.
        db.add(AuditEntry(org_id=t.org_id, action=entry.action, created_at=year))
    db.commit()
    assert prune() == 1 and prune_receipts() == 1
    assert prune_audit() == 1
    db.expire_all()
    assert set(db.scalars(select(InboxItem.org_id))) == {default.org_id}
    assert set(db.scalars(select(WebhookReceipt.org_id))) == {default.org_id}
    kept = db.execute(text("SELECT org_id, count(*) FROM audit_log GROUP BY org_id")).all()
    # The short org keeps its fresh entries (one export, one retention change); the default org keeps all.
    assert dict(kept) == {short.org_id: 2, default.org_id: 2}
