"""Transport of the WeCom adapter: retries, back-off, typed errors, DTO parsing helpers.

Rate limits
  errcode -1 (system busy) is retried at most 3 times with exponential back-off and jitter: the
  n-th wait is uniform in [d/2, d] with d = min(cap, base * 2**n) (defaults base 0.5 s, cap 8 s).
  errcode 45009 (API frequency limit) means WeCom now blocks that API for 60 s (per-minute limit)
  or 60 min (per-hour limit), without saying which: the first 45009 waits the minute out and
  retries (when retries are allowed); a 45009 within a minute of the end of that wait is the
  hourly block. A blocked API is not called again until its block ends: `WeComRateLimited`
  (with `retry_after`) is raised at once. Anything else raises a typed `WeComError` carrying
  errcode, errmsg and a plain-language explanation (see `errors.py`).
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
    FREQUENCY_LIMIT,
    HOUR_BLOCK,
    MINUTE_BLOCK,
    RETRYABLE_ERRCODES,
    TOKEN_ERRCODES,
    WeComError,
    WeComInputError,
    WeComRateLimited,
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
        clock: Callable[[], float] = time.monotonic,
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
        self._clock = clock
        # api -> (when WeCom lifts its block, the window it was taken for): WeCom's own blocks, waited out.
        self._blocked: dict[str, tuple[float, float]] = {}

    # --- transport ----------------------------------------------------------------------

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based): jittered, bounded."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _limited(self, api: str) -> float:
        """Record a 45009 of ``api`` and return the window WeCom now blocks it for (see the module doc)."""
        now = self._clock()
        previous = self._blocked.get(api)
        # Refused again within a minute of a minute's block ending: the hourly limit was reached.
        hourly = previous is not None and previous[1] == MINUTE_BLOCK and now - previous[0] < MINUTE_BLOCK
        window = HOUR_BLOCK if hourly else MINUTE_BLOCK
        self._blocked[api] = (now + window, window)
        return window

    def _check_block(self, api: str) -> None:
        """Raise at once while WeCom blocks ``api``: a call would only be refused (and the block mistaken
        for the hourly one)."""
        found = self._blocked.get(api)
        left = found[0] - self._clock() if found is not None else 0.0
        if found is not None and left > 0:
            raise WeComRateLimited(
                FREQUENCY_LIMIT, f"WeCom blocks this API for {left:.0f} s more", api=api, retry_after=left
            )

    def _call(self, api: str, fn: Callable[[], Any]) -> dict[str, Any]:
        token_retried = False
        backoffs = 0
        while True:
            self._check_block(api)
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
                if code == FREQUENCY_LIMIT:
                    window = self._limited(api)
                    if window == MINUTE_BLOCK and backoffs < self.max_retries:
                        self._sleep(window)
                        self._blocked[api] = (self._clock(), MINUTE_BLOCK)  # waited out
                        backoffs += 1
                        continue
                    raise WeComRateLimited(code, str(exc.errmsg), api=api, retry_after=window) from exc
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
