"""The Chinese console shows no English words and no raw identifiers: Chromium walks every console page
(and a customer, the lead inbox in each tab) of a small demo brand in zh_CN and reads what a person sees,
the charts' legends, axes and titles included.

Allowed: brand and product names, model and metric acronyms, the language switcher's "English", and what
the page marks as an identifier shown as such (``class="ident"``: WeCom user ids, open ids, URLs)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from siyu.accounts.models import Account, AccountKind
from siyu.campaigns import group_messages
from siyu.campaigns.sending import Outcome, record_outcomes
from siyu.customers.models import CustomerIdentity, IdentityKind
from siyu.groups import service as groups
from siyu.integrations.channel import GroupChat
from siyu.integrations.channel import GroupMember as ChatMember
from siyu.kit.db import make_sessionmaker, transaction

from .conftest import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, SCREENSHOT_DIR
from .demo_console import DemoConsole, build_demo_console

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

ALLOWED = {
    "siyu",  # the product
    "English",  # the language switcher names each language in itself
    # Terms Chinese operations teams use as they are.
    *(
        "CSV",
        "JSON",
        "AgentId",
        "PNG",
        "SVG",
        "ROI",
        "GMV",
        "GPM",
        "RFM",
        "CLV",
        "ID",
        "API",
        "SLA",
        "SOP",
        "H5",
        "QR",
    ),
    *("Token", "EncodingAESKey", "Secret", "Open", "UnionID", "OpenID", "CorpID"),  # WeCom's own field names
    *("BG", "NBD", "Gamma"),  # the CLV models' names
}
# One ASCII word: letters, with underscores or digits inside (so dy_comment and lead_converted are caught).
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Identifiers inside running text: links (a reply carries its code's URL) and a reply template's placeholders.
IDENTIFIERS_IN_TEXT = re.compile(r"https?://\S+|\{(?:code|name)\}")

# What a person reads: the page without scripts, styles and the identifiers it shows as identifiers, plus
# the strings ECharts draws on its canvas (series, legend, axes, title).
VISIBLE_TEXT = """
() => {
  const body = document.body.cloneNode(true);
  // A datalist's options are input suggestions whose value is the stored code (the ROI cost form's channel).
  body.querySelectorAll('script, style, template, datalist, .ident').forEach((el) => el.remove());
  const texts = [body.innerText];
  document.querySelectorAll('input[placeholder], textarea[placeholder]').forEach((el) => texts.push(el.placeholder));
  document.querySelectorAll('select option').forEach((el) => texts.push(el.textContent));
  document.querySelectorAll('[aria-label]').forEach((el) => texts.push(el.getAttribute('aria-label')));
  if (typeof echarts !== 'undefined') {
    document.querySelectorAll('[_echarts_instance_]').forEach((el) => {
      const option = echarts.getInstanceByDom(el).getOption();
      (option.series || []).forEach((s) => texts.push(s.name || ''));
      (option.legend || []).forEach((l) => (l.data || []).forEach((d) => texts.push(typeof d === 'string' ? d : d.name || '')));
      [...(option.xAxis || []), ...(option.yAxis || [])].forEach((a) => {
        texts.push(a.name || '');
        if (a.type === 'category') (a.data || []).forEach((d) => texts.push(String(typeof d === 'object' ? d.value : d)));
      });
      (option.title || []).forEach((t) => texts.push(t.text || ''));
    });
  }
  return texts.join('\\n');
}
"""


def english_words(text: str) -> dict[str, str]:
    """The ASCII words of a page's text outside the allow-list, each with the line it was found on."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        for word in WORD.findall(IDENTIFIERS_IN_TEXT.sub(" ", line)):
            if word in ALLOWED or len(word) == 1:  # single letters: "N 天", a customer grade "A"
                continue
            found.setdefault(word, line.strip()[:120])
    return found


def test_english_words_are_found_and_allowed_terms_are_not() -> None:
    assert english_words("原因：rule: lead_replied\n导出 CSV · 渠道 ROI · N 天") == {
        "rule": "原因：rule: lead_replied",
        "lead_replied": "原因：rule: lead_replied",
    }
    assert set(english_words("金额 amount_fen：¥89.80")) == {"amount_fen"}
    assert english_words("添加顾问领取：https://c.example/add/x1 {code} {name}") == {}


@pytest.fixture
def demo(engine: Engine) -> DemoConsole:
    """The demo brand with Douyin leads: replied and converted, and waiting."""
    return build_demo_console(engine)


