"""The chat sidebar on the demo brand, in Chromium at phone width: WeCom's OAuth2 and JS-SDK played by the fake
WeCom server (its authorize stand-in, getuserinfo, ticket/get and a stand-in `wx` object)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine, select

from siyu.accounts.models import Account, AccountKind
from siyu.customers.models import Customer, CustomerIdentity, FollowRelation, FollowStatus, IdentityKind, Note
from siyu.demo import generate_world
from siyu.demo.fakes import running_fakes
from siyu.demo.loader import load_world
from siyu.events.models import Event
from siyu.groups.models import CustomerGroup
from siyu.kit.db import make_sessionmaker
from siyu.tenancy.models import User

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, SCREENSHOT_DIR

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

SLUG = "sidebar-demo"


@dataclass
class Chat:
    """A member signed in to the fake WeCom client, a customer they follow and one of their groups."""

    fake_url: str
    userid: str
    operator_email: str
    customer_id: int
    customer_name: str
    external_userid: str
    chat_id: str
    group_name: str


@pytest.fixture
def demo_chat(engine: Engine, live_server: str) -> Iterator[Chat]:
    summary = load_world(engine, generate_world(customers=400, days=30, seed=3), org_slug=SLUG)
    with running_fakes(
        engine, summary.org_id, SLUG, "test-secret-key", live_server, wecom_port=0, douyin_port=0
    ) as fakes:
        with make_sessionmaker(engine)() as db:
            group = db.scalars(
                select(CustomerGroup).where(CustomerGroup.org_id == summary.org_id).order_by(CustomerGroup.id)
            ).first()
            assert group is not None and group.owner_account_id is not None
            account = db.get(Account, group.owner_account_id)
            assert account is not None and account.kind == AccountKind.wecom_member and account.operator_id
            user = db.get(User, account.operator_id)
            assert user is not None
            customer_id, name, external = db.execute(
                select(Customer.id, Customer.name, CustomerIdentity.value)
                .join(CustomerIdentity, CustomerIdentity.customer_id == Customer.id)
                .join(FollowRelation, FollowRelation.customer_id == Customer.id)
                .where(
                    FollowRelation.account_id == account.id,
                    FollowRelation.status == FollowStatus.active,
                    CustomerIdentity.kind == IdentityKind.wecom_external_userid,
                )
                .order_by(Customer.id)
                .limit(1)
            ).one()
        yield Chat(
            fake_url=fakes.wecom.base_url,
            userid=account.external_id,
            operator_email=user.email,
            customer_id=customer_id,
            customer_name=name,
            external_userid=external,
            chat_id=group.chat_id,
            group_name=group.name,
        )


def _open_chat(chat: Chat, **which: str) -> None:
    res = httpx.post(f"{chat.fake_url}/_control/client", json={"userid": chat.userid, **which})
    assert res.status_code == 200, res.text


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if SCREENSHOT_DIR:
        page.screenshot(path=f"{SCREENSHOT_DIR}/{name}.png", full_page=True)


def test_the_sidebar_shows_the_chat_s_customer_and_a_note_added_there_reaches_the_console(
    live_server: str, demo_chat: Chat, engine: Engine
) -> None:
    from playwright.sync_api import expect, sync_playwright

    chat = demo_chat
    _open_chat(chat, external_userid=chat.external_userid)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(locale="zh-CN", viewport={"width": 390, "height": 844})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(30_000)

            # WeCom opens the sidebar: OAuth2 through the fake, then the JS-SDK stand-in names the chat.
            page.goto(f"{live_server}/sidebar/{SLUG}/")
            card = page.locator(f"article[data-customer-id='{chat.customer_id}']")
            expect(card).to_be_visible(timeout=30_000)
            expect(card.locator("h1")).to_contain_text(chat.customer_name)
            expect(card.locator("[data-field=last-contact]")).to_contain_text("跟进")
            _shot(page, "sidebar-contact")

            # A note added in the sidebar goes through the console's route (customers/ writes it).
            page.fill("#notes textarea[name=body]", "侧边栏记录：想要祛痘套装，周五回访")
            page.click("#notes button[type=submit]")
            expect(page.locator("#notes .notes li").first).to_contain_text("周五回访")

            # A tag ticked in the sidebar.
            page.click("#tags [data-action=edit-tags]")
            first_tag = page.locator("#tags input[name=tag_id]:not(:checked)").first
            tag_id = int(first_tag.get_attribute("value") or 0)
            first_tag.check()
            page.click("#tags [data-action=save-tags]")
            expect(page.locator(f"#tags .tag[data-tag-id='{tag_id}']")).to_be_visible()

            # A suggested reply goes into the chat through sendChatMessage.
            script = page.locator("[data-action=send-script]").first
            text = script.get_attribute("data-text")
            script.click()
            expect(page.locator("#sidebar-status")).to_contain_text("聊天")
            sent = httpx.get(f"{chat.fake_url}/_control/chat_messages").json()["messages"]
            assert sent[-1]["text"] == {"content": text}
            assert sent[-1]["external_userid"] == chat.external_userid

            # The operator's console shows the note on the customer page.
            page.goto(f"{live_server}/customers/{chat.customer_id}")
            expect(page.locator("#notes .notes li").first).to_contain_text("周五回访")

            # The same sidebar in a group chat shows the group.
            _open_chat(chat, chat_id=chat.chat_id)
            page.goto(f"{live_server}/sidebar/{SLUG}/")
            group = page.locator(f"article[data-group-chat='{chat.chat_id}']")
            expect(group).to_be_visible()
            expect(group.locator("h1")).to_contain_text(chat.group_name)
            expect(group.locator(".sidebar-members li").first).to_be_visible()
            _shot(page, "sidebar-group")
        finally:
            browser.close()
    assert errors == []
    with make_sessionmaker(engine)() as db:
        note = db.scalars(select(Note).where(Note.customer_id == chat.customer_id)).one()
        assert "周五回访" in note.body
        kinds = set(db.scalars(select(Event.type).where(Event.customer_id == chat.customer_id)))
        assert {"note_added", "tag_added"} <= kinds


def test_a_member_nobody_runs_in_siyu_is_told_so(live_server: str, demo_chat: Chat, engine: Engine) -> None:
    from playwright.sync_api import expect, sync_playwright

    with make_sessionmaker(engine)() as db:
        stray = db.scalars(select(Account).where(Account.external_id == demo_chat.userid)).one()
        stray.operator_id = None
        db.commit()
    _open_chat(demo_chat, external_userid=demo_chat.external_userid)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(locale="zh-CN", viewport={"width": 390, "height": 844})
            page.goto(f"{live_server}/sidebar/{SLUG}/")
            expect(page.locator("[data-problem]")).to_contain_text("分配")
        finally:
            browser.close()
