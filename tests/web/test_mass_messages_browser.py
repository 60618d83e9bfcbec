"""The mass-message page in a real browser: a message whose worker died mid-submission is shown as
interrupted and resumed from the console (English), another is cancelled (Chinese)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from tests.campaigns.test_service import _new, _world
from tests.wecom.conftest import Control, CrashAfterCall, CrashBeforeCall, Wired

from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassMessage, MassMessageStatus
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.db import make_sessionmaker

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS

pytestmark = [*BROWSER_MARKS, pytest.mark.slow, pytest.mark.own_members]


def _stall(engine: Engine, org: int, ids: list[int], text: str, wecom: WeComClient, crash: Any) -> int:
    """A message whose worker died during its first WeCom call: left "submitting"."""
    mid = _new(engine, org, ids, text)
    with pytest.raises(RuntimeError):
        campaigns.submit(make_sessionmaker(engine), org, mid, crash(wecom))
    return mid


def _status(engine: Engine, mid: int) -> MassMessageStatus:
    with make_sessionmaker(engine)() as db:
        msg = db.get(MassMessage, mid)
        assert msg is not None
        return msg.status


def test_an_interrupted_message_is_resumed_and_another_cancelled_from_the_console(
    wired: Wired, engine: Engine, tenant: Any, fake: Control, wecom: WeComClient
) -> None:
    from playwright.sync_api import expect, sync_playwright

    org = tenant.org_id
    c = _world(engine, org, fake, wecom)
    resumed = _stall(engine, org, [c["wm_a"], c["wm_b"]], "会员日提醒", wecom, CrashAfterCall)
    cancelled = _stall(engine, org, [c["wm_a"], c["wm_c"]], "周末清仓", wecom, CrashBeforeCall)
    base = wired.app_url
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(20_000)
            page.goto(f"{base}/login")
            page.fill("input[name=email]", f"admin@{tenant.slug}.test")
            page.fill("input[name=password]", "password123")
            page.click("button[type=submit]")

            page.goto(f"{base}/wecom/mass-messages?message_id={resumed}")
            status = page.locator("p.mass-status")
            expect(status).to_contain_text("Being sent to WeCom")
            expect(status).to_contain_text("Interrupted")
            expect(page.locator("table.mass-batches tr[data-state=calling]")).to_have_count(1)
            page.click("button.resume")
            expect(page.locator("p.mass-status")).to_contain_text("Handed to WeCom")
            expect(page.locator("table.mass-batches tr[data-state=submitted]")).to_have_count(2)
            assert _status(engine, resumed) == MassMessageStatus.submitted
            # alice's call had reached WeCom before the crash: found again, not made twice.
            assert len(fake.calls("externalcontact/add_msg_template")) == 2

            page.goto(f"{base}/wecom/mass-messages?message_id={cancelled}")
            page.click("a.lang[lang=zh-CN]")
            expect(page.locator("p.mass-status")).to_contain_text("提交中断")
            page.click("button.cancel")
            expect(page.locator("p.mass-status")).to_contain_text("已取消")
            expect(page.locator("ul.mass-failures li")).to_have_count(2)
            assert _status(engine, cancelled) == MassMessageStatus.cancelled
            assert len(fake.calls("externalcontact/add_msg_template")) == 2
        finally:
            browser.close()
    assert errors == []
