"""Comment intake: the Douyin webhook (signature, challenge, Msg-Id dedupe, replay) and CSV/JSON import."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.customers.models import Customer, CustomerIdentity, IdentityKind
from siyu.events.models import Event
from siyu.integrations.douyin import webhook as dy
from siyu.kit.crypto import decrypt_secret
from siyu.leads import intake, service
from siyu.leads.models import Comment, Lead, LeadStatus, WebhookReceipt
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal

SECRET_KEY = "test-secret-key"  # the app fixture's secret key
CLIENT_KEY = "awtestclientkey"
CLIENT_SECRET = "douyin-test-secret"
ACCOUNT = "_000brandaccount"


def configure(
    db: Session, org_id: int, *, client_key: str = CLIENT_KEY, client_secret: str = CLIENT_SECRET
) -> None:
    service.configure_douyin(
        db, org_id, SECRET_KEY, client_key=client_key, client_secret=client_secret, account_open_id=ACCOUNT
    )
    db.commit()


def comment_body(
    text: str,
    *,
    comment_id: str = "@c1",
    user: str = "_000fan1",
    item: str = "@video7",
    client_key: str = CLIENT_KEY,
) -> bytes:
    comment = dy.DouyinComment(comment_id, user, text, item, datetime(2026, 11, 23, 4, 0, tzinfo=UTC))
    return dy.comment_event_body(client_key, ACCOUNT, comment)


def post(
    client: TestClient,
    slug: str,
    body: bytes,
    *,
    secret: str | None = CLIENT_SECRET,
    msg_id: str | None = "m1",
    signature: str | None = None,
) -> Any:
    headers = {"Content-Type": "application/json"}
    if msg_id is not None:
        headers["Msg-Id"] = msg_id
    if signature is not None:
        headers["X-Douyin-Signature"] = signature
    elif secret is not None:
        headers["X-Douyin-Signature"] = dy.sign(secret, body)
    return client.post(f"/hooks/douyin/{slug}", content=body, headers=headers)


def counts(db: Session) -> tuple[int, int, int]:
    db.expire_all()
    return (
        db.scalar(select(func.count()).select_from(WebhookReceipt)) or 0,
        db.scalar(select(func.count()).select_from(Comment)) or 0,
        db.scalar(select(func.count()).select_from(Lead)) or 0,
    )


def test_client_secret_is_stored_encrypted(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    configure(db, tenant.org_id)
    app = service.douyin_app(db, tenant.org_id)
    assert app is not None and CLIENT_SECRET not in app.client_secret_enc
    assert decrypt_secret(app.client_secret_enc, SECRET_KEY) == CLIENT_SECRET


def test_verify_webhook_challenge(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    configure(db, tenant.org_id)
    body = json.dumps(
        {"event": "verify_webhook", "client_key": CLIENT_KEY, "content": {"challenge": 8675309}}
    ).encode()
    response = post(client, tenant.slug, body)
    assert response.status_code == 200
    assert response.json() == {"challenge": 8675309}
    assert counts(db) == (0, 0, 0)


def test_high_intent_comment_becomes_a_lead_with_deadline(
    client: TestClient,
    db: Session,
    tenant,  # type: ignore[no-untyped-def]
) -> None:
    configure(db, tenant.org_id)
    response = post(client, tenant.slug, comment_body("求资料"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stored"
    lead = db.scalar(select(Lead))
    assert lead is not None and response.json()["lead_id"] == lead.id
    assert lead.status == LeadStatus.open and lead.intent == "material"
    assert lead.reply_due_at - lead.created_at == timedelta(seconds=300)
    comment = db.get(Comment, lead.comment_id)
    assert comment is not None and comment.intent == "material" and comment.confidence > 0.5
    customer = db.get(Customer, lead.customer_id)
    assert customer is not None and customer.name == ""  # Douyin sends no commenter name
    assert customer.source == "douyin_comment" and "@video7" in (customer.source_detail or "")
    ident = db.scalar(select(CustomerIdentity).where(CustomerIdentity.customer_id == customer.id))
    assert ident is not None and (ident.kind, ident.value) == (IdentityKind.douyin_open_id, "_000fan1")
    event = db.scalar(select(Event).where(Event.customer_id == customer.id, Event.type == "lead_commented"))
    assert event is not None
    assert {k: event.properties[k] for k in ("lead_id", "platform", "intent")} == {
        "lead_id": lead.id,
        "platform": "douyin",
        "intent": "material",
    }
    assert event.properties["comment_id"] == comment.external_id and event.properties["confidence"] > 0.5
    assert db.scalar(select(Event).where(Event.type == "comment")) is None


def test_low_intent_comment_is_stored_without_lead(
    client: TestClient,
    db: Session,
    tenant,  # type: ignore[no-untyped-def]
) -> None:
    configure(db, tenant.org_id)
    assert post(client, tenant.slug, comment_body("哈哈哈哈 太好笑了")).status_code == 200
    assert counts(db) == (1, 1, 0)


@pytest.mark.parametrize("case", ["missing", "wrong", "other_secret", "tampered"])
def test_unsigned_or_badly_signed_webhook_is_refused_and_nothing_stored(
    client: TestClient,
    db: Session,
    tenant,
    case: str,  # type: ignore[no-untyped-def]
) -> None:
    configure(db, tenant.org_id)
    body = comment_body("求资料")
    if case == "missing":
        response = post(client, tenant.slug, body, secret=None)
    elif case == "wrong":
        response = post(client, tenant.slug, body, signature="0" * 40)
    elif case == "other_secret":
        response = post(client, tenant.slug, body, secret="not-the-secret")
    else:
        response = post(
            client,
            tenant.slug,
            body.replace("求资料".encode(), "多少钱".encode()),
            signature=dy.sign(CLIENT_SECRET, body),
        )
    assert response.status_code == 401
    assert response.json()["field"] == "X-Douyin-Signature"
    assert counts(db) == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (
            b'{"event":"item_comment_reply","client_key":"awtestclientkey","content":"{}"}',
            "content.comment_id",
        ),
        (
            (
                b'{"event":"item_comment_reply","client_key":"awtestclientkey","content":"{\\"comment_id\\":\\"x\\",'
                b'\\"reply_to_item_id\\":\\"v\\",\\"create_time\\":\\"soon\\"}"}'
            ),
            "content.create_time",
        ),
    ],
)
def test_malformed_signed_webhook_is_400_and_nothing_stored(
    client: TestClient,
    db: Session,
    tenant,
    body: bytes,
    field: str,  # type: ignore[no-untyped-def]
) -> None:
    configure(db, tenant.org_id)
    response = post(client, tenant.slug, body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert counts(db) == (0, 0, 0)


def test_other_apps_client_key_is_forbidden(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    configure(db, tenant.org_id)
    response = post(client, tenant.slug, comment_body("求资料", client_key="someone-else"))
    assert response.status_code == 403
    assert counts(db) == (0, 0, 0)


def test_unknown_org_or_unconfigured_app_is_404(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    assert post(client, tenant.slug, comment_body("求资料")).status_code == 404
    assert post(client, "no-such-org", comment_body("求资料")).status_code == 404
    assert counts(db) == (0, 0, 0)


def test_msg_id_dedupes_retries(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    configure(db, tenant.org_id)
    body = comment_body("求资料")
    assert post(client, tenant.slug, body, msg_id="same").json()["status"] == "stored"
    assert post(client, tenant.slug, body, msg_id="same").json() == {"status": "duplicate"}
    assert counts(db) == (1, 1, 1)


def test_replayed_comment_with_new_msg_id_makes_one_lead(
    client: TestClient,
    db: Session,
    tenant,  # type: ignore[no-untyped-def]
) -> None:
    configure(db, tenant.org_id)
    body = comment_body("求资料")
    for n in range(3):
        assert post(client, tenant.slug, body, msg_id=f"m{n}").status_code == 200
    assert counts(db) == (3, 1, 1)
    # One comment event (and the customer_added of the commenter's profile).
    assert db.scalar(select(func.count()).select_from(Event).where(Event.type != "customer_added")) == 1


def test_own_replies_are_not_leads(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    configure(db, tenant.org_id)
    response = post(client, tenant.slug, comment_body("求资料 已私信", user=ACCOUNT))
    assert response.json() == {"status": "own_reply"}
    assert counts(db) == (1, 0, 0)


def test_cross_org_webhooks_and_leads_are_isolated(
    client: TestClient,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
) -> None:
    a, b = make_tenant("brand-a"), make_tenant("brand-b")
    configure(db, a.org_id)
    configure(db, b.org_id, client_key="awbkey", client_secret="b-secret")
    # A's signature does not open B's endpoint.
    assert post(client, b.slug, comment_body("求资料", client_key="awbkey")).status_code == 401
    assert post(client, a.slug, comment_body("求资料")).status_code == 200
    # The same Douyin comment id arriving for B is B's own comment.
    assert (
        post(client, b.slug, comment_body("求资料", client_key="awbkey"), secret="b-secret").status_code
        == 200
    )
    lead_a = db.scalar(select(Lead).where(Lead.org_id == a.org_id))
    assert lead_a is not None
    assert client.get(f"/api/v1/leads/{lead_a.id}", headers=b.auth()).status_code == 404
    assert (
        client.post(
            f"/api/v1/leads/{lead_a.id}/reply", json={"code_url": "https://x.test/c"}, headers=b.auth()
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/api/v1/comments/{lead_a.comment_id}/intent", json={"intent": "other"}, headers=b.auth()
        ).status_code
        == 404
    )
    ids_b = [row["id"] for row in client.get("/api/v1/leads", headers=b.auth()).json()]
    assert lead_a.id not in ids_b and len(ids_b) == 1
    customers_a = {c.id for c in db.scalars(select(Customer).where(Customer.org_id == a.org_id))}
    customers_b = {c.id for c in db.scalars(select(Customer).where(Customer.org_id == b.org_id))}
    assert len(customers_a) == len(customers_b) == 1 and not customers_a & customers_b


# --- file import -----------------------------------------------------------------------------------

CSV = (
    "comment_id,content,commented_at,video_id,nickname\n"
    "x1,求资料,2026-11-23 12:00:00,n100,阿花\n"
    ",多少钱,2026-11-23 12:01:00,n100,无名\n"
    "x3,好好看,2026-11-23 12:02:00,n100,小王\n"
    "x4,怎么买,yesterday,n100,小赵\n"
    "x5,链接在哪里,1763870400,n101,小钱\n"
)


def test_csv_import_reports_bad_rows_by_number(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/api/v1/comments/import?platform=xiaohongshu",
        content=CSV.encode(),
        headers={**tenant.auth("operator"), "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["rows_read"] == 5 and report["created"] == 3 and report["skipped"] == 2
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(3, "comment_id"), (5, "commented_at")]
    comments = {c.external_id: c for c in db.scalars(select(Comment))}
    assert set(comments) == {"x1", "x3", "x5"}
    # Exports without offsets are Beijing time.
    assert comments["x1"].commented_at == datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    assert comments["x5"].item_id == "n101" and comments["x1"].commenter_name == "阿花"
    leads = {db.get(Comment, lead.comment_id).external_id for lead in db.scalars(select(Lead))}  # type: ignore[union-attr]
    assert leads == {"x1", "x5"}
    # Re-importing the same export changes nothing.
    again = client.post(
        "/api/v1/comments/import?platform=xiaohongshu",
        content=CSV.encode(),
        headers={**tenant.auth("operator"), "Content-Type": "text/csv"},
    ).json()
    assert again["created"] == 0 and again["unchanged"] == 3
    assert counts(db)[1:] == (3, 2)


def test_json_import_and_gbk_csv(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {"comment_id": "k1", "content": "求电子版", "create_time": 1763870400000, "room_id": "live9"},
        "not an object",
        {"comment_id": "k3"},
        {"comment_id": "k4", "text": "哪里买", "time": "2099-01-01T00:00:00+08:00"},
    ]
    report = intake.import_comments(db, tenant.org_id, "kuaishou", json.dumps(rows).encode(), "json")
    assert report.created == 1
    assert [(e.row, e.field) for e in report.errors] == [(2, None), (3, "content"), (4, "commented_at")]
    stored = db.scalar(select(Comment).where(Comment.external_id == "k1"))
    assert stored is not None and stored.commented_at == datetime.fromtimestamp(1763870400, UTC)
    gbk = "评论id,评论内容,视频id\ng1,求资料,v1\n".encode("gbk")
    report = intake.import_comments(db, tenant.org_id, "live", gbk, "csv")
    assert report.created == 1 and not report.errors
    assert db.scalar(select(Comment.content).where(Comment.external_id == "g1")) == "求资料"


def test_import_refuses_unknown_platform_and_bad_files(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    bad_platform = client.post(
        "/api/v1/comments/import?platform=weibo", content=CSV.encode(), headers=tenant.auth()
    )
    assert bad_platform.status_code == 422 and bad_platform.json()["field"] == "platform"
    bad_json = client.post(
        "/api/v1/comments/import?platform=kuaishou&format=json", content=b"{", headers=tenant.auth()
    )
    assert bad_json.status_code == 422 and bad_json.json()["field"] == "file"
    empty = client.post("/api/v1/comments/import?platform=kuaishou", content=b"", headers=tenant.auth())
    assert empty.status_code == 422
    assert client.post("/api/v1/comments/import?platform=kuaishou", content=CSV.encode()).status_code == 401


def test_correction_to_high_intent_opens_a_lead_and_back_dismisses_it(
    db: Session,
    tenant,  # type: ignore[no-untyped-def]
) -> None:
    intake.import_comments(
        db, tenant.org_id, "kuaishou", b"comment_id,content\nq1,\xe5\xa5\xbd\xe7\x9c\x8b\n", "csv"
    )
    comment = db.scalar(select(Comment))
    assert comment is not None and db.scalar(select(Lead)) is None
    operator = Principal(tenant.org_id, tenant.operator_id, Role.operator)
    service.correct_intent(db, operator, comment.id, "material")
    lead = db.scalar(select(Lead))
    assert lead is not None and lead.status == LeadStatus.open and comment.corrected_intent == "material"
    service.correct_intent(db, operator, comment.id, "other")
    db.refresh(lead)
    assert lead.status == LeadStatus.dismissed
    assert service.stored_corrections(db, tenant.org_id) == [("好看", "other")]
    with pytest.raises(Exception) as info:
        service.correct_intent(db, operator, comment.id, "spam")
    assert getattr(info.value, "field", None) == "intent"


def test_nightly_prune_forgets_old_receipts_but_keeps_comments_and_leads(
    client: TestClient,
    engine,
    db: Session,
    tenant,  # type: ignore[no-untyped-def]
) -> None:
    from sqlalchemy import update

    from siyu.kit.settings import Settings
    from siyu.leads.tasks import prune_receipts
    from siyu.worker import queue

    configure(db, tenant.org_id)
    for n in range(3):
        assert (
            post(
                client,
                tenant.slug,
                comment_body("求资料", comment_id=f"@old{n}", user=f"_000old{n}"),
                msg_id=f"old{n}",
            ).json()["status"]
            == "stored"
        )
    assert (
        post(client, tenant.slug, comment_body("求资料", comment_id="@new"), msg_id="new").json()["status"]
        == "stored"
    )
    db.execute(
        update(WebhookReceipt)
        .where(WebhookReceipt.msg_id.like("old%"))
        .values(received_at=datetime.now(UTC) - timedelta(days=Settings().webhook_retention_days, hours=1))
    )
    db.commit()
    queue.bind_engine(engine)
    assert prune_receipts(batch=2) == 3  # a full batch, then the rest
    assert counts(db) == (1, 4, 4)
    assert post(client, tenant.slug, comment_body("求资料", comment_id="@new"), msg_id="new").json() == {
        "status": "duplicate"
    }
    assert prune_receipts() == 0
