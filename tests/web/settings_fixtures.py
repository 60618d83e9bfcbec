"""What the settings page tests share: a logged-in console client in a chosen language, and an organization
with an account in a routing pool and a tag group (enough to issue a channel code)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.channels import service as channels
from siyu.channels.schemas import MemberIn, PoolIn
from siyu.customers import tagging
from siyu.customers.schemas import TagGroupIn

PASSWORD = "password123"


def console_login(client: TestClient, email: str, lang: str = "zh_CN") -> str:
    """Log in through the form in ``lang``; returns the session's CSRF token."""
    client.cookies.set("lang", lang)
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    res = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": html.unescape(token.group(1)), "next": "/"},
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text)
    assert meta
    return html.unescape(meta.group(1))


def field_error(page: str, field: str) -> str | None:
    """The message shown in red beside ``field``, or None."""
    match = re.search(rf'data-error-for="{re.escape(field)}">([^<]*)<', page)
    return html.unescape(match.group(1)) if match else None


@dataclass
class Setup:
    """An organization ready for channel codes."""

    tenant: object
    account_id: int
    pool_id: int
    tag_ids: list[int]


def setup_org(db: Session, tenant: object) -> Setup:
    """An account (the operator's) in a pool called 抖音池, and a tag group 来源 with two tags."""
    org_id = tenant.org_id  # type: ignore[attr-defined]
    account = accounts.create_account(
        db,
        org_id,
        AccountIn(kind=AccountKind.wecom_member, external_id="zhangsan", name="张三的企微"),
    )
    pool = channels.create_pool(db, org_id, PoolIn(name="抖音池", members=[MemberIn(account_id=account.id)]))
    _g, tags = tagging.create_tag_group(db, org_id, TagGroupIn(name="来源", tags=["抖音粉", "包裹卡"]))
    db.commit()
    return Setup(tenant, account.id, pool.id, [t.id for t in tags])


@contextmanager
def chinese_console(live_server: str, email: str) -> Iterator[Any]:
    """A Chromium page logged into the console in zh_CN; fails the test on any page script error."""
    from playwright.sync_api import sync_playwright

    from .conftest import CHROMIUM, CHROMIUM_ARGS

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                locale="zh-CN", viewport={"width": 1440, "height": 900}, accept_downloads=True
            )
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(15_000)
            page.goto(f"{live_server}/login?next=/settings")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server}/settings/**")
            yield page
        finally:
            browser.close()
    assert errors == []
