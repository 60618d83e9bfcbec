"""Operators answer leads on their phones: at 390 px wide the first lead, its comment and its reply button
are on the first screen, above the SLA cards."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from siyu.kit.clock import utcnow
from siyu.leads import intake
from siyu.leads.models import Platform

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS

pytestmark = BROWSER_MARKS

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def operator_email(db: Session, make_tenant) -> str:  # type: ignore[no-untyped-def]
    """An organization with three Douyin comments waiting for a reply."""
    tenant = make_tenant("phone-brand")
    now = utcnow()
    comments = [
        intake.IncomingComment(
            Platform.douyin,
            f"@c{n}",
            text,
            now - timedelta(minutes=n),
            item_id="@v1",
            item_title="祛痘精华实测",
            commenter_id=f"_u{n}",
            commenter_name=f"粉丝{n}",
        )
        for n, text in enumerate(("求资料", "怎么买", "多少钱一瓶"))
    ]
    assert len(intake.ingest_comments(db, tenant.org_id, comments, now=now).lead_ids) == 3
    db.commit()
    return f"operator@{tenant.slug}.test"


def test_first_lead_is_on_the_first_screen_of_a_phone(
    live_server: str, operator_email: str, engine: Engine
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("a layout check: one browser run is enough")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(locale="zh-CN", viewport=PHONE, is_mobile=True, has_touch=True)
            page.set_default_timeout(15_000)
            page.goto(f"{live_server}/login?next=/leads")
            page.fill("input[name=email]", operator_email)
            page.fill("input[name=password]", "password123")
            page.click("button[type=submit]")
            first = page.locator("#lead-inbox tr[data-lead-id]").first
            expect(first).to_be_visible()
            comment = first.locator("td").nth(1).locator("strong")
            reply = first.locator("button[type=submit]").first
            expect(comment).to_have_text("求资料")
            for element in (comment, reply):
                box = element.bounding_box()
                assert box is not None
                assert box["y"] + box["height"] <= PHONE["height"], (element, box)
                assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (element, box)
            # The SLA figures are still there, below the leads.
            sla = page.locator("section.lead-sla").bounding_box()
            lead = first.bounding_box()
            assert sla is not None and lead is not None and sla["y"] > lead["y"]
            # No sideways scrolling: the page is as wide as the phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        finally:
            browser.close()
