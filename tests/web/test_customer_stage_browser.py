"""Setting a customer's stage by hand, with a reason, in the Chinese console (Debian's Chromium)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from siyu.customers import profiles
from siyu.events.models import Event
from siyu.kit.db import make_sessionmaker

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS

pytestmark = BROWSER_MARKS


@pytest.fixture
def admin_and_customer(db: Session, make_tenant) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    tenant = make_tenant("stage-brand")
    customer = profiles.create_customer(db, tenant.org_id, {"name": "赵女士", "source": "douyin"})
    db.commit()
    return f"admin@{tenant.slug}.test", customer.id


def test_an_admin_sets_a_stage_with_a_reason_in_chinese(
    live_server: str, admin_and_customer: tuple[str, int], engine: Engine
) -> None:
    from playwright.sync_api import expect, sync_playwright

    email, customer_id = admin_and_customer
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(locale="zh-CN", viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(15_000)
            page.goto(f"{live_server}/login?next=/customers/{customer_id}")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", "password123")
            page.click("button[type=submit]")
            expect(page.locator("#stage h2")).to_have_text("阶段")
            expect(page.locator("#stage .badge")).to_have_text("新客户")

            # Without a reason the browser refuses to send; with one, the stage moves.
            page.select_option("#stage select[name=stage]", "engaged")
            page.fill("#stage input[name=reason]", "电话里聊过，很感兴趣")
            page.click("#stage button[type=submit]")
            expect(page.locator("#stage [role=status]")).to_have_text("已保存。")
            expect(page.locator("#stage .badge")).to_have_text("活跃互动")
            page.reload()
            expect(page.locator("h1 .badge")).to_have_text("活跃互动")
        finally:
            browser.close()
    assert errors == []
    with make_sessionmaker(engine)() as check:
        change = check.scalars(
            select(Event).where(Event.customer_id == customer_id, Event.type == "stage_changed")
        ).one()
        assert change.properties["reason"] == "电话里聊过，很感兴趣" and change.properties["manual"] is True
