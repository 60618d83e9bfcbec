"""Transport of the WeCom adapter: retries, back-off, typed errors, DTO parsing helpers.

Rate limits
  errcode 45009 (API frequency limit) and -1 (system busy) are retried at most 3 times with
  exponential back-off and jitter: the n-th wait is uniform in [d/2, d] with
  d = min(cap, base * 2**n) (defaults base 0.5 s, cap 8 s). Anything else raises a typed
  `WeComError` carrying errcode, errmsg and a plain-language explanation (see `errors.py`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

from siyu.integrations.channel import ExternalContact, FollowInfo
from siyu.integrations.wecom.errors import (
    RETRYABLE_ERRCODES,
    TOKEN_ERRCODES,
    WeComError,
    WeComInputError,
    WeComTransportError,
    error_for,
)
from siyu.integrations.wecom.tokens import PROCESS_TOKEN_CACHE, TokenClient, token_of

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"


def timestamp(value: Any) -> datetime | None:
    """Convert a WeCom Unix timestamp (0 = none) to aware UTC."""
    if type(value) is int:  # the usual case, first: a page of contacts converts hundreds of these
        return datetime.fromtimestamp(value, UTC) if value > 0 else None
    try:
        seconds = int(value or 0)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


# The two builders below run for every contact of every page (150,000 times in a sync of 100,000
# contacts), so they pass the fields positionally, in the dataclasses' order, which is measurably faster.


def contact_from(d: dict[str, Any]) -> ExternalContact:
    """Build an ExternalContact from WeCom's external_contact object."""
    g = d.get
    return ExternalContact(
        str(g("external_userid", "")),
        str(g("name", "")),
        int(g("type", 1) or 1),
        int(g("gender", 0) or 0),
        str(g("avatar", "")),
        str(g("unionid", "")),
        str(g("corp_name", "")),
        str(g("corp_full_name", "")),
        str(g("position", "")),
    )


def follow_from(d: dict[str, Any]) -> FollowInfo:
    """Build a FollowInfo from follow_info (batch) or a follow_user item (get)."""
    g = d.get
    # batch/get_by_user gives tag_id: [ids]; externalcontact/get gives tags: [{tag_id, ...}].
    if "tag_id" in d:
        tag_ids = tuple(map(str, g("tag_id") or ()))
    else:
        tag_ids = tuple(str(t.get("tag_id", "")) for t in g("tags") or () if t.get("tag_id"))
    return FollowInfo(
        str(g("userid", "")),  # userid
        str(g("remark", "")),  # remark
        str(g("description", "")),  # description
        timestamp(g("createtime")),  # created_at
        tag_ids,
        str(g("remark_corp_name", "")),  # remark_corp_name
        tuple(map(str, g("remark_mobiles") or ())),  # remark_mobiles
        int(g("add_way", 0) or 0),  # add_way
        str(g("state", "")),  # state
        str(g("oper_userid", "")),  # oper_userid
    )


def dedupe(ids: Sequence[str]) -> list[str]:
    """Drop empty and repeated ids, keeping first-seen order."""
    return list(dict.fromkeys(i for i in ids if i))


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    """Split a list into consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_length(field: str, value: str | None, limit: int) -> None:
    """Refuse a string longer than WeCom accepts, naming the field."""
    if value is not None and len(value) > limit:
        raise WeComInputError(field, f"at most {limit} characters, got {len(value)}")


class WeComTransport:
    """Calls WeCom through wechatpy with token refresh, bounded back-off and typed errors."""

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: SessionStorage | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not corp_id:
            raise WeComInputError("corp_id", "is required")
        if not secret:
            raise WeComInputError("secret", "is required")
        if not 0 <= max_retries <= 3:
            # Bounded on purpose: a sync job must fail and be rescheduled, not spin.
            raise WeComInputError("max_retries", "must be between 0 and 3")
        self.api = TokenClient(
            corp_id,
            secret,
            base_url=base_url,
            session=session if session is not None else PROCESS_TOKEN_CACHE,
            timeout=timeout,
        )
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = rng or random.Random()

    # --- transport ----------------------------------------------------------------------

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based): jittered, bounded."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _call(self, api: str, fn: Callable[[], Any]) -> dict[str, Any]:
        token_retried = False
        backoffs = 0
        while True:
            try:
                result = fn()
            except WeComError:
                raise
            except WeChatClientException as exc:
                code = exc.errcode
                if code is None:
                    status = getattr(getattr(exc, "response", None), "status_code", "?")
                    raise WeComTransportError(None, f"HTTP {status}", api=api) from exc
                if code in TOKEN_ERRCODES and not token_retried:
                    token_retried = True
                    self.api.invalidate(token_of(exc))
                    continue
                if code in RETRYABLE_ERRCODES and backoffs < self.max_retries:
                    self._sleep(self.backoff_delay(backoffs))
                    backoffs += 1
                    continue
                raise error_for(code, str(exc.errmsg), api) from exc
            except requests.RequestException as exc:
                raise WeComTransportError(None, f"{type(exc).__name__}: {exc}", api=api) from exc
            if not isinstance(result, dict):
                raise WeComTransportError(None, "answer was not a JSON object", api=api)
            return result

    def post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body to `/cgi-bin/{path}` with token refresh and back-off."""
        return self._call(path, lambda: self.api.post(path, data=dict(data)))

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET `/cgi-bin/{path}` with token refresh and back-off."""
        # wechatpy writes access_token into the params dict, so each attempt needs a fresh one.
        return self._call(path, lambda: self.api.get(path, params=dict(params or {})))
