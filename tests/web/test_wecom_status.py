"""The status section of the WeCom settings page: last reconciliation ("Sync now"), callback inbox health."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.wecom.conftest import AES_KEY, SECRET, TOKEN, Control, console_login

from siyu.kit.clock import utcnow
from siyu.wecom.credentials import save_credentials
from siyu.wecom.inbox_health import inbox_health
from siyu.wecom.models import InboxItem, WeComSyncRun
from siyu.wecom.schemas import CredentialsIn
from siyu.wecom.tasks import MAX_ATTEMPTS


def _counts(html: str, kind: str) -> tuple[int, int, int]:
    row = re.search(rf'data-kind="{kind}"><td>[^<]*</td><td>(\d+)</td>\s*<td>(\d+)</td><td>(\d+)</td>', html)
    assert row, html
    return int(row.group(1)), int(row.group(2)), int(row.group(3))


def _figure(html: str, name: str) -> int:
    found = re.search(
        rf'data-figure="{name}">\s*<div class="kpi-label">[^<]*</div>\s*'
        rf'<div class="kpi-value[^"]*">([\d,]+)</div>',
        html,
    )
    assert found, html
    return int(found.group(1).replace(",", ""))


def _save(app: Any, db: Session, org_id: int, fake: Control) -> None:
    save_credentials(
        db,
        org_id,
        CredentialsIn(  # type: ignore[arg-type]
            corp_id=fake.corp_id, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY, base_url=fake.base_url
        ),
        app.state.settings.resolved_secret_key(),
    )
    db.commit()


def test_sync_now_runs_and_the_page_shows_what_it_changed(
    client: TestClient, app: Any, tenant: Any, db: Session, fake: Control, inline_worker: Any
) -> None:
    client.cookies.set("lang", "en")
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    # Without credentials: a clear error on the page, no status section, nothing recorded.
    refused = client.post("/wecom/sync", data={"csrf_token": csrf})
    assert refused.status_code == 404
    assert "save the credentials before starting a sync" in refused.text
    assert 'data-field="wecom"' in refused.text
    assert 'id="wecom-status"' not in refused.text
    assert client.get("/wecom/status").status_code == 404
    assert db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == tenant.org_id)) is None

    _save(app, db, tenant.org_id, fake)
    page = client.get("/wecom/settings")
    assert 'id="wecom-status"' in page.text and 'data-sync-status="none"' in page.text
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": "wm_a", "name": "王芳", "follow": [{"userid": "zhangsan"}]},
                {
                    "external_userid": "wm_b",
                    "name": "李强",
                    "follow": [{"userid": "zhangsan"}, {"userid": "lisi"}],
                },
            ]
        },
    )
    synced = client.post("/wecom/sync", data={"csrf_token": csrf})  # immediate mode: the sync runs inline
    assert synced.status_code == 200, synced.text
    assert "Sync started." in synced.text and 'data-sync-status="succeeded"' in synced.text
    assert _counts(synced.text, "customers") == (2, 0, 0)
    assert _counts(synced.text, "follows") == (3, 0, 0)
    assert "zhangsan -&gt; wm_a" in synced.text  # a sample of what changed
    assert "hx-trigger" not in synced.text and "data-sync-awaiting" not in synced.text  # finished: no polling

    # Requested after the last run started (a queued worker has not taken it yet): poll while waiting,
    # for a while only.
    last = db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == tenant.org_id))
    assert last is not None
    last.started_at -= timedelta(minutes=10)
    db.commit()
    now = int(utcnow().timestamp())
    awaited = client.get("/wecom/status", params={"requested": now})
    assert "data-sync-awaiting" in awaited.text and f'hx-get="/wecom/status?requested={now}"' in awaited.text
    gave_up = client.get("/wecom/status", params={"requested": now - 3 * 60})
    assert "data-sync-awaiting" not in gave_up.text and "hx-trigger" not in gave_up.text
    assert client.get("/wecom/status", params={"requested": -1}).status_code == 422

    # The fragment alone; it polls itself while a sync runs.
    fragment = client.get("/wecom/status")
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<section id="wecom-status"') and "<html" not in fragment.text
    assert _counts(fragment.text, "customers") == (2, 0, 0)
    run = db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == tenant.org_id))
    assert run is not None
    run.status, run.finished_at = "running", None
    db.commit()
    running = client.get("/wecom/status", headers={"HX-Request": "true"})
    assert 'data-sync-status="running"' in running.text
    assert 'hx-get="/wecom/status" hx-trigger="every 3s" hx-swap="outerHTML"' in running.text
    # A second sync is refused while one runs, on the page and through the API.
    refused = client.post("/wecom/sync", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "already running" in refused.text
    assert client.post("/api/v1/wecom/sync", headers=tenant.auth()).status_code == 409
    # A run marked running long ago died with its process: shown as interrupted, and no obstacle.
    run.started_at = utcnow() - timedelta(hours=2)
    db.commit()
    stale = client.get("/wecom/status")
    assert 'data-sync-status="interrupted"' in stale.text and "hx-trigger" not in stale.text

    # A failed run shows its error.
    fake.post("config", {"forbidden_apis": ["externalcontact/get_follow_user_list"]})
    failed = client.post("/wecom/sync", data={"csrf_token": csrf})
    assert failed.status_code == 200
    assert 'data-sync-status="failed"' in failed.text and "48002" in failed.text

    # Chinese console.
    client.cookies.set("lang", "zh_CN")
    assert "立即同步" in client.get("/wecom/status").text


def test_inbox_health_counts_waiting_failing_and_given_up(
    client: TestClient, app: Any, tenant: Any, make_tenant: Any, db: Session, fake: Control
) -> None:
    org, other = tenant.org_id, make_tenant("other-brand").org_id
    now = utcnow()
    health = inbox_health(db, org)
    assert (health.received_24h, health.waiting, health.last_received_at) == (0, 0, None)

    def item(org_id: int, key: str, received: timedelta, **values: Any) -> None:
        kind = values.pop("kind", "add_external_contact")
        db.add(
            InboxItem(
                org_id=org_id,
                source="wecom",
                external_key=key,
                kind=kind,
                payload={},
                received_at=now - received,
                **values,
            )
        )

    item(org, "old", timedelta(days=3), processed_at=now - timedelta(days=3), attempts=1)
    db.commit()
    health = inbox_health(db, org)
    assert health.received_24h == 0 and health.last_received_at == now - timedelta(days=3)

    item(org, "done", timedelta(minutes=30), processed_at=now - timedelta(minutes=29), attempts=1)
    item(org, "waiting", timedelta(minutes=2))
    item(
        org,
        "failing",
        timedelta(minutes=10),
        attempts=2,
        kind="edit_external_contact",
        error="KeyError: 'ExternalUserID'",
    )
    item(
        org,
        "dead",
        timedelta(hours=30),
        attempts=MAX_ATTEMPTS,
        kind="del_follow_user",
        error="WeComError: 84061 not external contact",
    )
    item(other, "elsewhere", timedelta(minutes=1), attempts=3, error="other org's error")
    db.commit()

    health = inbox_health(db, org)
    assert (health.received_24h, health.waiting, health.failing, health.given_up) == (3, 3, 1, 1)
    assert health.last_received_at == now - timedelta(minutes=2)
    assert [(e.kind, e.given_up) for e in health.recent_errors] == [
        ("del_follow_user", True),
        ("edit_external_contact", False),
    ]  # newest row first

    _save(app, db, org, fake)
    client.cookies.set("lang", "en")
    console_login(client, f"admin@{tenant.slug}.test")
    page = client.get("/wecom/settings")
    assert page.status_code == 200
    for name, value in (("received", 3), ("waiting", 3), ("failing", 1), ("given-up", 1)):
        assert _figure(page.text, name) == value, name
    assert "KeyError: &#39;ExternalUserID&#39;" in page.text and "edit_external_contact" in page.text
    assert "84061" in page.text and "other org&#39;s error" not in page.text


def test_operators_cannot_see_the_status_or_start_a_sync(client: TestClient, tenant: Any) -> None:
    csrf = console_login(client, f"operator@{tenant.slug}.test")
    assert client.get("/wecom/status").status_code == 403
    assert client.post("/wecom/sync", data={"csrf_token": csrf}).status_code == 403