def _group_member(engine: Engine, org_id: int) -> int:
    """A WeCom customer of the brand who joined a customer group, got a mass message there and left (as the
    sync finds it): the timeline events that name a group. Returns the customer's id."""
    now = datetime.now(UTC)
    with transaction(make_sessionmaker(engine)) as db:
        cid, eid = db.execute(
            select(CustomerIdentity.customer_id, CustomerIdentity.value)
            .where(
                CustomerIdentity.org_id == org_id,
                CustomerIdentity.kind == IdentityKind.wecom_external_userid,
            )
            .order_by(CustomerIdentity.id)
            .limit(1)
        ).one()
        owner = db.scalars(
            select(Account).where(Account.org_id == org_id, Account.kind == AccountKind.wecom_member).limit(1)
        ).one()

        def chat(*userids: str, at: datetime) -> GroupChat:
            members = [
                ChatMember(userid=u, type=2 if u == eid else 1, join_time=at, join_scene=3) for u in userids
            ]
            return GroupChat(
                chat_id="wrwalk0001",
                name="老客福利群",
                owner=owner.external_id,
                created_at=at,
                notice="",
                members=members,
                admins=[],
                member_version=str(len(userids)),
            )

        group = groups.upsert_group(db, org_id, chat(owner.external_id, eid, at=now - timedelta(hours=3)))
        msg = group_messages.create_group_message(db, org_id, text="周末福利", group_ids=[group.id])
        record_outcomes(
            db,
            org_id,
            msg.id,
            [Outcome(cid, owner.id, True, "", now - timedelta(hours=2), group.chat_id, group_id=group.id)],
        )
        groups.upsert_group(db, org_id, chat(owner.external_id, at=now - timedelta(hours=3)), at=now)
    return int(cid)


def test_every_console_page_in_chinese_shows_no_english(
    live_server: str, demo: DemoConsole, engine: Engine
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the pages render the same text on either database; one browser run is enough")
    from playwright.sync_api import expect, sync_playwright

    some_customer = demo.converted_customer_id - 7  # a customer of the simulated brand, with its history
    in_a_group = _group_member(engine, demo.summary.org_id)
    pages = [
        "/",
        "/customers",
        f"/customers/{demo.converted_customer_id}",
        f"/customers/{some_customer}",
        f"/customers/{in_a_group}",
        "/accounts",
        "/channels",
        "/leads",
        "/leads?status=replied",
        "/leads?status=all",
        "/analytics/funnel",
        "/analytics/funnel?breakdown=source",
        "/analytics/retention",
        "/analytics/repurchase",
        "/analytics/rfm",
        "/analytics/clv",
        "/analytics/roi",
        "/wecom/settings",
        "/wecom/departure",
        "/wecom/mass-messages",
    ]
    leaks: dict[str, dict[str, str]] = {}
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(locale="zh-CN", viewport={"width": 1440, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(20_000)
            page.goto(f"{live_server}/login")
            page.fill("input[name=email]", demo.summary.admin.email)
            page.fill("input[name=password]", demo.summary.admin.password)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("概览")
            for path in pages:
                page.goto(f"{live_server}{path}")
                page.wait_for_load_state("networkidle")
                if path.startswith("/leads"):
                    expect(page.locator("#lead-inbox [data-open-count]")).to_be_attached()
                if page.locator(".chart").count():
                    expect(page.locator(".chart[data-rendered=true]").first).to_be_attached()
                found = english_words(page.evaluate(VISIBLE_TEXT))
                if found:
                    leaks[path] = found
                if SCREENSHOT_DIR:
                    name = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "dashboard"
                    page.screenshot(path=os.path.join(SCREENSHOT_DIR, f"zh-{name}.png"), full_page=True)
            # The group events name their group in words.
            page.goto(f"{live_server}/customers/{in_a_group}")
            timeline = page.locator("#timeline")
            expect(timeline).to_contain_text("经客户群「老客福利群」")
            expect(timeline).to_contain_text("客户群「老客福利群」")
            expect(timeline).to_contain_text("同步时发现已不在群中")
            # The departure page of a member, with what they hold.
            page.goto(f"{live_server}/wecom/departure")
            member = page.locator("select[name=account_id] option").nth(1).get_attribute("value")
            page.goto(f"{live_server}/wecom/departure?account_id={member}")
            expect(page.locator("select[name=to_account_id]")).to_be_attached()
            found = english_words(page.evaluate(VISIBLE_TEXT))
            if found:
                leaks["/wecom/departure?account_id=…"] = found
            # The "also hand over their groups" checkbox sits on the line of its words, not above them.
            label = page.locator("label:has(input[name=groups])").bounding_box()
            box = page.locator("input[name=groups]").bounding_box()
            assert label is not None and box is not None
            assert label["height"] < 2 * box["height"] + 8, label
            # The remark field shows a whole 20-character remark.
            page.goto(f"{live_server}/customers/{demo.converted_customer_id}")
            remark = page.locator("input[name=remark]")
            width = remark.bounding_box()
            font = float(remark.evaluate("el => parseFloat(getComputedStyle(el).fontSize)"))
            assert width is not None and width["width"] >= 20 * font, (width, font)
        finally:
            browser.close()
    assert not errors, errors
    assert not leaks, "\n".join(f"{path}: {words}" for path, words in leaks.items())
