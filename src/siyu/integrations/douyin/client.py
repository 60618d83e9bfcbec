"""A Douyin open-platform client for the enterprise account's comment replies.

Private messages are not sent: the enterprise-account API siyu once had for them
(``/enterprise/im/message/send/``) went offline on 2023-05-31, and nothing in siyu sends a private
message; its replacement (``/im/send/msg/``, answering a user's message by msg_id / conversation_id
within its scene) needs a conversation the user started, which siyu does not receive yet.

It implements :class:`siyu.integrations.channel.CommentReplier` over httpx. Douyin answers HTTP 200 with
``{"data": {"error_code": N, "description": "...", ...}, "extra": {"logid": ...}}``; a non-zero
``error_code`` becomes :class:`DouyinApiError`.
"""

from __future__ import annotations

from typing import Any, Self

import httpx

DEFAULT_BASE_URL = "https://open.douyin.com"


class DouyinApiError(RuntimeError):
    """Douyin refused a call (or could not be reached); ``code`` is Douyin's error_code, -1 for transport."""

    def __init__(self, code: int, description: str, path: str) -> None:
        super().__init__(f"Douyin {path} failed: {code} {description}")
        self.code = code
        self.description = description
        self.path = path


class DouyinClient:
    """Calls made as one authorised enterprise account (``open_id`` with its user ``access_token``)."""

    def __init__(
        self,
        access_token: str,
        open_id: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        if not access_token or not open_id:
            raise ValueError("DouyinClient needs the account's access_token and open_id")
        self.access_token = access_token
        self.open_id = open_id
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        """Close the underlying HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(
                path,
                params={"open_id": self.open_id},
                json=body,
                headers={"access-token": self.access_token},
            )
        except httpx.HTTPError as exc:
            raise DouyinApiError(-1, str(exc), path) from exc
        if response.status_code >= 400:
            raise DouyinApiError(-1, f"HTTP {response.status_code}", path)
        try:
            payload = response.json()
        except ValueError as exc:
            raise DouyinApiError(-1, "answer is not JSON", path) from exc
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise DouyinApiError(-1, "answer has no data object", path)
        code = int(data.get("error_code", 0) or 0)
        if code != 0:
            raise DouyinApiError(code, str(data.get("description", "")), path)
        return data

    def reply_to_comment(self, item_id: str, comment_id: str, text: str) -> str:
        """Reply publicly under a video comment (``POST /item/comment/reply/``)."""
        data = self._post(
            "/item/comment/reply/", {"item_id": item_id, "comment_id": comment_id, "content": text}
        )
        return str(data.get("comment_id", ""))
