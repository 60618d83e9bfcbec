"""The remark convention Name+Source+Intent+Mobile, fitted to WeCom's 20-character limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from siyu.customers.remarks import WECOM_REMARK_MAX, compose_remark, masked_remark


def test_short_remark_keeps_every_part() -> None:
    assert compose_remark("王芳", "抖音", "问价", "13812345678") == "王芳+抖音+问价+13812345678"
    assert compose_remark("王芳", "抖音评论", "求资料", None) == "王芳+抖音评论+求资料"


def test_empty_parts_are_skipped() -> None:
    assert compose_remark("张三", None, "", None) == "张三"
    assert compose_remark("", "jd", None, "13812345678") == "京东+13812345678"
    assert compose_remark(None, None, None, None) == ""


def test_long_remark_is_cut_to_wecom_limit_keeping_the_mobile() -> None:
    remark = compose_remark("王芳", "抖音评论", "求资料", "13812345678")
    assert len(remark) == WECOM_REMARK_MAX == 20
    assert remark.endswith("+13812345678")
    assert remark.startswith("王芳+")
    # The longest part loses characters first.
    assert remark == "王芳+抖音+求资+13812345678"


def test_known_source_codes_read_as_words() -> None:
    assert compose_remark("李雷", "douyin_comment", None, None) == "李雷+抖音评论"
    assert compose_remark("李雷", "custom-code", None, None) == "李雷+custom-code"


@given(
    name=st.text(max_size=30),
    source=st.text(max_size=30),
    intent=st.text(max_size=30),
    mobile=st.sampled_from([None, "13812345678", "19900001111"]),
)
def test_remark_never_exceeds_limit_and_keeps_mobile(
    name: str, source: str, intent: str, mobile: str | None
) -> None:
    remark = compose_remark(name, source, intent, mobile)
    assert len(remark) <= WECOM_REMARK_MAX
    if mobile:
        assert remark.endswith(mobile)


def test_masked_remark_hides_every_mobile() -> None:
    assert masked_remark("王芳+抖音+13812345678") == "王芳+抖音+138****5678"
    assert (
        masked_remark("订单号 1381234567890") == "订单号 1381234567890"
    )  # longer digit runs are not mobiles
