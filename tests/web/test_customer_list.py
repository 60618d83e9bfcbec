"""The customer list: its total, who looks after each customer, and tags put on or taken off ticked
customers at once (through the customers service, so each change leaves its tag event)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.customers import follows, profiles, tagging
from siyu.customers.models import CustomerTag
from siyu.customers.schemas import TagGroupIn
from siyu.events.models import Event
from siyu.tenancy import service as identity
from siyu.web import customer_pages

from .test_console import World, email, login


@pytest.fixture
def world(db: Session, make_tenant) -> World:  # type: ignore[no-untyped-def]
    """Organization A: a customer of the operator's account, one of an account without operator, a tag
    group; organization B: a tag A must not use."""
    a = make_tenant("list-a")
    mine_acc = accounts.create_account(
        db,
        a.org_id,
        AccountIn(
            kind=AccountKind.personal_wechat, external_id="wx-op", name="Op phone", operator_id=a.operator_id
        ),
    )
    desk = accounts.create_account(
        db, a.org_id, AccountIn(kind=AccountKind.wecom_member, external_id="wm-1", name="Front desk")
    )
    mine = profiles.create_customer(db, a.org_id, {"name": "张三"})
    follows.follow(db, a.org_id, mine.id, mine_acc.id)
    theirs = profiles.create_customer(db, a.org_id, {"name": "李四"})
    follows.follow(db, a.org_id, theirs.id, desk.id)
    _group, tags = tagging.create_tag_group(db, a.org_id, TagGroupIn(name="意向", tags=["高意向", "低意向"]))
    b = identity.create_organization(db, "Brand B", "list-b")
    _g, b_tags = tagging.create_tag_group(db, b.id, TagGroupIn(name="B group", tags=["B tag"]))
    db.commit()
    return World(a, mine_acc.id, desk.id, mine.id, theirs.id, 0, tags[0].id, tags[1].id, b_tags[0].id)


def test_list_shows_total_and_who_looks_after_each_customer(client: TestClient, world: World) -> None:
    login(client, email(world, "admin"))
    client.cookies.set("lang", "zh_CN")
    page = client.get("/customers").text
    assert 'data-total="2"' in page and "2 位客户" in page
    # The operator's account has an operator: their name; the other account has none: its own name.
    assert f"operator of {world.tenant.slug}" in page and "Front desk" in page  # type: ignore[attr-defined]
    assert "负责人" in page


def test_total_is_capped_and_counted_exactly_on_request(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap the list says "N+" without reading every match; the link counts them all."""
    monkeypatch.setattr(customer_pages, "TOTAL_SHOWN_UP_TO", 1)
    login(client, email(world, "admin"))
    client.cookies.set("lang", "zh_CN")
    page = client.get("/customers?stage=new").text
    assert 'data-total-over="1"' in page and "1+ 位客户（超过 1 位）" in page
    assert "data-total=" not in page and 'href="/customers?stage=new&amp;exact=1"' in page
    exact = client.get("/customers?stage=new&exact=1", headers={"HX-Request": "true", "HX-Target": "results"})
    assert 'data-total="2"' in exact.text and "2 位客户" in exact.text and "data-total-over" not in exact.text
    monkeypatch.setattr(customer_pages, "TOTAL_SHOWN_UP_TO", 2)
    assert 'data-total="2"' in client.get("/customers").text  # at the cap: still exact
    # A search shorter than a trigram scans every customer to count: no total until asked for.
    short = client.get("/customers?q=张").text
    assert "data-total" not in short and 'href="/customers?q=%E5%BC%A0&amp;exact=1"' in short
    assert 'data-total="1"' in client.get("/customers?q=张&exact=1").text


def test_bulk_tag_add_and_remove_record_events(client: TestClient, world: World, db: Session) -> None:
    csrf = login(client, email(world, "admin"))
    both = [world.mine, world.theirs]
    answer = client.post(
        "/customers/bulk-tags",
        data={
            "customer_id": both,
            "tag_id": world.tag_hot,
            "action": "add",
            "back": "/customers?q=x",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/customers?q=x&bulk=add%3A2"
    tagged = set(db.scalars(select(CustomerTag.customer_id).where(CustomerTag.tag_id == world.tag_hot)))
    assert tagged == set(both)
    events = db.scalars(select(Event.customer_id).where(Event.type == "tag_added")).all()
    assert sorted(events) == sorted(both)
    client.post(
        "/customers/bulk-tags",
        data={"customer_id": [world.mine], "tag_id": world.tag_hot, "action": "remove", "csrf_token": csrf},
    )
    db.expire_all()
    assert set(db.scalars(select(CustomerTag.customer_id).where(CustomerTag.tag_id == world.tag_hot))) == {
        world.theirs
    }
    assert db.scalars(select(Event.customer_id).where(Event.type == "tag_removed")).all() == [world.mine]


def test_bulk_tag_is_all_or_nothing_and_scoped(client: TestClient, world: World, db: Session) -> None:
    # The operator does not see "theirs": nothing is tagged, not even their own customer.
    csrf = login(client, email(world, "operator"))
    answer = client.post(
        "/customers/bulk-tags",
        data={
            "customer_id": [world.mine, world.theirs],
            "tag_id": world.tag_hot,
            "action": "add",
            "csrf_token": csrf,
        },
    )
    assert answer.status_code == 404
    assert db.scalars(select(CustomerTag.customer_id)).all() == []
    # A tag of another organization: refused in words, nothing stored.
    page = client.post(
        "/customers/bulk-tags",
        data={"customer_id": [world.mine], "tag_id": world.foreign_tag, "action": "add", "csrf_token": csrf},
    )
    assert page.status_code == 200 and 'role="alert"' in page.text
    assert db.scalars(select(CustomerTag.customer_id)).all() == []
