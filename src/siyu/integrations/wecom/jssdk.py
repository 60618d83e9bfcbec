"""What a page inside the WeCom client needs: OAuth2 (a one-time ``code`` to the member's userid) and the
JS-SDK's ``wx.agentConfig`` (signed with the app's ``jsapi_ticket``).

As WeCom documents them (企业微信 > 开发者中心):
- the member opens ``https://open.weixin.qq.com/connect/oauth2/authorize?appid=CORPID&redirect_uri=URL&
  response_type=code&scope=snsapi_base&state=STATE&agentid=AGENTID#wechat_redirect`` and comes back to
  ``URL?code=CODE&state=STATE``; ``GET /cgi-bin/auth/getuserinfo?access_token=&code=`` answers ``userid``
  (a member) or ``openid`` (someone outside the company); a code is valid once, for 5 minutes (40029);
- ``GET /cgi-bin/ticket/get?access_token=&type=agent_config`` answers the app's ``ticket`` and
  ``expires_in`` (7,200 s; the call is rate-limited, so the ticket is cached);
- the signature is ``sha1("jsapi_ticket=T&noncestr=N&timestamp=S&url=U")`` in hex, ``U`` the page's full
  URL without the ``#`` fragment.
A fake base URL (the fake WeCom server) serves all three, and a stand-in of the JS-SDK script, itself.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any
from urllib.parse import urlencode

from siyu.integrations.wecom.transport import DEFAULT_BASE_URL, WeComTransport

OAUTH_BASE_URL = "https://open.weixin.qq.com"
#: The JS-SDK scripts a page in the WeCom client loads (jweixin for wx.config, jwxwork for wx.agentConfig).
SDK_SCRIPTS = (
    "https://res.wx.qq.com/open/js/jweixin-1.2.0.js",
    "https://open.work.weixin.qq.com/wwopen/js/jwxwork-1.0.0.js",
)
#: Where a fake WeCom server serves its stand-in of both scripts (never a production address).
STANDIN_SCRIPT_PATH = "/wwopen/js/jwxwork-1.0.0.js"
#: Renew a cached ticket this long before WeCom says it expires.
TICKET_MARGIN_SECONDS = 300


def agent_config_signature(ticket: str, noncestr: str, timestamp: int, url: str) -> str:
    """The ``signature`` of ``wx.agentConfig`` for a page at ``url`` (its fragment is not signed)."""
    page = url.split("#", 1)[0]
    plain = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={page}"
    return hashlib.sha1(plain.encode("utf-8")).hexdigest()


def is_real_wecom(base_url: str) -> bool:
    """Whether the API base URL is Tencent's (else a fake or a proxy that serves the pages itself)."""
    return base_url.rstrip("/") == DEFAULT_BASE_URL.rstrip("/")


def authorize_url(base_url: str, corp_id: str, redirect_uri: str, state: str, agent_id: str = "") -> str:
    """Where to send a member's browser to get an OAuth2 ``code`` back at ``redirect_uri``."""
    host = OAUTH_BASE_URL if is_real_wecom(base_url) else base_url.rstrip("/")
    query: dict[str, str] = {
        "appid": corp_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "snsapi_base",
        "state": state,
    }
    if agent_id:
        query["agentid"] = agent_id
    return f"{host}/connect/oauth2/authorize?{urlencode(query)}#wechat_redirect"


def sdk_scripts(base_url: str) -> tuple[str, ...]:
    """The JS-SDK scripts a sidebar page loads: Tencent's, or the fake server's stand-in."""
    if is_real_wecom(base_url):
        return SDK_SCRIPTS
    return (base_url.rstrip("/") + STANDIN_SCRIPT_PATH,)


_TICKETS: dict[tuple[str, str], tuple[str, float]] = {}
_TICKETS_LOCK = threading.Lock()


class WeComJsSdk(WeComTransport):
    """The calls behind a page inside the WeCom client."""

    def user_of_code(self, code: str) -> str:
        """The member userid an OAuth2 ``code`` stands for; "" when it is someone outside the company."""
        data: dict[str, Any] = self.get("auth/getuserinfo", {"code": code})
        return str(data.get("userid") or data.get("UserId") or "")

    def agent_ticket(self) -> str:
        """The app's ``jsapi_ticket`` for ``wx.agentConfig``, cached until shortly before it expires."""
        key = (self.api.API_BASE_URL, self.api.access_token_key)
        now = time.monotonic()
        with _TICKETS_LOCK:
            cached = _TICKETS.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        data = self.get("ticket/get", {"type": "agent_config"})
        ticket = str(data["ticket"])
        lifetime = max(int(data.get("expires_in", 7200)) - TICKET_MARGIN_SECONDS, 60)
        with _TICKETS_LOCK:
            _TICKETS[key] = (ticket, now + lifetime)
        return ticket
