"""The console over HTTP (TestClient): login, CSRF, visibility, masking, in-place edits, language, 404s."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts import service as accounts
from siyu.accounts.models import Account, AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.commerce.models import Order, OrderItem
from siyu.customers import customer_tagging, follows, identities, profiles, tagging
from siyu.customers.models import Customer, CustomerTag, Note
from siyu.customers.schemas import TagGroupIn
from siyu.kit.clock import utcnow
from siyu.tenancy import service as identity
from siyu.tenancy.deps import SESSION_COOKIE
from siyu.web.pages import login_throttle_keys

PASSWORD = "password123"


@dataclass
class World:
    """Two organizations: A with an operator's account and an unassigned one, B with one customer."""

    tenant: object
    op_account: int
    other_account: int
    mine: int  # followed by the operator's account
    theirs: int  # followed only by the unassigned account
    foreign: int  # a customer of organization B
    tag_hot: int
    tag_cold: int
    foreign_tag: int


@pytest.fixture
def world(db: Session, make_tenant) -> World:  # type: ignore[no-untyped-def]
    a = make_tenant("brand-a")
    # Organization B needs no users (each costs an argon2 hash): only data that A must never see.
    b = identity.create_organization(db, "Brand B", "brand-b")
    op_acc = accounts.create_account(
        db,
        a.org_id,
        AccountIn(
            kind=AccountKind.personal_wechat,
            external_id="wx-op",
            name="Op phone",
            operator_id=a.operator_id,
            soft_cap=2,
            hard_cap=5,
        ),
    )
    other_acc = accounts.create_account(
        db, a.org_id, AccountIn(kind=AccountKind.wecom_member, external_id="wm-1", name="Front desk")
    )
    mine = profiles.create_customer(
        db,
        a.org_id,
        {"name": "张三", "mobile": "13812345678", "source": "douyin", "stage": "converted", "intent": "面霜"},
    )
    follows.follow(db, a.org_id, mine.id, op_acc.id, source="douyin")
    theirs = profiles.create_customer(
        db, a.org_id, {"name": "李四", "mobile": "13900001111", "source": "taobao"}
    )
    follows.follow(db, a.org_id, theirs.id, other_acc.id)
    _group, tags = tagging.create_tag_group(db, a.org_id, TagGroupIn(name="意向", tags=["高意向", "低意向"]))
    b_acc = accounts.create_account(
        db, b.id, AccountIn(kind=AccountKind.personal_wechat, external_id="wx-b", name="B phone")
    )
    foreign = profiles.create_customer(db, b.id, {"name": "王五", "mobile": "13700002222"})
    follows.follow(db, b.id, foreign.id, b_acc.id)
    _g, b_tags = tagging.create_tag_group(db, b.id, TagGroupIn(name="B group", tags=["B tag"]))
    db.commit()
    return World(
        a, op_acc.id, other_acc.id, mine.id, theirs.id, foreign.id, tags[0].id, tags[1].id, b_tags[0].id
    )


def hidden_csrf(page: str) -> str:
    """The value of the first hidden csrf_token field of a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no csrf_token field on the page"
    return html.unescape(match.group(1))


def meta_csrf(page: str) -> str:
    """The session's CSRF token from <meta name="csrf-token">."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert match, "no csrf-token meta on the page"
    return html.unescape(match.group(1))


