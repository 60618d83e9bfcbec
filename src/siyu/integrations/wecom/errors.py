"""Typed WeCom errors with plain-language explanations of the common error codes.

WeCom answers every API call with HTTP 200 and a JSON body carrying `errcode` (0 = ok) and
`errmsg` (English, followed by ", hint: [...], from ip: ..., more info at
https://open.work.weixin.qq.com/devtool/query?e=CODE"). The codes below come from WeCom's
global error-code page (全局错误码, developer.work.weixin.qq.com/document/path/90313) and the
customer-contact API pages; the explanations say what to do, for an operator, not a developer.

Codes the client acts on by itself (see `client.py`):
  40014 invalid access_token, 42001 access_token expired
      -> drop the cached token, fetch a new one, retry the call once;
  40001 invalid credential: in WeCom (unlike the Official Accounts platform) the secret is wrong
      (不合法的secret参数, global error-code page); a new token would be refused the same way, so it is
      raised at once as `WeComAuthError`, whose explanation tells the user to check the secret;
  45009 API frequency limit
      -> WeCom blocks the API for 60 s after its per-minute limit and for 60 min after its per-hour
         limit (频率限制, developer.work.weixin.qq.com/document/path/90312), and the errcode does not
         say which: the first 45009 waits the minute out and retries; a 45009 again right after that
         minute is the hourly block, raised as `WeComRateLimited` with `retry_after` = 3600;
  -1 system busy
      -> exponential back-off with jitter, at most 3 retries.
"""

from __future__ import annotations

#: errcode -> what it means and what to do about it.
EXPLANATIONS: dict[int, str] = {
    -1: "WeCom is busy (system busy). The call was retried with back-off and still failed; try again later.",
    40001: (
        "The secret is wrong or the access token is invalid (invalid credential). Check that the secret "
        "is the customer-contact (客户联系) secret or that of a self-built app added to "
        "'apps that may call the API', and that it was not reset in the WeCom admin console."
    ),
    40003: "The member userid does not exist in this company (invalid userid).",
    40013: (
        "The CorpID is wrong (invalid corpid). Copy it from My Company > Company Info "
        "in the WeCom admin console."
    ),
    40014: "The access token is invalid (invalid access_token); a new token is fetched automatically.",
    40050: "The customer group (chat_id) does not exist or is not visible to this app.",
    40058: "A request parameter is invalid (wrong type, missing, too long or too many items).",
    40068: "A tag id does not exist in the company's customer tag library (invalid tagid).",
    40071: "A tag of that name already exists in the tag group (UserTag Name Already Exist).",
    40096: "The external userid is not valid for this company (invalid external userid).",
    41001: "The access token is missing from the request.",
    41002: "The corpid parameter is missing.",
    41004: "The secret parameter is missing.",
    42001: "The access token has expired; a new token is fetched automatically.",
    45009: (
        "WeCom's API rate limit was reached (api freq out of limit). WeCom blocks the API for a minute "
        "after 10,000 calls in a minute and for an hour after 150,000 calls in an hour; siyu waits out a "
        "minute's block by itself. After an hour's block, try again in an hour, and spread the work over "
        "time or lower the sync frequency."
    ),
    45033: "Too many concurrent calls to this API; lower the concurrency.",
    48002: (
        "This API is forbidden for the secret in use (api forbidden): the app has no customer-contact "
        "permission. In the admin console, open Customer Contact > API and add the app to "
        "'apps that may call the API', or use the customer-contact secret."
    ),
    60011: (
        "The app may not see this member, department or tag (no privilege); widen the app's visible range."
    ),
    60020: (
        "Calls from this server's IP address are not allowed (not allow to access from your ip). Add the "
        "server's public IP to the app's trusted IP list in the WeCom admin console."
    ),
    60111: "The member userid was not found.",
    84061: (
        "This person is not an external contact (customer) of that member (not external contact): "
        "they may have deleted each other, or never added each other."
    ),
    701008: (
        "None of these members has an interoperability licence (互通许可), so WeCom will not list their "
        "customers. Buy or assign licences in the admin console (Management Tools > Interoperability "
        "licences); until then siyu leaves their customers as they were."
    ),
    41050: "The welcome code has expired: WeCom accepts a welcome message within 20 seconds of the add.",
    41051: (
        "The welcome code was already used (externaluser has started chatting): another app or a welcome "
        "message set in the admin console welcomed this customer first."
    ),
    90500: "The group's owner has not resigned: use the in-service group transfer instead.",
    90502: "The group's owner has resigned: use the resigned members' group transfer instead.",
    90504: "The receiving member already owns this group.",
    84074: (
        "The member has no customer-contact permission; enable customer contact for them "
        "in the admin console."
    ),
}

#: errcodes that mean the access token must be refreshed.
TOKEN_ERRCODES = frozenset({40014, 42001})
#: errcodes that mean "slow down and try again" soon (45009 has its own windows, see `transport.py`).
RETRYABLE_ERRCODES = frozenset({-1})
#: The API frequency limit: WeCom then blocks the API for MINUTE_BLOCK or HOUR_BLOCK seconds.
FREQUENCY_LIMIT = 45009
MINUTE_BLOCK = 60.0
HOUR_BLOCK = 3600.0


def explain(errcode: int | None) -> str:
    """Return a plain-language explanation of a WeCom errcode."""
    if errcode is None:
        return "The WeCom API could not be reached or answered with an HTTP error."
    return EXPLANATIONS.get(
        errcode,
        f"WeCom returned error {errcode}; see https://open.work.weixin.qq.com/devtool/query?e={errcode}",
    )


class WeComError(Exception):
    """A failed WeCom API call: carries errcode, errmsg, the API path and an explanation."""

    def __init__(self, errcode: int | None, errmsg: str, *, api: str = "") -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api
        self.explanation = explain(errcode)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" calling {self.api}" if self.api else ""
        return f"WeCom error {self.errcode}{where}: {self.explanation} (errmsg: {self.errmsg})"


class WeComAuthError(WeComError):
    """Credentials are wrong, or the token could not be refreshed (40001, 40013, 40014, 42001, 41001...)."""


class WeComPermissionError(WeComError):
    """The app may not call this API or see this member (48002, 60011, 60020, 84074)."""


class WeComRateLimited(WeComError):
    """Still rate-limited or busy after the bounded back-off (45009, 45033, -1); ``retry_after``: seconds
    until WeCom lifts its block of the API (0 when unknown)."""

    def __init__(self, errcode: int | None, errmsg: str, *, api: str = "", retry_after: float = 0.0) -> None:
        self.retry_after = retry_after
        super().__init__(errcode, errmsg, api=api)


class WeComTransportError(WeComError):
    """The HTTP exchange itself failed (connection refused, timeout, non-2xx status)."""


class WeComInputError(ValueError):
    """The caller asked for something WeCom would refuse (a limit or length); names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


_AUTH = frozenset({40001, 40013, 40014, 41001, 41002, 41004, 42001})
_PERMISSION = frozenset({48002, 60011, 60020, 84074})
_RATE = frozenset({45009, 45033, -1})


def error_for(errcode: int | None, errmsg: str, api: str = "") -> WeComError:
    """Build the most specific WeComError subclass for an errcode."""
    if errcode is None:
        return WeComTransportError(errcode, errmsg, api=api)
    if errcode in _AUTH:
        return WeComAuthError(errcode, errmsg, api=api)
    if errcode in _PERMISSION:
        return WeComPermissionError(errcode, errmsg, api=api)
    if errcode in _RATE:
        return WeComRateLimited(errcode, errmsg, api=api)
    return WeComError(errcode, errmsg, api=api)
