"""Customer lists: filters, operator visibility and keyset pages that neither skip nor repeat."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.accounts.service import create_account
from siyu.customers import customer_tagging, follows, listing, merge, profiles, repository, tagging
from siyu.customers.models import Stage
from siyu.customers.schemas import CustomerFilters, TagGroupIn
from siyu.kit.errors import Invalid
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal

STAGES = list(Stage)


@pytest.fixture
def world(db: Session, tenant):  # type: ignore[no-untyped-def]
    """40 customers: stage cycles, every 3rd has tag A, every 4th tag B; the operator's account follows evens."""
    org = tenant.org_id
    admin = Principal(org, tenant.admin_id, Role.admin)
    operator = Principal(org, tenant.operator_id, Role.operator)
    _, (tag_a, tag_b) = tagging.create_tag_group(db, org, TagGroupIn(name="兴趣", tags=["A", "B"]))
    acc = create_account(
        db,
        org,
        AccountIn(kind=AccountKind.wecom_member, external_id="op", name="op", operator_id=tenant.operator_id),
    )
    other = create_account(db, org, AccountIn(kind=AccountKind.wecom_member, external_id="x", name="x"))
    ids = []
    for i in range(40):
        c = profiles.create_customer(
            db,
            org,
            {
                "name": f"客户{i:02d}",
                "mobile": f"1380000{i:04d}",
                "stage": STAGES[i % 6],
                "source": "douyin" if i % 2 else "taobao",
            },
        )
        ids.append(c.id)
        tags = ([tag_a.id] if i % 3 == 0 else []) + ([tag_b.id] if i % 4 == 0 else [])
        customer_tagging.set_customer_tags(db, admin, c.id, tags)
        follows.follow(db, org, c.id, acc.id if i % 2 == 0 else other.id)
    db.commit()
    return {"admin": admin, "operator": operator, "ids": ids, "a": tag_a.id, "b": tag_b.id, "acc": acc.id}


def _all_pages(db: Session, principal: Principal, filters: CustomerFilters, limit: int) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        rows, cursor = listing.list_customers(db, principal, filters, cursor, limit)
        seen.extend(c.id for c in rows)
        if cursor is None:
            return seen


def _expected(world, pred) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted((cid for i, cid in enumerate(world["ids"]) if pred(i)), reverse=True)


def test_pages_neither_skip_nor_repeat(db: Session, world) -> None:  # type: ignore[no-untyped-def]
    for limit in (1, 3, 7, 40, 200):
        assert _all_pages(db, world["admin"], CustomerFilters(), limit) == _expected(world, lambda i: True)


def _driven_pages(
    db: Session, principal: Principal, filters: CustomerFilters, driver, limit: int
) -> list[int]:  # type: ignore[no-untyped-def]
    seen: list[int] = []
    cursor = None
    while True:
        rows = list(db.scalars(repository.list_query(db, principal, filters, cursor, limit, driver)))
        seen.extend(c.id for c in rows[:limit])
        if len(rows) <= limit:
            return seen
        cursor = rows[limit - 1].id


@pytest.mark.parametrize("driver", [("tag", "a"), ("stage", None), ("id", None), ("operator", None)])
def test_every_driver_gives_the_same_pages(db: Session, world, driver) -> None:  # type: ignore[no-untyped-def]
    kind, tag = driver
    chosen = (kind, world[tag] if tag else None)
    filters = CustomerFilters(tag_ids=[world["a"]], stage=Stage.new)
    who = world["operator"] if kind == "operator" else world["admin"]
    visible = (lambda i: i % 2 == 0) if kind == "operator" else (lambda i: True)
    expected = _expected(world, lambda i: visible(i) and i % 3 == 0 and i % 6 == 0)
    assert _driven_pages(db, who, filters, chosen, 1) == expected
    both = CustomerFilters(tag_ids=[world["a"], world["b"]])
    assert _driven_pages(db, who, both, chosen, 1) == _expected(world, lambda i: visible(i) and i % 12 == 0)


