"""Access tokens for the WeCom adapter: wechatpy's work client with a configurable base URL.

Token handling
  `GET /cgi-bin/gettoken?corpid=ID&corpsecret=SECRET` answers `access_token` and `expires_in`
  (7,200 s). The token is cached per (corp_id, secret) in a wechatpy `SessionStorage`: by
  default one process-wide `MemoryStorage`, or a shared `RedisStorage` passed as `session`
  (several workers then share one token, which WeCom recommends: fetching too often is itself
  rate-limited). wechatpy refreshes 60 s before expiry. The cache key holds a SHA-256 prefix of
  the secret, never the secret itself. WeCom may invalidate a token early; on errcode 40014
  (invalid) or 42001 (expired) the adapter drops the cached token
  (only if it is still the one that failed, so a token another worker just fetched survives),
  fetches a new one and retries the call once. 40001 means a wrong secret in WeCom: no retry.

HTTP
  wechatpy sends every call through a `requests.Session`; answers are decoded with orjson (a page of
  100 contacts decodes in a third of the time the standard library takes).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import redis
import requests
from requests.utils import get_environ_proxies
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage
from wechatpy.session.memorystorage import MemoryStorage
from wechatpy.session.redisstorage import RedisStorage
from wechatpy.work import WeChatClient

from siyu.integrations.wecom.errors import WeComTransportError, error_for

#: Shared by every adapter in the process unless a `session` is given.
PROCESS_TOKEN_CACHE = MemoryStorage()
_FETCH_LOCKS: dict[str, threading.Lock] = {}
_FETCH_LOCKS_GUARD = threading.Lock()


def decode_json(content: bytes) -> Any:
    """Decode a WeCom answer: orjson first; raw control characters or bad UTF-8 (which orjson refuses
    and wechatpy tolerates) fall back to the standard library the way wechatpy decodes."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content.decode("utf-8", "ignore"), strict=False)


def _fetch_lock(key: str) -> threading.Lock:
    with _FETCH_LOCKS_GUARD:
        return _FETCH_LOCKS.setdefault(key, threading.Lock())


def redis_token_cache(url: str, prefix: str = "siyu") -> SessionStorage:
    """A token cache shared by every worker and process through Redis (wechatpy's RedisStorage)."""
    return RedisStorage(redis.Redis.from_url(url), prefix=prefix)


class TokenClient(WeChatClient):
    """wechatpy's work client with a configurable base URL and a secret-safe token cache key."""

    # wechatpy's (untyped) property over the session cache: the token's expiry in epoch seconds.
    expires_at: int | None

    def __init__(
        self, corp_id: str, secret: str, *, base_url: str, session: SessionStorage, timeout: float
    ) -> None:
        # The key is derived before wechatpy's __init__ because it may read access_token_key.
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]
        self._key_base = f"siyu:wecom:{corp_id}:{digest}"
        super().__init__(corp_id, secret, session=session, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = base_url.rstrip("/") + "/cgi-bin/"
        self.token_fetches = 0
        # requests re-reads the proxy variables and ~/.netrc on every request (about a tenth of the CPU
        # the adapter spends on a page of 100 contacts); read the environment once, here, instead.
        self._http.proxies.update(get_environ_proxies(self.API_BASE_URL))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self._http.verify = bundle
        self._http.trust_env = False

    def _decode_result(self, res: Any) -> Any:
        """Decode an answer wechatpy fetched with orjson (falling back as wechatpy would)."""
        try:
            return decode_json(res.content)
        except (TypeError, ValueError):
            return res

    @property
    def access_token_key(self) -> str:
        """Session key of the cached token for this (corp_id, secret)."""
        return f"{self._key_base}:access_token"

    @property
    def access_token_expires_at_key(self) -> str:
        """Session key of the cached token's expiry (wechatpy keys it by corp only)."""
        return f"{self._key_base}:access_token_expires_at"

    def fetch_access_token(self) -> dict[str, Any]:
        """Fetch a token from `{base}/cgi-bin/gettoken` unless another thread just did."""
        with _fetch_lock(self.access_token_key):
            cached = self.session.get(self.access_token_key)
            expires_at = self.expires_at
            if cached and expires_at and expires_at - time.time() > 60:
                return {"access_token": cached, "expires_in": int(expires_at - time.time())}
            try:
                res = self._http.get(
                    url=f"{self.API_BASE_URL}gettoken",
                    params={"corpid": self.corp_id, "corpsecret": self.secret},
                    timeout=self.timeout,
                )
                res.raise_for_status()
                result = res.json()
            except requests.RequestException as exc:
                raise WeComTransportError(None, f"{type(exc).__name__}: {exc}", api="gettoken") from exc
            except ValueError as exc:
                raise WeComTransportError(None, "gettoken answered with non-JSON", api="gettoken") from exc
            errcode = int(result.get("errcode", 0))
            if errcode != 0:
                raise error_for(errcode, str(result.get("errmsg", "")), "gettoken")
            expires_in = int(result.get("expires_in", 7200))
            self.session.set(self.access_token_key, result["access_token"], expires_in)
            self.expires_at = int(time.time()) + expires_in
            self.token_fetches += 1
            return result

    def invalidate(self, failed_token: str | None) -> None:
        """Drop the cached token if it is still the one that failed (compare-and-delete)."""
        with _fetch_lock(self.access_token_key):
            current = self.session.get(self.access_token_key)
            if failed_token is None or current == failed_token:
                self.session.delete(self.access_token_key)
                self.session.delete(self.access_token_expires_at_key)


def token_of(exc: WeChatClientException) -> str | None:
    """The access_token a failed wechatpy request was sent with, read from its URL."""
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("access_token")
    return values[0] if values else None
