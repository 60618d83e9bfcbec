"""The analytics pages of the demo brand in a real browser: every chart draws, every CSV export downloads."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine

from siyu.demo.loader import LoadSummary, load_world
from siyu.demo.world import generate_world

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, SCREENSHOT_DIR

pytestmark = BROWSER_MARKS

# Page, heading of its export's first CSV column (in the page's language), and a selector showing its data.
PAGES = (
    ("funnel", "Breakdown", "table.funnel-table tbody tr"),
    ("retention", "Cohort", "table.retention-table tbody tr"),
    ("repurchase", "Group", "table.repurchase-table tbody tr"),
    ("rfm", "Recency score", "table.rfm-segments tbody tr"),
    ("clv", "CLV from (yuan)", "[data-kpi=clv_customers]"),
    ("roi", "Channel", "table.roi-table tbody tr[data-channel]"),
)


@pytest.fixture
def demo(engine: Engine) -> LoadSummary:
    """The sandbox demo brand, small."""
    return load_world(engine, generate_world(customers=300, seed=1))


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if SCREENSHOT_DIR:
        page.wait_for_timeout(1500)  # let ECharts finish its entry animation
        page.screenshot(path=os.path.join(SCREENSHOT_DIR, f"{name}.png"), full_page=True)


def test_demo_brand_analytics_pages_render_and_export(
    live_server: str, demo: LoadSummary, engine: Engine, inline_worker: object
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the pages read the same projection on either database; one browser run is enough")
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                locale="en-US", viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.set_default_timeout(15_000)

            page.goto(f"{live_server}/lang/en?next=/analytics")
            expect(page).to_have_url(f"{live_server}/login?next=%2Fanalytics")
            page.fill("input[name=email]", demo.admin.email)
            page.fill("input[name=password]", demo.admin.password)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{live_server}/analytics/funnel")

            # CLV needs the model fitted once: the page's own button does it.
            page.click("nav.subnav >> text=Lifetime value")
            expect(page.locator("[data-clv-computed]")).to_contain_text("CLV has not been computed yet.")
            page.click("[data-action=recompute-clv]")
            expect(page.locator("[role=status]")).to_contain_text("being recomputed in the background")
            expect(page.locator("[data-clv-computed]")).to_contain_text("CLV last computed at")

            for name, first_column, content in PAGES:
                page.goto(f"{live_server}/analytics/{name}")
                expect(
                    page.locator(f"nav.subnav a[href='/analytics/{name}'][aria-current=page]")
                ).to_be_visible()
                expect(page.locator("#analytics-chart[data-rendered=true]")).to_be_attached()
                expect(page.locator("#analytics-chart canvas").first).to_be_visible()
                expect(page.locator(content).first).to_be_visible()
                page.locator(
                    "#analytics-chart"
                ).hover()  # runs the tooltip formatter; errors are collected below
                _shot(page, f"analytics-{name}")
                with page.expect_download() as info:
                    page.click("[data-action=export-csv]")
                download = info.value
                assert download.suggested_filename == f"{name}.csv"
                raw = Path(download.path()).read_bytes()
                assert raw.startswith(b"\xef\xbb\xbf")
                lines = raw.decode("utf-8-sig").splitlines()
                assert lines[0].split(",")[0] == first_column and len(lines) > 1, (name, lines[:3])

            # A funnel chosen in the form, broken down by source: one bar series per source.
            page.goto(f"{live_server}/analytics/funnel")
            selects = page.locator("#funnel-form select[name=step]")
            selects.nth(0).select_option("customer_added")
            selects.nth(1).select_option("message_received")
            selects.nth(2).select_option("order_paid")
            selects.nth(3).select_option("")
            page.select_option("#funnel-form select[name=breakdown]", "source")
            page.click("#funnel-form button[type=submit]")
            expect(page).to_have_url(
                f"{live_server}/analytics/funnel?step=customer_added&step=message_received"
                "&step=order_paid&step=&step=&window_days=14&breakdown=source"
            )
            expect(page.locator("#analytics-chart[data-rendered=true]")).to_be_attached()
            expect(page.locator("table.funnel-table")).to_have_count(5)  # the sandbox's five sources
            _shot(page, "analytics-funnel-by-source")

            # Add a cost on the ROI page; it shows up in the table.
            page.goto(f"{live_server}/analytics/roi")
            page.fill("#cost-form input[name=channel]", "live_room")
            page.fill("#cost-form input[name=cost_yuan]", "2000")
            page.click("[data-action=add-cost]")
            expect(page.locator("[role=status]")).to_contain_text("Cost saved.")
            expect(page.locator("table.cost-table")).to_contain_text("¥2,000.00")
            expect(page.locator("table.roi-table tr[data-channel=live_room]")).to_contain_text("¥2,000.00")

            # The same pages in Chinese.
            page.click("a.lang[lang=zh-CN]")
            expect(page.locator("nav.mainnav")).to_contain_text("数据分析")
            for name in ("retention", "rfm", "clv"):
                page.goto(f"{live_server}/analytics/{name}")
                expect(page.locator("#analytics-chart[data-rendered=true]")).to_be_attached()
                expect(page.locator("[data-action=export-csv]")).to_have_text("导出 CSV")
                _shot(page, f"analytics-{name}-zh")

            # Frequency is scored by order count, so the demo's two- and three-order buyers fill columns 2
            # and 3 of the grid (rank quintiles left them empty); a cell opens the list of its buyers.
            page.goto(f"{live_server}/analytics/rfm")
            for f in (2, 3):
                assert page.locator(f"table.rfm-grid a[data-cell$='-{f}']").count() > 0, f
            cell = page.locator("table.rfm-grid a[data-cell$='-2']").first
            n = int(cell.inner_text().replace(",", ""))
            cell.click()
            expect(page).to_have_url(re.compile(r"/analytics/rfm/customers\?r=\d&f=2$"))
            expect(page.locator("h2")).to_contain_text("购买频次得分 2")
            rows = page.locator("table.rfm-cell tbody tr")
            expect(rows).to_have_count(min(n, 200))
            # Column 3 of the list is the buyer's order count: every one of them ordered twice.
            assert set(page.locator("table.rfm-cell tbody tr td:nth-child(3)").all_inner_texts()) == {"2"}
            _shot(page, "analytics-rfm-cell-zh")
        finally:
            browser.close()
    assert errors == []
