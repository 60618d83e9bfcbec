"""Text a user typed never runs as script in the console: ECharts tooltips escape names, and the
Content-Security-Policy refuses inline script even where escaping were forgotten."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, update

from siyu.customers.models import Customer, FollowRelation
from siyu.demo.loader import LoadSummary, load_world
from siyu.demo.world import generate_world

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

# What an operator can store as a customer's source, and what anyone can put in a link to the funnel.
PAYLOAD = "<img src=x onerror=alert(document.domain)>"


@pytest.fixture
def poisoned(engine: Engine) -> LoadSummary:
    """The sandbox brand whose customers all carry a source that is an HTML payload."""
    summary = load_world(engine, generate_world(customers=60, seed=3))
    with engine.begin() as conn:
        # First seen yesterday too (created and first followed), so the dashboard's per-source chart has
        # the payload as a series.
        yesterday = datetime.now(UTC) - timedelta(days=1)
        conn.execute(update(Customer).values(source=PAYLOAD, created_at=yesterday))
        conn.execute(update(FollowRelation).values(since=yesterday))
    return summary


def test_poisoned_names_in_charts_stay_text(live_server: str, poisoned: LoadSummary, engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the pages are the same on either database; one browser run is enough")
    from playwright.sync_api import expect, sync_playwright

    dialogs: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(15_000)

            def on_dialog(dialog) -> None:  # type: ignore[no-untyped-def]
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            # The policy reports what it blocks as console errors: our own pages must cause none.
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(f"{live_server}/lang/en?next=/analytics")
            page.fill("input[name=email]", poisoned.admin.email)
            page.fill("input[name=password]", poisoned.admin.password)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{live_server}/analytics/funnel")

            stored = (
                f"{live_server}/analytics/funnel?step=customer_added&step=message_received&breakdown=source"
            )
            reflected = f"{live_server}/analytics/funnel?step={quote(PAYLOAD)}&step=customer_added"
            for url in (stored, reflected, f"{live_server}/"):
                page.goto(url)
                chart = page.locator("#analytics-chart, #added-chart").first
                expect(chart).to_have_attribute("data-rendered", "true")
                chart.scroll_into_view_if_needed()  # the dashboard's chart sits below its "today" block
                box = chart.bounding_box()
                assert box is not None
                # Sweep the plot so the axis tooltip opens on every category (the payload is a step or series).
                shown = 0
                for fy in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
                    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * fy)
                    page.wait_for_timeout(250)
                    shown += chart.locator("div", has_text="onerror=alert").count()
                    # Escaped: the payload shows as text, and no element was made from it.
                    assert chart.locator("img").count() == 0, url
                assert shown, f"no tooltip showed the payload on {url}"

            # What used inline script works from console.js: choosing a leaving member submits the form,
            # and the lead inbox loads and polls through htmx (no eval'd trigger filter).
            page.goto(f"{live_server}/wecom/departure")
            page.locator("select[name=account_id]").select_option(index=1)
            expect(page).to_have_url(re.compile(r"/wecom/departure\?account_id=\d+"))
            page.goto(f"{live_server}/leads")
            expect(page.locator("#lead-inbox")).not_to_contain_text("Loading…")
        finally:
            browser.close()
    assert dialogs == []
    assert errors == []
