"""The field's remark convention "Name+Source+Intent+Mobile", fitted to WeCom's remark limit.

WeCom's ``externalcontact/remark`` API accepts a remark of at most 20 characters ("此用户对外部联系人的
备注,最多20个字符", developer.work.weixin.qq.com/document/path/96317), so a composed remark is
shortened to fit: the mobile number stays whole (it is what operators search the contact list by),
and the longest of name/source/intent loses a character at a time until the remark fits.
"""

from __future__ import annotations

import re

from siyu.kit.phone import mask_mobile

# A mobile inside free text: 11 digits starting 13-19, not part of a longer digit run.
_MOBILE_IN_TEXT = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")

WECOM_REMARK_MAX = 20
SEPARATOR = "+"

# Well-known source codes shown with the words operators use in remarks; unknown codes pass through.
SOURCE_LABELS: dict[str, str] = {
    "douyin": "抖音",
    "douyin_comment": "抖音评论",
    "douyin_live": "抖音直播",
    "kuaishou": "快手",
    "xiaohongshu": "小红书",
    "taobao": "淘宝",
    "taobao_order": "淘宝订单",
    "jd": "京东",
    "jd_order": "京东订单",
    "live": "直播",
    "offline": "线下",
    "referral": "转介绍",
    "zhihu": "知乎",
    "wecom": "企微",
    "official_account": "公众号",
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
