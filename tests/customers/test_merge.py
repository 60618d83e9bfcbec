"""Automatic merges on shared identifiers: nothing is lost, follows dedupe, everything is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.accounts.service import create_account
from siyu.commerce.models import Order
from siyu.customers import access, customer_tagging, follows, identities, merge, notes, profiles, tagging
from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    CustomerTag,
    FollowRelation,
    FollowStatus,
    IdentityKind,
    MergeAudit,
    Note,
    Stage,
)
from siyu.customers.schemas import TagGroupIn
from siyu.events.models import Event
from siyu.kit.errors import Invalid, NotFound
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def _account(db: Session, org_id: int, ext: str, operator_id: int | None = None) -> Account:
    return create_account(
        db,
        org_id,
        AccountIn(kind=AccountKind.wecom_member, external_id=ext, name=ext, operator_id=operator_id),
    )


def _event(db: Session, org_id: int, customer_id: int, key: str, at: datetime) -> None:
    db.add(
        Event(org_id=org_id, customer_id=customer_id, type="message_in", occurred_at=at, idempotency_key=key)
    )


def _order(db: Session, org_id: int, customer_id: int, ext: str, at: datetime) -> None:
    db.add(
        Order(
            org_id=org_id,
            customer_id=customer_id,
            platform="taobao",
            external_id=ext,
            amount_fen=9900,
            paid_at=at,
        )
    )


def test_shared_identifier_merges_and_keeps_everything(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    admin = Principal(org, tenant.admin_id, Role.admin)
    _group, tags = tagging.create_tag_group(db, org, TagGroupIn(name="意向", tags=["高", "中", "低"]))
    acc = _account(db, org, "zhangsan")
    old = profiles.create_customer(db, org, {"name": "王芳", "source": "douyin", "stage": "contacted"})
    new = profiles.create_customer(
        db, org, {"mobile": "138 1234 5678", "region": "上海", "stage": "converted", "intent": "求资料"}
    )
    identities.add_identity(db, org, old.id, IdentityKind.douyin_open_id, "dy-1")
    identities.add_identity(db, org, new.id, IdentityKind.taobao_buyer_nick, "tb_wang")
    customer_tagging.set_customer_tags(db, admin, old.id, [tags[0].id, tags[1].id])
    customer_tagging.set_customer_tags(db, admin, new.id, [tags[1].id, tags[2].id])
    notes.add_note(db, admin, old.id, "old note")
    notes.add_note(db, admin, new.id, "new note")
    _event(db, org, old.id, "e1", T0)
    _event(db, org, new.id, "e2", T0 + timedelta(hours=1))
    _order(db, org, new.id, "o1", T0 + timedelta(hours=2))
    follows.follow(db, org, new.id, acc.id, since=T0)
    db.flush()

    # The Douyin callback learns that the newer profile's user is dy-1: one person, so they merge.
    survivor = identities.add_identity(
        db, org, new.id, IdentityKind.douyin_open_id, "dy-1", reason="douyin bind"
    )
    db.commit()

    assert survivor.id == old.id  # the older profile survives
    assert db.get(Customer, new.id).merged_into_id == old.id  # type: ignore[union-attr]
    kinds = {
        (i.kind, i.value)
        for i in db.scalars(select(CustomerIdentity).where(CustomerIdentity.customer_id == old.id))
    }
    assert kinds == {
        (IdentityKind.mobile, "13812345678"),
        (IdentityKind.douyin_open_id, "dy-1"),
        (IdentityKind.taobao_buyer_nick, "tb_wang"),
    }
    assert set(db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == old.id))) == {
        t.id for t in tags
    }
    assert (
        db.scalar(select(func.count()).select_from(CustomerTag).where(CustomerTag.customer_id == new.id)) == 0
    )
    assert {n.body for n in db.scalars(select(Note).where(Note.customer_id == old.id))} == {
        "old note",
        "new note",
    }
    keys = set(db.scalars(select(Event.idempotency_key).where(Event.customer_id == old.id)))
    assert {"e1", "e2"} <= keys  # both profiles' events, beside those the hub recorded itself
    assert any(k.startswith("customer_merged:") for k in keys)
    assert list(db.scalars(select(Order.external_id).where(Order.customer_id == old.id))) == ["o1"]
    assert [f.account_id for f in follows.list_follows(db, admin, old.id)] == [acc.id]
    # Empty fields are filled from the merged profile; the stage never goes backwards.
    assert (survivor.name, survivor.mobile, survivor.region, survivor.source, survivor.intent) == (
        "王芳",
        "13812345678",
        "上海",
        "douyin",
        "求资料",
    )
    assert survivor.stage == Stage.converted
    assert survivor.remark == "王芳+抖音+求资+13812345678"

    audit = db.scalar(select(MergeAudit).where(MergeAudit.survivor_id == old.id))
    assert audit is not None and audit.merged_id == new.id and audit.reason == "douyin bind"
    assert audit.moved["identities"] == 2 and audit.moved["tags"] == 1 and audit.moved["notes"] == 1
    # e2, plus what the hub recorded on the merged profile (its creation, tag, note, follow, stage...).
    assert audit.moved["events"] >= 1 and audit.moved["orders"] == 1 and audit.moved["follows"] == 1
    assert set(audit.moved["fields"]) >= {"mobile", "region", "intent", "stage"}
    # The merged id still resolves, to the survivor.
    assert access.get_customer(db, admin, new.id).id == old.id


def test_create_with_known_mobile_merges_into_the_existing_profile(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    first = profiles.create_customer(db, org, {"name": "李雷", "mobile": "13900001111"})
    again = profiles.create_customer(db, org, {"mobile": "+86 139-0000-1111", "region": "北京"})
    assert again.id == first.id and again.region == "北京"
    assert db.scalar(select(func.count()).select_from(MergeAudit)) == 1
    assert db.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into_id.is_(None))) == 1


def test_follow_relations_dedupe_on_merge_keeping_earliest_since(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    shared, only_new = _account(db, org, "a1"), _account(db, org, "a2")
    old = profiles.create_customer(db, org, {"name": "A"})
    new = profiles.create_customer(db, org, {"name": "B"})
    follows.follow(db, org, old.id, shared.id, since=T0 + timedelta(days=3), source="offline")
    follows.follow(db, org, new.id, shared.id, since=T0, source="douyin", state="live-7")
    follows.follow(db, org, new.id, only_new.id, since=T0)
    db.flush()
    assert db.get(Account, shared.id).friend_count == 2  # type: ignore[union-attr]

    audit = merge.merge_customers(db, org, old.id, new.id, "same person", None)
    db.commit()
    rels = {r.account_id: r for r in db.scalars(select(FollowRelation).where(FollowRelation.org_id == org))}
    assert set(rels) == {shared.id, only_new.id}
    assert all(r.customer_id == old.id for r in rels.values())
    assert (
        rels[shared.id].since == T0
        and rels[shared.id].source == "douyin"
        and rels[shared.id].state == "live-7"
    )
    assert audit.moved["follows"] == 1 and audit.moved["follows_deduped"] == 1
    db.expire_all()
    assert db.get(Account, shared.id).friend_count == 1  # type: ignore[union-attr]


def test_merge_keeps_the_active_relation_when_one_side_had_ended(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    acc = _account(db, org, "a1")
    old = profiles.create_customer(db, org, {"name": "A"})
    new = profiles.create_customer(db, org, {"name": "B"})
    follows.follow(db, org, old.id, acc.id, since=T0)
    follows.unfollow(db, org, old.id, acc.id, by="customer", at=T0 + timedelta(days=1))
    follows.follow(db, org, new.id, acc.id, since=T0 + timedelta(days=2))
    merge.merge_customers(db, org, old.id, new.id, "same person")
    rel = db.scalar(select(FollowRelation).where(FollowRelation.customer_id == old.id))
    assert rel is not None and rel.status == FollowStatus.active and rel.since == T0 and rel.ended_at is None


def test_merge_rejects_bad_pairs_and_other_orgs(db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant(), make_tenant()
    mine = profiles.create_customer(db, a.org_id, {"name": "A"})
    theirs = profiles.create_customer(db, b.org_id, {"name": "B"})
    with pytest.raises(Invalid):
        merge.merge_customers(db, a.org_id, mine.id, mine.id, "x")
    with pytest.raises(NotFound) as err:
        merge.merge_customers(db, a.org_id, mine.id, theirs.id, "x")
    assert err.value.field == "merged_id"
    other = profiles.create_customer(db, a.org_id, {"name": "C"})
    merge.merge_customers(db, a.org_id, mine.id, other.id, "x")
    with pytest.raises(Invalid):
        merge.merge_customers(db, a.org_id, mine.id, other.id, "again")


def test_merge_chains_stay_one_hop(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    c1, c2, c3 = (profiles.create_customer(db, org, {"name": n}) for n in "XYZ")
    merge.merge_customers(db, org, c2.id, c3.id, "first")
    merge.merge_customers(db, org, c1.id, c2.id, "second")
    db.expire_all()
    assert db.get(Customer, c3.id).merged_into_id == c1.id  # type: ignore[union-attr]


def test_find_or_create_by_identity(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    c, created = profiles.find_or_create_by_identity(
        db, org, IdentityKind.wecom_external_userid, "wm-1", {"name": "客户甲", "source": "wecom"}
    )
    assert created and c.name == "客户甲"
    again, created = profiles.find_or_create_by_identity(
        db, org, IdentityKind.wecom_external_userid, " wm-1 ", {"name": "other", "region": "杭州"}
    )
    assert not created and again.id == c.id and again.name == "客户甲" and again.region == "杭州"
    # Known by mobile already: the new identifier attaches to that profile instead of a new one.
    m = profiles.create_customer(db, org, {"name": "乙", "mobile": "13700001234"})
    found, created = profiles.find_or_create_by_identity(
        db, org, IdentityKind.taobao_buyer_nick, "tb_yi", {"mobile": "13700001234"}
    )
    assert not created and found.id == m.id
    with pytest.raises(Invalid) as err:
        profiles.find_or_create_by_identity(db, org, IdentityKind.mobile, "12345")
    assert err.value.field == "value"


def test_live_customers_follows_merges_and_ignores_other_organizations(db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    from siyu.customers.resolution import live_customers

    ours, theirs = make_tenant(), make_tenant()
    a = profiles.create_customer(db, ours.org_id, {"name": "A"})
    b = profiles.create_customer(db, ours.org_id, {"name": "B"})
    c = profiles.create_customer(db, ours.org_id, {"name": "C"})
    other = profiles.create_customer(db, theirs.org_id, {"name": "X"})
    merge.merge_customers(db, ours.org_id, b.id, a.id, "test")
    merge.merge_customers(db, ours.org_id, c.id, b.id, "test")
    assert live_customers(db, ours.org_id, [a.id, b.id, c.id, other.id, 10**9]) == {
        a.id: c.id,
        b.id: c.id,
        c.id: c.id,
    }
    assert live_customers(db, theirs.org_id, [a.id, other.id]) == {other.id: other.id}