def login(client: TestClient, email: str, password: str = PASSWORD, next_url: str = "/") -> str:
    """Log in through the form; returns the session's CSRF token."""
    form = client.get("/login")
    assert form.status_code == 200
    response = client.post(
        "/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": hidden_csrf(form.text),
            "next": next_url,
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return meta_csrf(client.get("/").text)


def email(world: World, role: str) -> str:
    return f"{role}@{world.tenant.slug}.test"  # type: ignore[attr-defined]


# --- login ----------------------------------------------------------------------------------------


def test_login_sets_httponly_lax_cookie_and_redirects(client: TestClient, world: World) -> None:
    form = client.get("/login?next=/accounts")
    assert form.status_code == 200
    assert 'name="next" value="/accounts"' in form.text
    response = client.post(
        "/login",
        data={
            "email": email(world, "admin").upper(),
            "password": PASSWORD,
            "csrf_token": hidden_csrf(form.text),
            "next": "/accounts",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/accounts"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # settings.secure_cookies is off in tests
    page = client.get("/accounts")
    assert page.status_code == 200
    assert "Op phone" in page.text


def test_wrong_password_and_unknown_email_get_the_same_message(client: TestClient, world: World) -> None:
    answers = []
    for who, password in ((email(world, "admin"), "wrong-password"), ("nobody@nowhere.test", PASSWORD)):
        form = client.get("/login")
        response = client.post(
            "/login",
            data={"email": who, "password": password, "csrf_token": hidden_csrf(form.text)},
            follow_redirects=False,
        )
        assert response.status_code == 401
        assert "Wrong email or password." in response.text
        assert not any(c.startswith(SESSION_COOKIE + "=") for c in response.headers.get_list("set-cookie"))
        answers.append(re.sub(r'value="[^"]*"', "", response.text))
    # Nothing but the echoed email and fresh tokens differs between the two failures.
    assert answers[0].replace(email(world, "admin"), "X") == answers[1].replace("nobody@nowhere.test", "X")


def test_login_form_needs_its_csrf_cookie(client: TestClient, world: World) -> None:
    response = client.post(
        "/login",
        data={"email": email(world, "admin"), "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_repeated_failures_pause_logins_for_that_email(client: TestClient, world: World, app) -> None:  # type: ignore[no-untyped-def]
    app.state.settings.login_max_failures = 3

    def attempt(password: str):  # type: ignore[no-untyped-def]
        form = client.get("/login")
        return client.post(
            "/login",
            data={"email": email(world, "admin"), "password": password, "csrf_token": hidden_csrf(form.text)},
            follow_redirects=False,
        )

    assert [attempt("wrong-password").status_code for _ in range(3)] == [401, 401, 401]
    paused = attempt(PASSWORD)  # even the right password waits out the window
    assert paused.status_code == 429
    assert "Too many failed logins" in paused.text
    for key in login_throttle_keys(email(world, "admin"), "testclient"):
        app.state.login_attempts.reset(key)
    assert attempt(PASSWORD).status_code == 303


def test_open_redirects_are_refused(client: TestClient, world: World) -> None:
    form = client.get("/login")
    response = client.post(
        "/login",
        data={
            "email": email(world, "admin"),
            "password": PASSWORD,
            "csrf_token": hidden_csrf(form.text),
            "next": "//evil.example/x",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"
    switched = client.get("/lang/en?next=https://evil.example/", follow_redirects=False)
    assert switched.headers["location"] == "/"


def test_pages_redirect_to_login_when_logged_out(client: TestClient, world: World) -> None:
    response = client.get("/customers?stage=new", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fcustomers%3Fstage%3Dnew"
    htmx = client.get(
        f"/customers/{world.mine}/tags/edit", headers={"HX-Request": "true"}, follow_redirects=False
    )
    assert htmx.status_code == 401
    assert htmx.headers["HX-Redirect"].startswith("/login?next=")


def test_logout_needs_csrf_and_kills_the_session(client: TestClient, world: World) -> None:
    csrf = login(client, email(world, "admin"))
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


# --- CSRF -----------------------------------------------------------------------------------------


def test_post_without_csrf_is_403_and_changes_nothing(client: TestClient, world: World, db: Session) -> None:
    csrf = login(client, email(world, "admin"))
    url = f"/customers/{world.mine}/notes"
    assert client.post(url, data={"body": "forged"}).status_code == 403
    assert client.post(url, data={"body": "forged", "csrf_token": "wrong"}).status_code == 403
    assert client.post(url, data={"body": "forged"}, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert db.scalar(select(Note.id).where(Note.customer_id == world.mine)) is None
    ok = client.post(
        url, data={"body": "wants the night cream"}, headers={"X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    assert ok.status_code == 200
    assert "wants the night cream" in ok.text
    db.expire_all()
    assert db.scalars(select(Note.body).where(Note.customer_id == world.mine)).all() == [
        "wants the night cream"
    ]


# --- visibility and masking -----------------------------------------------------------------------


def test_operator_sees_only_their_customers_with_masked_mobiles(client: TestClient, world: World) -> None:
    login(client, email(world, "operator"))
    page = client.get("/customers").text
    assert "张三" in page and "138****5678" in page
    assert "13812345678" not in page  # neither in the mobile column nor inside the remark
    assert "李四" not in page and "王五" not in page
    detail = client.get(f"/customers/{world.mine}").text
    assert "13812345678" not in detail and "138****5678" in detail
    assert client.get(f"/customers/{world.theirs}").status_code == 404


def test_admin_sees_whole_org_and_full_mobiles(client: TestClient, world: World) -> None:
    login(client, email(world, "admin"))
    page = client.get("/customers").text
    assert "13812345678" in page and "13900001111" in page
    assert "王五" not in page


def test_other_orgs_customer_is_a_404_page(client: TestClient, world: World) -> None:
    login(client, email(world, "admin"))
    for url in (f"/customers/{world.foreign}", f"/customers/{world.foreign}/tags/edit", "/customers/999999"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith("text/html")
        assert "王五" not in response.text
    csrf = meta_csrf(client.get("/").text)
    posted = client.post(
        f"/customers/{world.foreign}/tags", data={"tag_id": world.foreign_tag, "csrf_token": csrf}
    )
    assert posted.status_code == 404


# --- customer list --------------------------------------------------------------------------------


def test_search_filters(client: TestClient, world: World, db: Session) -> None:
    login(client, email(world, "admin"))
    customer_tagging.add_tags(db, _admin(world), world.theirs, [world.tag_cold])
    db.commit()

    def names(query: str) -> set[str]:
        return {n for n in ("张三", "李四") if n in client.get("/customers" + query).text}

    assert names("?mobile=5678") == {"张三"}
    assert names("?mobile=13900001111") == {"李四"}
    assert names("?q=李") == {"李四"}
    assert names(f"?tag={world.tag_cold}") == {"李四"}
    assert names("?stage=converted") == {"张三"}
    assert names("?source=taobao") == {"李四"}
    bad = client.get("/customers?mobile=12")
    assert bad.status_code == 200 and "last 4 digits" in bad.text
    foreign_tag = client.get(f"/customers?tag={world.foreign_tag}")
    assert "Unknown tag." in foreign_tag.text and "李四" not in foreign_tag.text


def test_live_filter_returns_only_the_results_fragment(client: TestClient, world: World) -> None:
    login(client, email(world, "admin"))
    fragment = client.get("/customers?q=张", headers={"HX-Request": "true", "HX-Target": "results"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "张三" in fragment.text and "李四" not in fragment.text


def test_keyset_pages(client: TestClient, world: World, db: Session) -> None:
    for i in range(30):
        profiles.create_customer(db, world.tenant.org_id, {"name": f"批量{i:02d}", "source": "offline"})  # type: ignore[attr-defined]
    db.commit()
    login(client, email(world, "admin"))
    first = client.get("/customers?source=offline").text
    assert first.count('data-customer-id="') == 25
    next_url = html.unescape(re.search(r'href="([^"]+)" [^>]*rel="next"', first).group(1))  # type: ignore[union-attr]
    assert "source=offline" in next_url and "cursor=" in next_url
    second = client.get(next_url).text
    assert second.count('data-customer-id="') == 5
    assert 'rel="next"' not in second
    shown = set(re.findall(r"批量\d\d", first)) | set(re.findall(r"批量\d\d", second))
    assert len(shown) == 30


# --- in-place edits -------------------------------------------------------------------------------


def _admin(world: World):  # type: ignore[no-untyped-def]
    from siyu.tenancy.models import Role
    from siyu.tenancy.principal import Principal

    return Principal(org_id=world.tenant.org_id, user_id=world.tenant.admin_id, role=Role.admin)  # type: ignore[attr-defined]


def test_tag_picker_saves_in_place(client: TestClient, world: World, db: Session) -> None:
    csrf = login(client, email(world, "operator"))
    picker = client.get(f"/customers/{world.mine}/tags/edit", headers={"HX-Request": "true"})
    assert picker.status_code == 200
    assert "意向" in picker.text and "高意向" in picker.text and 'type="checkbox"' in picker.text
    saved = client.post(
        f"/customers/{world.mine}/tags",
        data={"tag_id": [world.tag_hot, world.tag_cold]},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert saved.status_code == 200
    assert f'data-tag-id="{world.tag_hot}"' in saved.text and "<html" not in saved.text
    stored = set(db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == world.mine)))
    assert stored == {world.tag_hot, world.tag_cold}
    # Unticking everything clears the tags.
    client.post(
        f"/customers/{world.mine}/tags", data={}, headers={"X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    db.expire_all()
    assert db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == world.mine)).all() == []


def test_tag_of_another_org_is_refused_and_nothing_saved(
    client: TestClient, world: World, db: Session
) -> None:
    csrf = login(client, email(world, "admin"))
    response = client.post(
        f"/customers/{world.mine}/tags",
        data={"tag_id": [world.tag_hot, world.foreign_tag]},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "unknown tag ids" in response.text
    assert db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == world.mine)).all() == []


def test_remark_edit_and_reset(client: TestClient, world: World, db: Session) -> None:
    csrf = login(client, email(world, "admin"))
    headers = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    auto = db.get(Customer, world.mine).remark  # type: ignore[union-attr]
    too_long = client.post(f"/customers/{world.mine}/remark", data={"remark": "x" * 21}, headers=headers)
    assert "at most 20 characters" in too_long.text
    saved = client.post(f"/customers/{world.mine}/remark", data={"remark": "VIP 张姐"}, headers=headers)
    assert "VIP 张姐" in saved.text and "Reset to automatic" in saved.text
    db.expire_all()
    row = db.get(Customer, world.mine)
    assert row is not None and row.remark == "VIP 张姐" and row.remark_is_manual
    reset = client.post(f"/customers/{world.mine}/remark/reset", headers=headers)
    assert reset.status_code == 200 and "Reset to automatic" not in reset.text
    db.expire_all()
    row = db.get(Customer, world.mine)
    assert row is not None and row.remark == auto and not row.remark_is_manual


def test_operator_saving_the_masked_remark_keeps_the_mobile(
    client: TestClient, world: World, db: Session
) -> None:
    csrf = login(client, email(world, "operator"))
    before = db.get(Customer, world.mine).remark  # type: ignore[union-attr]
    assert "13812345678" in before
    masked = before.replace("13812345678", "138****5678")
    client.post(
        f"/customers/{world.mine}/remark",
        data={"remark": masked},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    db.expire_all()
    row = db.get(Customer, world.mine)
    assert row is not None and row.remark == before and not row.remark_is_manual  # unchanged: no edit
    # Edited around the masked number: the stored digits stand in for it.
    client.post(
        f"/customers/{world.mine}/remark",
        data={"remark": "VIP+138****5678"},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true", "Accept-Language": "zh-CN"},
    )
    db.expire_all()
    assert db.get(Customer, world.mine).remark == "VIP+13812345678"  # type: ignore[union-attr]
    # A masked number that is not the customer's is refused in words, and nothing changes.
    refused = client.post(
        f"/customers/{world.mine}/remark",
        data={"remark": "VIP+139****0000"},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true", "Accept-Language": "zh-CN"},
    )
    assert "打码的手机号" in refused.text
    db.expire_all()
    assert db.get(Customer, world.mine).remark == "VIP+13812345678"  # type: ignore[union-attr]


def test_empty_note_is_refused(client: TestClient, world: World, db: Session) -> None:
    csrf = login(client, email(world, "admin"))
    response = client.post(
        f"/customers/{world.mine}/notes",
        data={"body": "   "},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert "Write something first." in response.text
    assert db.scalar(select(Note.id)) is None


def test_detail_shows_follows_orders_and_timeline(client: TestClient, world: World, db: Session) -> None:
    order = Order(
        org_id=world.tenant.org_id,
        customer_id=world.mine,
        account_id=world.op_account,  # type: ignore[attr-defined]
        platform="taobao",
        external_id="TB-1001",
        amount_fen=1999900,
        refunded_fen=0,
        paid_at=utcnow() - timedelta(days=2),
    )
    db.add(order)
    db.flush()
    db.add(OrderItem(order_id=order.id, name="修护面霜", quantity=2, unit_price_fen=999950))
    db.commit()
    login(client, email(world, "admin"))
    page = client.get(f"/customers/{world.mine}").text
    assert "Op phone" in page  # follow relation's account
    assert "TB-1001" in page and "¥19,999.00" in page and "修护面霜 ×2" in page
    assert 'data-kind="order"' in page


def test_merged_away_id_redirects_to_the_survivor(client: TestClient, world: World, db: Session) -> None:
    dup = profiles.create_customer(db, world.tenant.org_id, {"name": "张三二号"})  # type: ignore[attr-defined]
    db.commit()
    survivor = identities.add_identity(db, world.tenant.org_id, dup.id, "mobile", "13812345678")  # type: ignore[attr-defined,arg-type]
    db.commit()
    assert survivor.id == world.mine
    login(client, email(world, "admin"))
    response = client.get(f"/customers/{dup.id}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/customers/{world.mine}"


# --- dashboard and accounts -----------------------------------------------------------------------


def _chart(page: str) -> dict:  # type: ignore[type-arg]
    match = re.search(r'<script type="application/json" id="added-chart-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match.group(1))


def test_dashboard_counts_are_scoped(client: TestClient, world: World, db: Session) -> None:
    db.add(
        Order(
            org_id=world.tenant.org_id,
            customer_id=world.theirs,
            platform="jd",
            external_id="JD-1",  # type: ignore[attr-defined]
            amount_fen=12345,
            paid_at=utcnow() - timedelta(days=1),
        )
    )
    db.commit()
    login(client, email(world, "operator"))
    page = client.get("/").text
    assert re.search(r'data-kpi="customers">1<', page)
    assert re.search(r'data-kpi="orders_30d">0<', page)
    chart = _chart(page)
    assert len(chart["days"]) == 90 and sum(chart["totals"]) == 1
    assert [s["name"] for s in chart["series"]] == ["Douyin"]
    client.cookies.clear()
    login(client, email(world, "admin"))
    page = client.get("/").text
    assert re.search(r'data-kpi="customers">2<', page)
    assert re.search(r'data-kpi="orders_30d">1<', page) and "¥123.45" in page
    assert re.search(r'data-kpi="converted_share">50.0%<', page)
    assert sum(_chart(page)["totals"]) == 2


def test_chart_buckets_by_shanghai_day(client: TestClient, world: World, db: Session) -> None:
    from datetime import UTC, datetime

    from siyu.web import queries

    # 16:30 UTC is 00:30 the next day in Shanghai.
    now = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
    late = datetime(2026, 3, 8, 16, 30, tzinfo=UTC)
    c = profiles.create_customer(db, world.tenant.org_id, {"name": "夜猫子", "source": "live"})  # type: ignore[attr-defined]
    c.created_at = late
    for cid in (world.mine, world.theirs):
        db.get(Customer, cid).created_at = now - timedelta(days=200)  # type: ignore[union-attr]
    db.commit()
    series = queries.added_per_day(db, _admin(world), tz="Asia/Shanghai", days=5, now=now)
    assert series.days == ["2026-03-06", "2026-03-07", "2026-03-08", "2026-03-09", "2026-03-10"]
    assert series.counts == {"live": [0, 0, 0, 1, 0]}


def test_accounts_page_shows_capacity_levels(client: TestClient, world: World, db: Session) -> None:
    acc = db.get(Account, world.op_account)
    assert acc is not None
    acc.friend_count = 3  # soft cap 2, hard cap 5
    db.commit()
    login(client, email(world, "admin"))
    page = client.get("/accounts").text
    row = re.search(rf'<tr data-account-id="{world.op_account}">(.*?)</tr>', page, re.S)
    assert row and "level-warn" in row.group(1) and "width: 60.0%" in row.group(1)
    assert "operator of brand-a" in row.group(1)
    other = re.search(rf'<tr data-account-id="{world.other_account}">(.*?)</tr>', page, re.S)
    assert other and "level-ok" in other.group(1) and "Unassigned" in other.group(1)
    client.cookies.clear()
    login(client, email(world, "operator"))
    page = client.get("/accounts").text
    assert "Op phone" in page and "Front desk" not in page


# --- language -------------------------------------------------------------------------------------


def test_language_from_browser_then_cookie(client: TestClient, world: World) -> None:
    zh = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert "登录 siyu" in zh.text and 'lang="zh-CN"' in zh.text
    assert zh.headers["content-language"] == "zh-CN"
    en = client.get("/login", headers={"Accept-Language": "fr-FR,en;q=0.5"})
    assert "Log in to siyu" in en.text
    switched = client.get(
        "/lang/en?next=/login", headers={"Accept-Language": "zh-CN"}, follow_redirects=False
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/login"
    assert "lang=en" in switched.headers["set-cookie"]
    client.cookies.set("lang", "en")
    assert "Log in to siyu" in client.get("/login", headers={"Accept-Language": "zh-CN"}).text
    assert client.get("/lang/fr").status_code == 404


def test_console_in_chinese(client: TestClient, world: World) -> None:
    login(client, email(world, "admin"))
    client.get("/lang/zh_CN?next=/")
    page = client.get("/").text
    assert "概览" in page and "近 30 天订单" in page and "Dashboard" not in page
    chart = _chart(page)
    assert "抖音" in [s["name"] for s in chart["series"]] and chart["total_name"] == "合计"
    detail = client.get(f"/customers/{world.mine}").text
    assert "客户资料" in detail and "已成交" in detail