def test_driver_choice_follows_selectivity(db: Session, world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    filters = CustomerFilters(tag_ids=[world["a"], world["b"]], stage=Stage.new)
    # Tag b (10 customers) is rarer than tag a (14) and stage new (7 customers) is rarer still.
    assert repository.choose_driver(db, world["admin"], filters) == ("stage", None)
    assert repository.choose_driver(
        db, world["admin"], CustomerFilters(tag_ids=[world["a"], world["b"]])
    ) == ("tag", world["b"])
    assert repository.choose_driver(db, world["operator"], CustomerFilters()) == ("operator", None)
    assert repository.choose_driver(db, world["admin"], CustomerFilters()) == ("id", None)
    # When every probe hits its bound, the tag index drives (it already orders by customer id).
    monkeypatch.setattr(repository, "SELECTIVITY_PROBE", 1)
    assert repository.choose_driver(db, world["admin"], filters)[0] == "tag"


def test_name_mobile_source_and_account_filters(db: Session, world) -> None:  # type: ignore[no-untyped-def]
    admin = world["admin"]
    assert _all_pages(db, admin, CustomerFilters(name="客户1"), 50) == _expected(
        world, lambda i: 10 <= i < 20
    )
    assert _all_pages(db, admin, CustomerFilters(name="户3"), 50) == _expected(world, lambda i: 30 <= i < 40)
    assert _all_pages(db, admin, CustomerFilters(mobile="0007"), 50) == _expected(world, lambda i: i == 7)
    assert _all_pages(db, admin, CustomerFilters(mobile="13800000012"), 50) == _expected(
        world, lambda i: i == 12
    )
    assert _all_pages(db, admin, CustomerFilters(source="douyin", stage=Stage.contacted), 50) == _expected(
        world, lambda i: i % 2 == 1 and i % 6 == 1
    )
    assert _all_pages(db, admin, CustomerFilters(account_id=world["acc"]), 50) == _expected(
        world, lambda i: i % 2 == 0
    )
    assert _all_pages(db, admin, CustomerFilters(name="%"), 50) == []  # wildcards are literal


def test_operator_sees_only_customers_their_accounts_follow(db: Session, world) -> None:  # type: ignore[no-untyped-def]
    op = world["operator"]
    assert _all_pages(db, op, CustomerFilters(), 4) == _expected(world, lambda i: i % 2 == 0)
    assert _all_pages(db, op, CustomerFilters(tag_ids=[world["b"]]), 4) == _expected(
        world, lambda i: i % 4 == 0
    )
    # Unfollowing hides the customer from the operator; the admin still sees it.
    first = world["ids"][0]
    follows.unfollow(db, op.org_id, first, world["acc"], by="customer")
    assert first not in _all_pages(db, op, CustomerFilters(), 50)
    assert first in _all_pages(db, world["admin"], CustomerFilters(), 50)
    assert listing.count_customers(db, op) == 19
    # Capped counts stop at the cap, for operators too, and are exact below it.
    assert listing.count_customers(db, op, at_most=5) == 5
    assert listing.count_customers(db, op, at_most=19) == 19
    assert listing.count_customers(db, op, at_most=100) == 19


def test_tags_of_other_orgs_are_rejected(db: Session, world, make_tenant) -> None:  # type: ignore[no-untyped-def]
    other = make_tenant()
    _, (foreign,) = tagging.create_tag_group(db, other.org_id, TagGroupIn(name="g", tags=["t"]))
    with pytest.raises(Invalid) as err:
        listing.list_customers(db, world["admin"], CustomerFilters(tag_ids=[foreign.id]))
    assert err.value.field == "tag_ids"
    with pytest.raises(Invalid) as err:
        customer_tagging.set_customer_tags(db, world["admin"], world["ids"][0], [world["a"], foreign.id])
    assert err.value.field == "tag_ids"


def test_merged_profiles_leave_the_list(db: Session, world) -> None:  # type: ignore[no-untyped-def]
    ids = world["ids"]
    merge.merge_customers(db, world["admin"].org_id, ids[0], ids[1], "dup")
    listed = _all_pages(db, world["admin"], CustomerFilters(), 50)
    assert ids[1] not in listed and ids[0] in listed and len(listed) == 39
