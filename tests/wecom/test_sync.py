"""Reconciliation against the fake WeCom server: lost callbacks, stale follows, token expiry, 45009."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from wechatpy.session.memorystorage import MemoryStorage

from siyu.accounts.models import Account, AccountKind
from siyu.customers import profiles
from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    CustomerTag,
    FollowRelation,
    FollowStatus,
    IdentityKind,
    MergeAudit,
    Tag,
)
from siyu.groups.models import CustomerGroup, GroupMember, GroupStatus
from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComRateLimited
from siyu.kit.clock import utcnow
from siyu.kit.db import make_sessionmaker
from siyu.kit.errors import Conflict
from siyu.wecom.models import WeComSyncRun
from siyu.wecom.pacing import ApiPacer, TokenBucket
from siyu.wecom.sync import RUN_STALE_AFTER, full_sync, run_sync

from .conftest import SECRET, Control, active_follows


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake(plain_fake: Control) -> Control:
    """These tests seed their own members."""
    return plain_fake


@pytest.fixture
def wecom(fake: Control) -> WeComClient:
    return WeComClient(fake.corp_id, SECRET, base_url=fake.base_url, session=MemoryStorage(), sleep=Sleeps())


def _world(fake: Control) -> dict[str, Any]:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    tags = fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高意向", "低意向"]}]})["groups"][0][
        "tags"
    ]
    fake.post(
        "contacts",
        {
            "contacts": [
                {
                    "external_userid": "wm_a",
                    "name": "王芳",
                    "gender": 2,
                    "unionid": "oz_a",
                    "follow": [{"userid": "alice", "tag_ids": [tags["高意向"]], "state": "douyin_live"}],
                },
                {
                    "external_userid": "wm_b",
                    "name": "李强",
                    "follow": [{"userid": "alice"}, {"userid": "bob"}],
                },
                {
                    "external_userid": "wm_c",
                    "name": "张伟",
                    "follow": [{"userid": "bob", "tag_ids": [tags["低意向"]]}],
                },
            ]
        },
    )
    return tags


def _cid(db: Session, org_id: int, eid: str) -> int:
    cid = db.scalar(
        select(CustomerIdentity.customer_id).where(
            CustomerIdentity.org_id == org_id,
            CustomerIdentity.kind == IdentityKind.wecom_external_userid,
            CustomerIdentity.value == eid,
        )
    )
    assert cid is not None, eid
    return cid


def test_full_sync_repairs_lost_callbacks(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    tags = _world(fake)
    fake.post(
        "groups", {"groups": [{"owner": "alice", "name": "训练营1群", "members": ["wm_a", "wm_b", "bob"]}]}
    )
    org = tenant.org_id
    report = full_sync(db, org, wecom)
    assert active_follows(db, org) == {("wm_a", "alice"), ("wm_b", "alice"), ("wm_b", "bob"), ("wm_c", "bob")}
    assert report.counts["accounts"].created == 2
    assert report.counts["customers"].created == 3
    assert report.counts["follows"].created == 4
    assert report.contacts_seen == 3 and report.members == 2
    a = db.get(Customer, _cid(db, org, "wm_a"))
    assert a is not None and a.name == "王芳" and a.gender.value == "female"
    high = db.scalar(select(Tag.id).where(Tag.org_id == org, Tag.external_id == tags["高意向"]))
    assert db.scalar(select(CustomerTag.tag_id).where(CustomerTag.customer_id == a.id)) == high
    counts = dict(
        db.execute(
            select(Account.external_id, Account.friend_count).where(
                Account.org_id == org, Account.kind == AccountKind.wecom_member
            )
        ).all()
    )
    assert counts == {"alice": 2, "bob": 2}
    group = db.scalar(select(CustomerGroup).where(CustomerGroup.org_id == org))
    assert group is not None and group.name == "训练营1群" and group.member_count == 4
    # A second run finds nothing to change: the sync is idempotent.
    again = full_sync(db, org, wecom)
    assert again.changed() == 0, again.counts


def test_deletion_before_addition_leaves_a_stale_follow_that_sync_ends(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    _world(fake)
    org = tenant.org_id
    full_sync(db, org, wecom)
    # The customer deleted bob; the callback for that deletion arrived before the (re-)addition was
    # processed, so siyu still has bob -> wm_c as active.
    fake.post("contacts/wm_c/delete", {"userid": "bob"})
    assert ("wm_c", "bob") in active_follows(db, org)
    report = full_sync(db, org, wecom)
    assert ("wm_c", "bob") not in active_follows(db, org)
    assert report.counts["follows"].ended == 1
    rel = db.scalar(select(FollowRelation).where(FollowRelation.customer_id == _cid(db, org, "wm_c")))
    assert rel is not None and rel.status == FollowStatus.deleted_by_customer and rel.ended_at is not None
    bob = db.scalar(select(Account).where(Account.org_id == org, Account.external_id == "bob"))
    assert bob is not None and bob.friend_count == 1
    assert any("wm_c" in s or "bob" in s for s in report.samples["follows"])


def test_sync_merges_profiles_sharing_a_unionid(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    # The person was known from a mini-program by unionid before becoming a WeCom contact.
    known, _ = profiles.find_or_create_by_identity(db, org, IdentityKind.unionid, "oz_a", {"name": "Wang"})
    profiles.find_or_create_by_identity(db, org, IdentityKind.wecom_external_userid, "wm_a", {})
    _world(fake)
    report = full_sync(db, org, wecom)
    assert report.merged == 1
    assert _cid(db, org, "wm_a") == known.id
    assert db.scalar(select(func.count()).select_from(MergeAudit).where(MergeAudit.org_id == org)) == 1


def test_token_expiry_mid_sync_still_completes(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    fake.post("generate", {"members": 3, "contacts": 250, "seed": 7})
    org = tenant.org_id
    seen = {"pages": 0}
    original = wecom.list_contacts_by_user

    def expiring(*args: Any, **kwargs: Any) -> Any:
        seen["pages"] += 1
        if seen["pages"] == 2:
            fake.post("tokens/expire")  # WeCom may invalidate a token before expires_in
        return original(*args, **kwargs)

    wecom.list_contacts_by_user = expiring  # type: ignore[method-assign]
    report = full_sync(db, org, wecom)
    assert seen["pages"] >= 3
    assert report.contacts_seen == 250
    assert any(c["errcode"] == 42001 for c in fake.calls("externalcontact/batch/get_by_user"))
    assert (
        db.scalar(
            select(func.count())
            .select_from(CustomerIdentity)
            .where(
                CustomerIdentity.org_id == org, CustomerIdentity.kind == IdentityKind.wecom_external_userid
            )
        )
        == 250
    )


def test_rate_limit_45009_waits_the_minute_out_and_completes(db: Session, tenant: Any, fake: Control) -> None:
    _world(fake)
    sleeps = Sleeps()
    client = WeComClient(fake.corp_id, SECRET, base_url=fake.base_url, session=MemoryStorage(), sleep=sleeps)
    fake.post("faults", {"api": "externalcontact/batch/get_by_user", "errcodes": [45009]})
    report = full_sync(db, tenant.org_id, client)
    assert report.contacts_seen == 3
    assert sleeps == [60.0]  # WeCom blocks the API for a minute after its per-minute limit
    errcodes = [c["errcode"] for c in fake.calls("externalcontact/batch/get_by_user")]
    assert errcodes.count(45009) == 1 and errcodes.count(0) >= 1


def test_the_hourly_block_fails_the_sync_in_words(engine: Engine, tenant: Any, fake: Control) -> None:
    _world(fake)
    fake.post("config", {"hourly_rate_limits": {"externalcontact/get_follow_user_list": 0}})
    sleeps = Sleeps()
    client = WeComClient(fake.corp_id, SECRET, base_url=fake.base_url, session=MemoryStorage(), sleep=sleeps)
    with pytest.raises(WeComRateLimited) as info:
        run_sync(make_sessionmaker(engine), tenant.org_id, client)
    assert info.value.retry_after == 3600.0 and sleeps == [60.0]
    with make_sessionmaker(engine)() as db:
        run = db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == tenant.org_id))
        assert run is not None and run.status == "failed"
        assert "for an hour after 150,000 calls in an hour" in run.error


def test_pacer_keeps_a_quota_window_under_the_limit() -> None:
    now = [0.0]
    pacer = ApiPacer(600, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    stamps = []
    for _ in range(1500):
        pacer.acquire("externalcontact/batch/get_by_user")
        stamps.append(now[0])
    # In any fixed minute window WeCom counts, no more than the quota.
    windows: dict[int, int] = {}
    for t in stamps:
        windows[int(t // 60)] = windows.get(int(t // 60), 0) + 1
    assert max(windows.values()) <= 600
    assert pacer.waited > 0
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_pacer_keeps_an_hour_window_under_the_hourly_limit_too() -> None:
    now = [0.0]
    # WeCom's ratio: 10,000 a minute but only 150,000 an hour (15 minutes at the minute's pace).
    pacer = ApiPacer(100, per_hour=1500, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    stamps = []
    for _ in range(4000):
        pacer.acquire("externalcontact/get")
        stamps.append(now[0])
    minutes: dict[int, int] = {}
    hours: dict[int, int] = {}
    for t in stamps:
        minutes[int(t // 60)] = minutes.get(int(t // 60), 0) + 1
        hours[int(t // 3600)] = hours.get(int(t // 3600), 0) + 1
    assert max(minutes.values()) <= 100 and max(hours.values()) <= 1500
    # Paced by the hour, not only by the minute: 4,000 calls take well over two hours.
    assert now[0] > 2 * 3600


def test_run_sync_records_the_last_report_and_failures(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    _world(fake)
    factory = make_sessionmaker(engine)
    report = run_sync(factory, tenant.org_id, wecom)
    with factory() as db:
        run = db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == tenant.org_id))
        assert run is not None and run.status == "succeeded"
        assert run.report["counts"]["customers"]["created"] == report.counts["customers"].created == 3
    fake.post("config", {"forbidden_apis": ["externalcontact/get_follow_user_list"]})
    with pytest.raises(Exception, match="48002"):
        run_sync(factory, tenant.org_id, wecom)
    with factory() as db:
        run = db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == tenant.org_id))
        assert run is not None and run.status == "failed" and "48002" in run.error
        # The failed run wrote nothing else: the customers from the first run are intact.
        assert (
            db.scalar(select(func.count()).select_from(Customer).where(Customer.org_id == tenant.org_id)) == 3
        )


def test_a_second_sync_is_refused_while_one_runs(
    engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    _world(fake)
    factory = make_sessionmaker(engine)
    started = utcnow() - timedelta(minutes=5)
    with factory.begin() as db:
        db.add(WeComSyncRun(org_id=tenant.org_id, status="running", started_at=started))
    with pytest.raises(Conflict, match="already running"):
        run_sync(factory, tenant.org_id, wecom)
    with factory() as db:  # the running one's row is left as it was, not marked failed
        run = db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == tenant.org_id))
        assert run is not None and run.status == "running" and run.started_at == started
        run.started_at = utcnow() - RUN_STALE_AFTER - timedelta(minutes=1)  # its process died long ago
        db.commit()
    assert run_sync(factory, tenant.org_id, wecom).counts["customers"].created == 3


def test_group_gone_from_wecom_is_dismissed(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    _world(fake)
    chat = fake.post("groups", {"groups": [{"owner": "bob", "name": "g", "members": ["wm_c"]}]})["chat_ids"][
        0
    ]
    org = tenant.org_id
    full_sync(db, org, wecom)
    fake.post("reset")
    _world(fake)
    report = full_sync(db, org, wecom)
    group = db.scalar(select(CustomerGroup).where(CustomerGroup.org_id == org, CustomerGroup.chat_id == chat))
    assert group is not None and group.status == GroupStatus.dismissed
    assert report.counts["groups"].ended == 1
    assert (
        db.scalar(
            select(func.count())
            .select_from(GroupMember)
            .where(GroupMember.group_id == group.id, GroupMember.quit_at.is_(None))
        )
        == 0
    )


def test_sync_api_runs_and_shows_the_last_report(
    client: Any, wired: Any, make_tenant: Any, tenant: Any, fake: Control
) -> None:
    _world(fake)
    admin, other = tenant.auth("admin"), make_tenant("other-brand").auth("admin")
    assert client.get("/api/v1/wecom/sync/last", headers=admin).status_code == 404
    assert client.post("/api/v1/wecom/sync", headers=tenant.auth("operator")).status_code == 403
    assert client.post("/api/v1/wecom/sync", headers=admin).status_code == 202  # inline worker: runs now
    last = client.get("/api/v1/wecom/sync/last", headers=admin)
    assert last.status_code == 200, last.text
    body = last.json()
    assert body["status"] == "succeeded"
    assert body["report"]["counts"]["customers"]["created"] == 3
    assert body["report"]["counts"]["follows"]["created"] == 4
    # Another organization sees nothing of it, and has no WeCom configured.
    assert client.get("/api/v1/wecom/sync/last", headers=other).status_code == 404
    assert client.post("/api/v1/wecom/sync", headers=other).status_code == 404
    # Mass messages through the API: create, preview who is left out, submit, results.
    ids = [c["id"] for c in client.get("/api/v1/customers", headers=admin).json()["items"]]
    created = client.post(
        "/api/v1/wecom/mass-messages",
        headers=admin,
        # Synced customers have not consented to marketing: a service notice reaches them all.
        json={"text": "周末活动", "customer_ids": [*ids, 987654], "marketing": False},
    )
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    preview = client.get(f"/api/v1/wecom/mass-messages/{mid}/preview", headers=admin).json()
    assert preview["recipients"] == 3 and preview["per_sender"] == {"alice": 2, "bob": 1}
    assert preview["left_out"] == [
        {"customer_id": 987654, "reason": "unknown_customer", "detail": "customer 987654 does not exist"}
    ]
    assert client.get(f"/api/v1/wecom/mass-messages/{mid}/preview", headers=other).status_code == 404
    sent = client.post(f"/api/v1/wecom/mass-messages/{mid}/submit", headers=admin)
    assert sent.status_code == 202, sent.text  # the (inline) worker submitted it
    assert sent.json()["submitted"] == 3 and len(sent.json()["msgids"]) == 2
    results = client.get(f"/api/v1/wecom/mass-messages/{mid}/results?refresh=true", headers=admin).json()
    assert results["counts"] == {"submitted": 3}
    assert client.post(f"/api/v1/wecom/mass-messages/{mid}/submit", headers=admin).status_code == 409
