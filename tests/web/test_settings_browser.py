"""Setting a team up in the Chinese console only, in Debian's Chromium: each task through the UI, a refused
form showing its error in red beside the field with what was typed kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.channels.models import ChannelCode, RoutingPool
from siyu.customers.models import Customer, Tag, TagGroup
from siyu.kit.db import make_sessionmaker
from siyu.leads import service as leads
from siyu.tenancy.models import Role, User

from .conftest import BROWSER_MARKS
from .settings_fixtures import Setup, chinese_console, setup_org

pytestmark = BROWSER_MARKS


@pytest.fixture
def org(db: Session, tenant) -> Setup:  # type: ignore[no-untyped-def]
    return setup_org(db, tenant)


def _admin(org: Setup) -> str:
    return f"admin@{org.tenant.slug}.test"  # type: ignore[attr-defined]


def test_create_a_channel_code_with_welcome_text_and_tags_then_print_its_qr(
    live_server: str, org: Setup, engine: Engine
) -> None:
    from playwright.sync_api import expect

    with chinese_console(live_server, _admin(org)) as page:
        page.click("nav.mainnav >> text=设置")
        page.click(".settings-nav >> text=渠道活码")
        page.click("#new-code")
        form = page.locator("#code-form")
        form.locator("input[name=name]").fill("抖音 12 号视频")
        form.locator("input[name=state]").fill("抖音12")  # not letters and digits: refused
        form.locator("select[name=channel]").select_option("douyin")
        form.locator("select[name=pool_id]").select_option(label="抖音池")
        form.locator("input[name=cost]").fill("300")
        page.check("#tag-picker >> text=抖音粉")
        form.locator("textarea[name=welcome_message]").fill("你好！回复 1 领取资料")
        form.locator("button[type=submit]").click()

        error = page.locator("[data-error-for=state]")
        expect(error).to_have_text("只能使用字母、数字、_ - 和 .（最多 30 个字符）。")
        assert error.evaluate("e => getComputedStyle(e).color") == "rgb(209, 59, 59)"
        expect(form.locator("input[name=name]")).to_have_value("抖音 12 号视频")
        expect(form.locator("textarea[name=welcome_message]")).to_have_value("你好！回复 1 领取资料")
        expect(page.locator("#tag-picker input[type=checkbox]:checked")).to_have_count(1)

        form.locator("input[name=state]").fill("dy-video-12")
        form.locator("button[type=submit]").click()
        expect(page.locator("[role=status]")).to_contain_text("渠道活码已创建")
        image = page.locator("#qr-image")
        expect(image).to_be_visible()
        page.wait_for_function("document.getElementById('qr-image').naturalWidth > 0")
        with page.expect_download() as download:
            page.click("#download-png")
        assert download.value.suggested_filename == "channel-code-dy-video-12.png"
        with open(download.value.path(), "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

        page.click("text=全部渠道活码")
        row = page.locator("#codes tr", has_text="抖音 12 号视频")
        expect(row).to_contain_text("抖音粉")
        expect(row).to_contain_text("¥300.00")
        row.locator("text=编辑").click()
        page.fill("textarea[name=welcome_message]", "欢迎！资料稍后发你")
        page.click("#code-form button[type=submit]")
        expect(page.locator("[role=status]")).to_have_text("已保存。")
    with make_sessionmaker(engine)() as check:
        code = check.scalars(select(ChannelCode)).one()
        assert (code.state, code.channel, code.cost_fen) == ("dy-video-12", "douyin", 30000)
        assert code.welcome_message == "欢迎！资料稍后发你" and code.tag_ids == [org.tag_ids[0]]


def test_add_an_operator_change_a_role_deactivate_and_manage_a_token(
    live_server: str, org: Setup, engine: Engine
) -> None:
    from playwright.sync_api import expect

    with chinese_console(live_server, _admin(org)) as page:
        page.click(".settings-nav >> text=成员与角色")
        form = page.locator("#user-form")
        form.locator("input[name=name]").fill("小李")
        form.locator("input[name=email]").fill("xiaoli@brand.test")
        form.locator("input[name=password]").fill("1234")
        form.locator("button[type=submit]").click()
        expect(page.locator("[data-error-for=password]")).to_have_text("至少 8 个字符。")
        expect(form.locator("input[name=email]")).to_have_value("xiaoli@brand.test")
        form.locator("input[name=password]").fill("xiaoli-2026")
        form.locator("button[type=submit]").click()
        expect(page.locator("[role=status]")).to_have_text("已添加 小李，现在可以登录了。")

        row = page.locator("#users tr[data-email='xiaoli@brand.test']")
        expect(row).to_contain_text("运营")
        row.locator("select[name=role]").select_option("admin")
        row.locator("text=修改角色").click()
        expect(page.locator("[role=status]")).to_have_text("已保存。")
        row = page.locator("#users tr[data-email='xiaoli@brand.test']")
        expect(row.locator("select[name=role]")).to_have_value("admin")
        row.locator("button", has_text="停用").click()
        expect(page.locator("#users tr[data-email='xiaoli@brand.test'] .badge")).to_have_text("已停用")

        page.click(".settings-nav >> text=API 令牌")
        page.fill("#token-form input[name=name]", "ERP 同步")
        page.click("#token-form button[type=submit]")
        expect(page.locator("#issued-token")).to_contain_text("只显示这一次")
        assert page.locator("#token-value").inner_text().startswith("siyu_")
        page.locator("#tokens tr", has_text="ERP 同步").locator("text=吊销").click()
        expect(page.locator("#tokens tr", has_text="ERP 同步")).to_contain_text("已吊销")
    with make_sessionmaker(engine)() as check:
        user = check.scalars(select(User).where(User.email == "xiaoli@brand.test")).one()
        assert user.role == Role.admin and user.is_active is False


def test_set_up_tags_and_a_reply_template(live_server: str, org: Setup, engine: Engine) -> None:
    from playwright.sync_api import expect

    with chinese_console(live_server, _admin(org)) as page:
        page.on("dialog", lambda dialog: dialog.accept())
        page.click(".settings-nav >> text=标签")
        page.fill("#group-form input[name=name]", "痛点")
        page.fill("#group-form textarea[name=tags]", "痘痘\n敏感肌\n敏感肌")
        page.click("#group-form button[type=submit]")
        expect(page.locator("#group-form [data-error-for=tags]")).to_have_text(
            "标签名称须为 1 到 60 个字符，且不能重复。"
        )
        expect(page.locator("#group-form textarea[name=tags]")).to_have_value("痘痘\n敏感肌\n敏感肌")
        page.fill("#group-form textarea[name=tags]", "痘痘\n敏感肌\n干皮")
        page.click("#group-form button[type=submit]")
        group = page.locator("section[data-group-name='痛点']")
        expect(group.locator(".tag")).to_have_text(["痘痘", "敏感肌", "干皮"])

        group.locator(".add-tag input[name=name]").fill("黑头")
        group.locator(".add-tag button").click()
        group = page.locator("section[data-group-name='痛点']")
        expect(group.locator(".tag")).to_have_text(["痘痘", "敏感肌", "干皮", "黑头"])
        group.locator("summary").click()
        row = group.locator(".tag-row", has=page.locator("input[value='干皮']"))
        row.locator("input[name=name]").fill("干性皮肤")
        row.locator("button", has_text="改名").click()
        group = page.locator("section[data-group-name='痛点']")
        expect(group.locator(".tag")).to_have_text(["痘痘", "敏感肌", "干性皮肤", "黑头"])
        group.locator("summary").click()
        group.locator(".tag-row", has=page.locator("input[value='黑头']")).locator(
            "button", has_text="删除"
        ).click()
        expect(page.locator("section[data-group-name='痛点'] .tag")).to_have_count(3)

        page.click(".settings-nav >> text=线索回复模板")
        purchase = page.locator("section[data-intent=purchase]")
        purchase.locator("textarea").fill("{name}你好，点 {link} 下单")
        purchase.locator("button").click()
        purchase = page.locator("section[data-intent=purchase]")
        expect(purchase.locator(".field-error")).to_contain_text("{code}")
        expect(purchase.locator("textarea")).to_have_value("{name}你好，点 {link} 下单")
        purchase.locator("textarea").fill("{name}你好，点 {code} 下单")
        purchase.locator("button").click()
        expect(page.locator("[role=status]")).to_have_text("已保存：购买意向。")
    with make_sessionmaker(engine)() as check:
        names = check.scalars(
            select(Tag.name).join(TagGroup).where(TagGroup.name == "痛点").order_by(Tag.id)
        ).all()
        assert names == ["痘痘", "敏感肌", "干性皮肤"]
        assert leads.reply_templates(check, org.tenant.org_id)["purchase"] == "{name}你好，点 {code} 下单"  # type: ignore[attr-defined]


def test_assign_an_operator_set_caps_and_build_a_pool(live_server: str, org: Setup, engine: Engine) -> None:
    from playwright.sync_api import expect

    with chinese_console(live_server, _admin(org)) as page:
        page.click(".settings-nav >> text=账号与上限")
        page.locator("#accounts tr[data-account-name='张三的企微']").locator("text=编辑").click()
        form = page.locator("#account-form")
        form.locator("select[name=operator_id]").select_option(label="operator of brand-1 · 运营人员")
        form.locator("input[name=soft_cap]").fill("3000")
        form.locator("input[name=hard_cap]").fill("2500")
        form.locator("button[type=submit]").click()
        expect(page.locator("[data-error-for=soft_cap]")).to_have_text("软上限不能高于硬上限。")
        expect(form.locator("input[name=soft_cap]")).to_have_value("3000")
        expect(form.locator("select[name=operator_id]")).to_have_value(str(org.tenant.operator_id))  # type: ignore[attr-defined]
        form.locator("input[name=soft_cap]").fill("2000")
        form.locator("button[type=submit]").click()
        row = page.locator("#accounts tr[data-account-name='张三的企微']")
        expect(row).to_contain_text("operator of brand-1")
        expect(row).to_contain_text("2,000")

        page.click("#new-account")
        form = page.locator("#account-form")
        form.locator("select[name=kind]").select_option("personal_wechat")
        form.locator("input[name=external_id]").fill("wx-live-2")
        form.locator("input[name=name]").fill("直播备用号")
        form.locator("button[type=submit]").click()
        expect(page.locator("#accounts tr[data-account-name='直播备用号']")).to_contain_text("个人微信")

        page.click(".settings-nav >> text=分流池")
        page.click("#new-pool")
        form = page.locator("#pool-form")
        form.locator("input[name=name]").fill("直播池")
        form.locator("select[name=rule]").select_option(label="轮流分配")
        form.locator("input[name=warmup]").fill("10, 二十")
        form.locator("tr[data-account-name='张三的企微'] input[name=members]").check()
        form.locator("tr[data-account-name='直播备用号'] input[name=members]").check()
        form.locator("tr[data-account-name='直播备用号'] input[name=backups]").check()
        form.locator("button[type=submit]").click()
        expect(page.locator("[data-error-for=warmup]")).to_contain_text("20, 40, 80")
        expect(form.locator("tr[data-account-name='直播备用号'] input[name=backups]")).to_be_checked()
        form.locator("input[name=warmup]").fill("10, 20")
        form.locator("button[type=submit]").click()
        row = page.locator("#pools tr", has_text="直播池")
        expect(row).to_contain_text("轮流分配")
        expect(row.locator("td").nth(4)).to_have_text("张三的企微")
        expect(row.locator("td").nth(5)).to_have_text("直播备用号")
    with make_sessionmaker(engine)() as check:
        account = check.get(Account, org.account_id)
        assert account is not None and (account.operator_id, account.soft_cap, account.hard_cap) == (
            org.tenant.operator_id,  # type: ignore[attr-defined]
            2000,
            2500,
        )
        pool = check.scalars(select(RoutingPool).where(RoutingPool.name == "直播池")).one()
        assert pool.warmup == [10, 20]


def test_create_edit_import_and_merge_customers(
    live_server: str, org: Setup, engine: Engine, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    csv_file = tmp_path / "客户.csv"
    csv_file.write_bytes("姓名,手机号,标签\n李娜,13800001111,意向:高\n错号,123,\n".encode("gbk"))
    with chinese_console(live_server, _admin(org)) as page:
        page.on("dialog", lambda dialog: dialog.accept())
        page.click(".settings-nav >> text=新建客户")
        form = page.locator("#customer-form")
        form.locator("input[name=name]").fill("李娜")
        form.locator("input[name=mobile]").fill("1380000")
        form.locator("select[name=source]").select_option("douyin_comment")
        form.locator("button[type=submit]").click()
        expect(page.locator("[data-error-for=mobile]")).to_have_text(
            "请填写 11 位大陆手机号，例如 138 1234 5678。"
        )
        expect(form.locator("select[name=source]")).to_have_value("douyin_comment")
        form.locator("input[name=mobile]").fill("")
        form.locator("input[name=region]").fill("成都")
        form.locator("button[type=submit]").click()
        expect(page.locator("h1")).to_contain_text("李娜")

        page.click("#edit-profile")
        page.fill("#profile-form input[name=intent]", "敏感肌修护")
        page.click("#profile-form button[type=submit]")
        expect(page.locator("dl.props")).to_contain_text("敏感肌修护")

        page.goto(f"{live_server}/settings/customers/import")
        page.set_input_files("#import-form input[name=file]", str(csv_file))
        page.click("#import-form button[type=submit]")
        expect(page.locator("#row-errors tr[data-row='3']")).to_contain_text("不是 11 位大陆手机号。")
        expect(page.locator("[data-figure=created] .kpi-value")).to_have_text("1")

        page.click(".settings-nav >> text=合并重复客户")
        page.fill("#merge-search input[name=q]", "李娜")
        page.click("#merge-search button")
        rows = page.locator("#merge-found tbody tr")
        expect(rows).to_have_count(2)
        rows.filter(has_text="13800001111").locator("text=保留这个").click()
        page.locator("#merge-found tbody tr").filter(has_not_text="13800001111").locator(
            "text=合并掉这个"
        ).click()
        expect(page.locator("#kept-name")).to_contain_text("13800001111")
        page.fill("#merge-form input[name=reason]", "同一个人，导入前手动建过")
        page.click("#merge-form button[type=submit]")
        expect(page.locator("#merge-done")).to_contain_text("已合并到客户")
    with make_sessionmaker(engine)() as check:
        kept = check.scalars(select(Customer).where(Customer.mobile == "13800001111")).one()
        assert kept.region == "成都" and kept.intent == "敏感肌修护" and kept.merged_into_id is None
        assert (
            check.scalar(select(func.count()).select_from(Customer).where(Customer.merged_into_id == kept.id))
            == 1
        )


def test_connect_douyin(live_server: str, org: Setup, engine: Engine) -> None:
    from playwright.sync_api import expect

    with chinese_console(live_server, _admin(org)) as page:
        page.click(".settings-nav >> text=抖音对接")
        expect(page.locator("#webhook-url")).to_have_text(f"{live_server}/hooks/douyin/{org.tenant.slug}")  # type: ignore[attr-defined]
        form = page.locator("#douyin-form")
        form.locator("input[name=client_key]").fill("awbrandkey")
        form.locator("input[name=account_open_id]").fill("_000brand")
        form.locator("input[name=access_token]").fill("act.brand")
        form.locator("button[type=submit]").click()
        expect(page.locator("[data-error-for=client_secret]")).to_have_text(
            "请填写：抖音用它给每个 Webhook 请求签名。"
        )
        expect(form.locator("input[name=client_key]")).to_have_value("awbrandkey")
        form.locator("input[name=client_secret]").fill("brand-secret")
        form.locator("input[name=access_token]").fill("act.brand")
        form.locator("button[type=submit]").click()
        expect(page.locator("[role=status]")).to_have_text("已保存。")
        expect(page.locator("#douyin-status")).to_contain_text("已对接")
        expect(form.locator("input[name=client_secret]")).to_have_attribute("placeholder", "已保存")
    with make_sessionmaker(engine)() as check:
        app = leads.douyin_app(check, org.tenant.org_id)  # type: ignore[attr-defined]
        assert app is not None and app.client_key == "awbrandkey" and app.account_open_id == "_000brand"
