"""The field's remark convention "Name+Source+Intent+Mobile", fitted to WeCom's remark limit.

WeCom's ``externalcontact/remark`` API accepts a remark of at most 20 characters ("此用户对外部联系人的
备注,最多20个字符", developer.work.weixin.qq.com/document/path/96317), so a composed remark is
shortened to fit: the mobile number stays whole (it is what operators search the contact list by),
and the longest of name/source/intent loses a character at a time until the remark fits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from siyu.kit.errors import Invalid
from siyu.kit.phone import mask_mobile

# A mobile inside free text: 11 digits starting 13-19, not part of a longer digit run.
_MOBILE_IN_TEXT = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
# A mobile as an operator sees it (138****1234), not part of a longer run.
_MASKED_IN_TEXT = re.compile(r"(?<![\d*])1[3-9]\d\*{4}\d{4}(?![\d*])")

WECOM_REMARK_MAX = 20
SEPARATOR = "+"

# Every source code the product writes (channel codes' channels, importers, the Douyin lead path, the
# demo brand) with the words operators use in remarks; an unknown code passes through as it is.
SOURCE_LABELS: dict[str, str] = {
    "douyin": "抖音",
    "douyin_comment": "抖音评论",
    "douyin_live": "抖音直播",
    "kuaishou": "快手",
    "xiaohongshu": "小红书",
    "taobao": "淘宝",
    "taobao_order": "淘宝订单",
    "taobao_parcel": "淘宝包裹卡",
    "taobao_parcel_card": "淘宝包裹卡",
    "parcel_card": "包裹卡",
    "jd": "京东",
    "jd_order": "京东订单",
    "live": "直播",
    "live_room": "直播间",
    "offline": "线下",
    "offline_flyer": "线下传单",
    "flyer": "传单",
    "store": "门店",
    "campaign": "活动",
    "referral": "转介绍",
    "fission": "裂变",
    "zhihu": "知乎",
    "wecom": "企微",
    "channel_code": "渠道活码",
    "official_account": "公众号",
    "outbound_call": "外呼",
    "comment": "评论",
    "manual": "手动录入",
    "import": "导入",
    "sandbox": "沙箱",
}


def source_label(source: str | None) -> str:
    """The remark word for a source code (e.g. douyin_comment -> 抖音评论), or the code itself."""
    if not source:
        return ""
    return SOURCE_LABELS.get(source, source)


def compose_remark(
    name: str | None,
    source: str | None,
    intent: str | None,
    mobile: str | None,
    *,
    limit: int = WECOM_REMARK_MAX,
) -> str:
    """Build "Name+Source+Intent+Mobile" (empty parts skipped), shortened to at most ``limit`` characters."""
    mobile = (mobile or "").strip()
    parts = [p.strip() for p in (name or "", source_label(source), intent or "")]
    words = [p for p in parts if p]
    tail = [mobile] if mobile else []
    if len(mobile) > limit:
        return mobile[:limit]

    def total() -> int:
        items = [w for w in words if w] + tail
        return sum(len(i) for i in items) + max(len(items) - 1, 0)

    while total() > limit:
        longest = max(range(len(words)), key=lambda i: (len(words[i]), -i))
        if len(words[longest]) == 0:
            break
        words[longest] = words[longest][:-1]
    return SEPARATOR.join([w for w in words if w] + tail)


def masked_remark(remark: str) -> str:
    """The remark as an operator may see it: every mainland mobile number inside it masked (138****1234)."""
    return _MOBILE_IN_TEXT.sub(lambda m: mask_mobile(m.group(0)) or "", remark)


class MaskedMobile(Invalid):
    """A client sent a masked mobile number that stands for no number the customer has."""


def restore_masked(text: str, known_mobiles: Iterable[str | None], *, field: str) -> str:
    """``text`` a client sent back with every masked mobile in it (138****1234) put back to the stored
    digits it stands for; a masked mobile that matches none of ``known_mobiles`` is refused (422 naming
    ``field``), so a masked value never replaces the real number."""
    by_mask = {mask_mobile(m): m for m in known_mobiles if m}

    def restore(match: re.Match[str]) -> str:
        digits = by_mask.get(match.group(0))
        if digits is None:
            raise MaskedMobile(
                f"{match.group(0)} is a masked mobile number: type the full 11 digits, "
                "or keep the masked number the customer already has",
                field=field,
            )
        return digits

    return _MASKED_IN_TEXT.sub(restore, text)


def is_masked_mobile(value: str | None) -> bool:
    """True when the whole value is a masked mobile (138****1234), as operators are shown them."""
    return bool(value) and _MASKED_IN_TEXT.fullmatch(value.strip()) is not None  # type: ignore[union-attr]


def mobiles_in(text: str | None) -> list[str]:
    """The mainland mobile numbers written inside a text (a remark)."""
    return _MOBILE_IN_TEXT.findall(text or "")
