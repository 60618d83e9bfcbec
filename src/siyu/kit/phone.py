"""Mainland China mobile numbers: validation, normalisation and masking."""

from __future__ import annotations

import re

from siyu.kit.errors import Invalid

_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
_SEPARATORS = re.compile(r"[\s\-()]")


def normalize_mobile(raw: str, *, field: str = "mobile") -> str:
    """Return the 11-digit form of a mainland mobile number (accepts +86/0086 and separators) or raise."""
    value = _SEPARATORS.sub("", raw.strip())
    for prefix in ("+86", "0086", "86"):
        if value.startswith(prefix) and len(value) == len(prefix) + 11:
            value = value[len(prefix) :]
            break
    if not _MOBILE_RE.match(value):
        raise Invalid(
            f"{raw!r} is not a mainland China mobile number (11 digits starting 13-19)", field=field
        )
    return value


def is_mobile(raw: str) -> bool:
    """True when the text is a valid mainland mobile number."""
    try:
        normalize_mobile(raw)
    except Invalid:
        return False
    return True


def mask_mobile(mobile: str | None) -> str | None:
    """138****1234: what operators see unless their role allows the whole number."""
    if not mobile:
        return mobile
    return mobile[:3] + "****" + mobile[-4:] if len(mobile) == 11 else "****"
