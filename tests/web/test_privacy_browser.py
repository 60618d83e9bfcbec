"""An admin exports a customer's data, erases it on request with a typed confirmation and finds both in
the audit log, in the console (Debian's Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from siyu.customers import profiles
from siyu.customers.models import Customer
from siyu.kit.db import make_sessionmaker

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS

pytestmark = BROWSER_MARKS


@pytest.fixture
def admin_and_customer(db: Session, make_tenant) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    tenant = make_tenant("privacy-brand")
    customer = profiles.create_customer(
        db, tenant.org_id, {"name": "钱女士", "mobile": "13711112222", "source": "douyin"}
    )
    db.commit()
    return f"admin@{tenant.slug}.test", customer.id


@pytest.mark.slow
def test_an_admin_exports_and_erases_a_customer_and_sees_the_audit_entry(
    live_server: str, admin_and_customer: tuple[str, int], engine: Engine
) -> None:
    from playwright.sync_api import expect, sync_playwright

    email, customer_id = admin_and_customer
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(
                locale="en-US", viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(15_000)
            page.goto(f"{live_server}/login?next=/customers/{customer_id}")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", "password123")
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_contain_text("钱女士")

            # The JSON download holds the profile with the full number.
            with page.expect_download() as info:
                page.click("text=Download (JSON)")
            data = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
            assert data["profile"]["mobile"] == "13711112222"
            # The readable page shows the same.
            page.click("text=Export personal data")
            expect(page.locator("h1")).to_contain_text("钱女士")
            expect(page.locator("main")).to_contain_text("13711112222")

            page.goto(f"{live_server}/customers/{customer_id}")
            page.click("text=Erase on request")
            page.fill("input[name=confirm]", "not-the-id")
            page.click("button.danger")
            expect(page.locator("[role=alert]")).to_be_visible()
            page.fill("input[name=confirm]", str(customer_id))
            page.click("button.danger")
            # The audit log, filtered to this customer, shows the erasure above the two exports.
            expect(page.locator("h1")).to_have_text("Audit log")
            rows = page.locator("table.audit tbody tr")
            expect(rows).to_have_count(3)
            expect(rows.nth(0)).to_have_attribute("data-action", "customer_erased")
            expect(rows.nth(1)).to_have_attribute("data-action", "customer_exported")
            expect(rows.nth(2)).to_have_attribute("data-action", "customer_exported")
            expect(rows.nth(0)).to_contain_text("Customer data erased")
            assert "13711112222" not in page.content()
        finally:
            browser.close()
    assert errors == []
    with make_sessionmaker(engine)() as check:
        customer = check.get(Customer, customer_id)
        assert customer is not None and customer.erased_at is not None and customer.mobile is None
