"""The console in a real browser: Debian's Chromium driven by Playwright against uvicorn on loopback."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.customers import follows, profiles, tagging
from siyu.customers.models import CustomerTag
from siyu.customers.schemas import TagGroupIn
from siyu.kit.db import make_sessionmaker

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, SCREENSHOT_DIR

pytestmark = BROWSER_MARKS


@dataclass
class Seeded:
    email: str
    customer_id: int
    tag_id: int


@pytest.fixture
def seeded(db: Session, make_tenant) -> Seeded:  # type: ignore[no-untyped-def]
    """An operator with one account following two customers, and a tag group with two tags."""
    tenant = make_tenant("browser-brand")
    acc = accounts.create_account(
        db,
        tenant.org_id,
        AccountIn(
            kind=AccountKind.personal_wechat,
            external_id="wx-1",
            name="主号 1",
            operator_id=tenant.operator_id,
        ),
    )
    first = profiles.create_customer(
        db, tenant.org_id, {"name": "陈小姐", "mobile": "13811112222", "source": "douyin", "intent": "祛痘"}
    )
    second = profiles.create_customer(db, tenant.org_id, {"name": "刘先生", "source": "taobao"})
    for c in (first, second):
        follows.follow(db, tenant.org_id, c.id, acc.id, source=c.source)
    _group, tags = tagging.create_tag_group(
        db, tenant.org_id, TagGroupIn(name="意向", tags=["高意向", "低意向"])
    )
    tagging.create_tag_group(db, tenant.org_id, TagGroupIn(name="痛点", tags=["痘痘", "敏感肌"]))
    db.commit()
    return Seeded(email=f"operator@{tenant.slug}.test", customer_id=first.id, tag_id=tags[0].id)


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if SCREENSHOT_DIR:
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, f"{name}.png"), full_page=True)


def test_login_edit_tags_switch_language_and_chart(live_server: str, seeded: Seeded, engine: Engine) -> None:
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.set_default_timeout(15_000)

            # Logged out: the customer list sends us to the login form, which brings us back.
            page.goto(f"{live_server}/customers")
            expect(page).to_have_url(f"{live_server}/login?next=%2Fcustomers")
            _shot(page, "login")
            page.fill("input[name=email]", seeded.email)
            page.fill("input[name=password]", "password123")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{live_server}/customers")
            expect(page.locator(f"tr[data-customer-id='{seeded.customer_id}'] td.mobile")).to_have_text(
                "138****2222"
            )
            _shot(page, "customers")

            # Open the customer and tick a tag in the picker; the fragment is swapped in place. The picker
            # has no hidden CSRF field, so saving also proves htmx sends X-CSRF-Token from <body hx-headers>.
            page.click("text=陈小姐")
            expect(page).to_have_url(f"{live_server}/customers/{seeded.customer_id}")
            page.click("[data-action=edit-tags]")
            page.check(f"input[name=tag_id][value='{seeded.tag_id}']")
            _shot(page, "tag-picker")
            page.click("[data-action=save-tags]")
            expect(page.locator(f"#tags .tag[data-tag-id='{seeded.tag_id}']")).to_be_visible()
            expect(page.locator("#tags [role=status]")).to_be_visible()

            # Reloaded from the server: still there, and in the database.
            page.reload()
            expect(page.locator(f"#tags .tag[data-tag-id='{seeded.tag_id}']")).to_contain_text("高意向")
            with make_sessionmaker(engine)() as check:
                stored = check.scalars(
                    select(CustomerTag.tag_id).where(CustomerTag.customer_id == seeded.customer_id)
                )
                assert list(stored) == [seeded.tag_id]

            # A note through HTMX; the timeline reloads itself and shows it too.
            page.fill("textarea[name=body]", "想要祛痘套装，周五再联系")
            page.click("#notes button[type=submit]")
            expect(page.locator("#notes .notes li").first).to_contain_text("周五再联系")
            expect(page.locator("#timeline li[data-kind=note]").first).to_contain_text("周五再联系")
            _shot(page, "customer")

            # Switch to Chinese from the header and stay on the same page.
            page.click("a.lang[lang=zh-CN]")
            expect(page).to_have_url(f"{live_server}/customers/{seeded.customer_id}")
            expect(page.locator("h2", has_text="客户资料")).to_be_visible()
            expect(page.locator("nav.mainnav")).to_contain_text("概览")

            # The dashboard chart renders into a canvas.
            page.click("nav.mainnav >> text=概览")
            expect(page.locator("#added-chart[data-rendered=true]")).to_be_attached()
            expect(page.locator("#added-chart canvas").first).to_be_attached()
            expect(page.locator("[data-kpi=customers]")).to_have_text("2")
            _shot(page, "dashboard")

            page.click("nav.mainnav >> text=账号")
            expect(page.locator(".capacity").first).to_be_visible()
            _shot(page, "accounts")
        finally:
            browser.close()
    assert errors == []
