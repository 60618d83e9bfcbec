"""The set-based contact sync across chunks: caches, parallel page fetchers, merges, races, bulk inserts."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from wechatpy.session.memorystorage import MemoryStorage

from siyu.customers import profiles
from siyu.customers.models import Customer, CustomerIdentity, IdentityKind
from siyu.integrations.channel import ContactWithFollow, ExternalContact, FollowInfo
from siyu.integrations.wecom.client import WeComClient
from siyu.kit import bulk
from siyu.kit.bulk import driver_datetime, insert_rows
from siyu.kit.clock import utcnow
from siyu.kit.db import make_sessionmaker
from siyu.wecom.sync import _member_batches, full_sync
from siyu.wecom.sync_contacts import SyncState, apply_contacts, preload
from siyu.wecom.sync_report import SyncReport

from .conftest import SECRET, Control, active_follows

IDENTITIES = CustomerIdentity.__table__


@pytest.fixture
def fake(plain_fake: Control) -> Control:
    """These tests seed their own members."""
    return plain_fake


@pytest.fixture
def wecom(fake: Control) -> WeComClient:
    return WeComClient(
        fake.corp_id, SECRET, base_url=fake.base_url, session=MemoryStorage(), sleep=lambda s: None
    )


def _cid(db: Session, org_id: int, kind: IdentityKind, value: str) -> int:
    cid = db.scalar(
        select(CustomerIdentity.customer_id).where(
            CustomerIdentity.org_id == org_id, CustomerIdentity.kind == kind, CustomerIdentity.value == value
        )
    )
    assert cid is not None, value
    return cid


def test_member_batches_give_every_fetcher_work_and_never_exceed_100() -> None:
    users = [f"u{i}" for i in range(250)]
    assert [len(b) for b in _member_batches(users, 3)] == [84, 84, 82]
    assert [len(b) for b in _member_batches(users * 2, 3)] == [100, 100, 100, 100, 100]
    assert _member_batches(["a", "b"], 3) == [["a"], ["b"]]
    assert _member_batches([], 3) == []


def test_tiny_chunks_agree_with_wecom_and_a_second_run_changes_nothing(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    fake.post("generate", {"members": 7, "contacts": 300, "seed": 11})
    users = wecom.list_follow_users()
    truth = list(wecom.iter_contacts_by_user(users))
    pairs = {(i.contact.external_userid, i.follow.userid) for i in truth}
    names = {i.contact.external_userid: i.contact.name for i in truth}
    unionids = {i.contact.unionid for i in truth if i.contact.unionid}
    assert len(pairs) > len(names)  # some contacts are followed by several members: the cache matters
    org = tenant.org_id
    report = full_sync(db, org, wecom, chunk_size=7)
    assert active_follows(db, org) == pairs
    assert report.contacts_seen == len(names) == report.counts["customers"].created
    assert report.follows_seen == len(pairs) == report.counts["follows"].created
    assert report.counts["identities"].created == len(unionids)
    stored = dict(
        db.execute(
            select(CustomerIdentity.value, Customer.name)
            .join(Customer, Customer.id == CustomerIdentity.customer_id)
            .where(
                CustomerIdentity.org_id == org, CustomerIdentity.kind == IdentityKind.wecom_external_userid
            )
        ).all()
    )
    assert stored == {eid: name[:120] for eid, name in names.items()}
    assert db.scalar(select(func.count()).select_from(Customer).where(Customer.org_id == org)) == len(names)
    again = full_sync(db, org, wecom, chunk_size=3)
    assert again.changed() == 0, again.counts
    assert again.contacts_seen == len(names) and again.follows_seen == len(pairs)


def test_existing_profiles_are_reused_and_only_nameless_ones_get_the_wecom_name(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    org = tenant.org_id
    bare, _ = profiles.find_or_create_by_identity(db, org, IdentityKind.wecom_external_userid, "wm_b", {})
    named, _ = profiles.find_or_create_by_identity(
        db, org, IdentityKind.wecom_external_userid, "wm_c", {"name": "Mr Zhang"}
    )
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": "wm_a", "name": "王芳", "gender": 2, "follow": [{"userid": "alice"}]},
                {"external_userid": "wm_b", "name": "李强", "gender": 1, "follow": [{"userid": "alice"}]},
                {"external_userid": "wm_c", "name": "张伟", "follow": [{"userid": "alice"}]},
            ]
        },
    )
    report = full_sync(db, org, wecom, chunk_size=1)
    assert report.counts["customers"].created == 1
    db.refresh(bare)
    db.refresh(named)
    assert (bare.name, bare.gender.value) == ("李强", "male")
    assert named.name == "Mr Zhang"
    assert _cid(db, org, IdentityKind.wecom_external_userid, "wm_b") == bare.id
    new = db.get(Customer, _cid(db, org, IdentityKind.wecom_external_userid, "wm_a"))
    assert new is not None and (new.name, new.gender.value, new.source) == ("王芳", "female", "wecom")


def test_unionid_shared_by_contacts_in_different_chunks_merges_them_and_keeps_both_follows(
    db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    fake.post(
        "contacts",
        {
            "contacts": [
                {
                    "external_userid": "wm_a",
                    "name": "王芳",
                    "unionid": "oz_same",
                    "follow": [{"userid": "alice"}],
                },
                {
                    "external_userid": "wm_d",
                    "name": "王芳2",
                    "unionid": "oz_same",
                    "follow": [{"userid": "bob"}],
                },
            ]
        },
    )
    org = tenant.org_id
    report = full_sync(db, org, wecom, chunk_size=1)
    # The one resolver sees wm_d's unionid already held by wm_a's profile: wm_d joins that profile at
    # once, so there is no second profile to merge away.
    assert report.merged == 0 and report.counts["customers"].created == 1
    assert db.scalar(select(func.count()).select_from(Customer).where(Customer.org_id == org)) == 1
    survivor = _cid(db, org, IdentityKind.unionid, "oz_same")
    assert _cid(db, org, IdentityKind.wecom_external_userid, "wm_a") == survivor
    assert _cid(db, org, IdentityKind.wecom_external_userid, "wm_d") == survivor
    assert active_follows(db, org) == {("wm_a", "alice"), ("wm_a", "bob"), ("wm_d", "alice"), ("wm_d", "bob")}
    assert report.counts["follows"].ended == 0
    assert full_sync(db, org, wecom).changed() == 0


def test_a_profile_created_by_a_callback_after_preload_is_used_not_duplicated(
    db: Session, tenant: Any
) -> None:
    org = tenant.org_id
    state = SyncState()
    preload(db, org, state)
    # A callback's transaction creates wm_b between the sync's preload and its chunk.
    racer, _ = profiles.find_or_create_by_identity(db, org, IdentityKind.wecom_external_userid, "wm_b", {})
    items = [
        ContactWithFollow(ExternalContact("wm_a", "王芳", gender=2), FollowInfo("alice")),
        ContactWithFollow(ExternalContact("wm_b", "李强", gender=1), FollowInfo("alice")),
    ]
    report = SyncReport(org_id=org)
    apply_contacts(db, org, items, report, state)
    assert report.counts["customers"].created == 1 and report.contacts_seen == 2
    assert state.holders["wm_b"] == racer.id
    db.refresh(racer)
    assert racer.name == "李强"
    # The profile the sync made for wm_b before losing the race is gone again.
    assert db.scalar(select(func.count()).select_from(Customer).where(Customer.org_id == org)) == 2


class _RacingClient:
    """The fake WeCom's client, except that handing over its first contact page lets a callback's
    transaction create (and commit) profiles of two of that page's contacts first."""

    def __init__(self, client: WeComClient, race: Any) -> None:
        self._client, self._race = client, race
        self._lock = threading.Lock()
        self.raced: dict[str, int] = {}

    def list_contacts_by_user(self, *args: Any, **kwargs: Any) -> Any:
        page = self._client.list_contacts_by_user(*args, **kwargs)
        with self._lock:
            if not self.raced:
                self.raced = self._race([i.contact.external_userid for i in page.items][:2])
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_profiles_a_callback_commits_during_a_full_sync_are_used_not_duplicated(
    engine: Engine, db: Session, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer: a callback cannot commit while the sync's transaction writes")
    fake.post("generate", {"members": 7, "contacts": 300, "seed": 11})
    truth = list(wecom.iter_contacts_by_user(wecom.list_follow_users()))
    pairs = {(i.contact.external_userid, i.follow.userid) for i in truth}
    contacts = {i.contact.external_userid: i.contact for i in truth}
    org = tenant.org_id
    callbacks = make_sessionmaker(engine)

    def race(eids: list[str]) -> dict[str, int]:
        with callbacks.begin() as other:
            return {
                eid: profiles.find_or_create_by_identity(
                    other, org, IdentityKind.wecom_external_userid, eid, {}
                )[0].id
                for eid in eids
            }

    client = _RacingClient(wecom, race)
    report = full_sync(db, org, client, chunk_size=7)  # type: ignore[arg-type]
    assert len(client.raced) == 2
    for eid, racer in client.raced.items():
        assert _cid(db, org, IdentityKind.wecom_external_userid, eid) == racer
        assert db.get(Customer, racer).name == contacts[eid].name[:120]  # type: ignore[union-attr]
        if contacts[eid].unionid:
            assert _cid(db, org, IdentityKind.unionid, contacts[eid].unionid) == racer
    assert active_follows(db, org) == pairs
    # The profiles the sync made for the raced contacts are gone: one profile per contact.
    assert db.scalar(select(func.count()).select_from(Customer).where(Customer.org_id == org)) == len(
        contacts
    )
    assert report.counts["customers"].created == len(contacts) - 2
    assert report.counts["follows"].created == len(pairs)
    assert full_sync(db, org, wecom, chunk_size=7).changed() == 0


def test_insert_rows_counts_only_new_rows_and_splits_big_batches(
    db: Session, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = tenant.org_id
    owner, _ = profiles.find_or_create_by_identity(db, org, IdentityKind.mobile, "13800138000", {})
    now = driver_datetime(db)(utcnow())
    monkeypatch.setattr(bulk, "ROWS_PER_STATEMENT", 7)
    rows = [
        {"org_id": org, "customer_id": owner.id, "kind": "openid", "value": f"o{i}", "created_at": now}
        for i in range(30)
    ]
    conflict = ["org_id", "kind", "value"]
    assert insert_rows(db, IDENTITIES, rows[:20], conflict) == 20
    assert insert_rows(db, IDENTITIES, rows, conflict) == 10
    assert insert_rows(db, IDENTITIES, [], conflict) == 0
    values = set(
        db.scalars(
            select(CustomerIdentity.value).where(
                CustomerIdentity.org_id == org, CustomerIdentity.kind == IdentityKind.openid
            )
        )
    )
    assert values == {f"o{i}" for i in range(30)}
