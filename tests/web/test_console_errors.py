"""Errors on Chinese pages are Chinese sentences: form validation, domain errors, WeCom errcodes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.kit.errors import Conflict, Invalid
from siyu.web import i18n
from siyu.web.errors import error_text, wecom_error_text
from siyu.web.templating import PageContext

from .test_console import hidden_csrf


def _ctx(locale: str) -> PageContext:
    return PageContext(request=None, locale=locale, translations=i18n.translations_for(locale))  # type: ignore[arg-type]


def test_wecom_and_domain_errors_in_chinese() -> None:
    zh = _ctx("zh_CN")
    assert (
        wecom_error_text(zh, WeComError(40003, "invalid userid", api="x"))
        == "该成员不在（或已不在）本企业微信企业中。"
    )
    assert wecom_error_text(zh, WeComError(99999, "new", api="x")) == "企业微信拒绝了该请求（错误码 99999）。"
    assert wecom_error_text(zh, WeComError(None, "timeout")) == "无法连接企业微信，请稍后重试。"
    assert "客户" in wecom_error_text(zh, WeComInputError("customer_ids", "at most 10,000"))
    assert (
        error_text(zh, Conflict("lead 3 is already replied", field="lead_id")) == "这条线索已被回复或忽略。"
    )
    assert error_text(zh, Invalid("something new", field="nobody")) == "未能保存，请检查填写的内容。"
    # English readers get the service's own sentence.
    assert error_text(_ctx("en"), Invalid("something new", field="nobody")) == "something new"


def test_mass_message_ids_that_are_not_numbers_get_a_chinese_error(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    form = client.get("/login")
    client.post(
        "/login",
        data={
            "email": f"admin@{tenant.slug}.test",
            "password": "password123",
            "csrf_token": hidden_csrf(form.text),
        },
    )
    client.cookies.set("lang", "zh_CN")
    page = client.get("/wecom/mass-messages")
    answer = client.post(
        "/wecom/mass-messages/customers",
        data={"text": "你好", "customer_ids": "12, abc", "csrf_token": hidden_csrf(page.text)},
    )
    assert answer.status_code == 422
    assert "客户 ID 须为整数，用逗号或空格分隔。" in answer.text and "customer_ids:" not in answer.text
