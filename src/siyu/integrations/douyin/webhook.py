"""Douyin open-platform webhooks: signature check and payload parsing into plain DTOs.

Douyin signs each POST with ``X-Douyin-Signature = sha1(client_secret + raw body)`` (hex) and names each
delivery with a ``Msg-Id`` header that a retry repeats. The body is JSON: ``event``, ``from_user_id``,
``to_user_id``, ``client_key``, ``log_id`` and ``content`` — a JSON *string* for business events (an
object on the ``verify_webhook`` challenge, which is answered with ``{"challenge": <value>}``).

The URL verification Douyin sends when a webhook URL is saved in its console is documented as
``{"event": "verify_webhook", "client_key": "", "content": {"challenge": 12345}}``: an empty client key
(the signing example on the same page signs a verification body, yet several independent receivers
take it unsigned). So a ``verify_webhook`` may carry an empty ``client_key`` and, at the receiver's
choice, no signature; every other event must name its client key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

SIGNATURE_HEADER: Final = "X-Douyin-Signature"
MSG_ID_HEADER: Final = "Msg-Id"
VERIFY_EVENT: Final = "verify_webhook"
COMMENT_EVENT: Final = "item_comment_reply"


class WebhookError(ValueError):
    """A webhook body that is not what Douyin sends; ``field`` names the offending part."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def sign(client_secret: str, body: bytes) -> str:
    """The signature Douyin puts in ``X-Douyin-Signature`` for this body."""
    return hashlib.sha1(client_secret.encode() + body).hexdigest()


def signature_ok(client_secret: str, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the right one for ``body`` (constant-time comparison)."""
    if not signature or not client_secret:
        return False
    return hmac.compare_digest(sign(client_secret, body), signature.strip().lower())


@dataclass(frozen=True, slots=True)
class DouyinEvent:
    """One webhook delivery with its ``content`` decoded to a dict."""

    event: str
    client_key: str
    from_user_id: str = ""
    to_user_id: str = ""
    log_id: str = ""
    content: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DouyinComment:
    """A comment under one of the account's videos (``item_comment_reply``).

    Douyin sends no name or avatar of the commenter with the event (only their open_id, as
    ``comment_user_id``), and siyu knows no documented API that gives an enterprise account a
    commenter's nickname, so a comment from the webhook has none (the inbox says so)."""

    comment_id: str
    comment_user_id: str
    content: str
    item_id: str
    created_at: datetime
    reply_to_comment_id: str = ""


def _str(value: Any, name: str, *, required: bool = False) -> str:
    if value is None:
        if required:
            raise WebhookError(f"{name} is missing", name)
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise WebhookError(f"{name} must be a string", name)
    text = str(value).strip()
    if required and not text:
        raise WebhookError(f"{name} is empty", name)
    return text


def without_nul(value: Any) -> Any:
    """The decoded JSON with every NUL character removed from its strings and keys. Douyin may send one in
    a comment; no database text column can store it, and refusing the delivery only makes Douyin retry it
    for ever, so it is dropped (it carries no meaning in a comment)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def parse_event(body: bytes) -> DouyinEvent:
    """Decode a webhook body (NUL characters dropped); WebhookError names what is malformed."""
    try:
        data = without_nul(json.loads(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookError(f"body is not JSON: {exc}", "body") from exc
    if not isinstance(data, dict):
        raise WebhookError("body must be a JSON object", "body")
    event = _str(data.get("event"), "event", required=True)
    raw = data.get("content")
    if isinstance(raw, str):
        try:
            content = without_nul(json.loads(raw)) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise WebhookError(f"content is not a JSON string: {exc}", "content") from exc
    elif raw is None:
        content = {}
    else:
        content = raw
    if not isinstance(content, dict):
        raise WebhookError("content must be a JSON object", "content")
    return DouyinEvent(
        event=event,
        client_key=_str(data.get("client_key"), "client_key", required=event != VERIFY_EVENT),
        from_user_id=_str(data.get("from_user_id"), "from_user_id"),
        to_user_id=_str(data.get("to_user_id"), "to_user_id"),
        log_id=_str(data.get("log_id"), "log_id"),
        content=content,
    )


def challenge_of(event: DouyinEvent) -> Any:
    """The ``challenge`` value of a ``verify_webhook`` event, to echo back as ``{"challenge": ...}``."""
    if "challenge" not in event.content:
        raise WebhookError("verify_webhook without content.challenge", "content.challenge")
    value = event.content["challenge"]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise WebhookError("content.challenge must be a number or string", "content.challenge")
    return value


def parse_comment(event: DouyinEvent) -> DouyinComment:
    """The comment of an ``item_comment_reply`` event."""
    if event.event != COMMENT_EVENT:
        raise WebhookError(f"event {event.event!r} is not {COMMENT_EVENT}", "event")
    c = event.content
    created = c.get("create_time")
    if created in (None, "", 0):
        created_at = datetime.now(UTC)
    else:
        try:
            created_at = datetime.fromtimestamp(int(created), UTC)
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            raise WebhookError("content.create_time must be a Unix timestamp", "content.create_time") from exc
    return DouyinComment(
        comment_id=_str(c.get("comment_id"), "content.comment_id", required=True),
        # The commenter is the event's from_user_id; content repeats it as comment_user_id.
        comment_user_id=_str(c.get("comment_user_id"), "content.comment_user_id") or event.from_user_id,
        content=_str(c.get("content"), "content.content"),
        item_id=_str(
            c.get("reply_to_item_id") or c.get("item_id"), "content.reply_to_item_id", required=True
        ),
        created_at=created_at,
        reply_to_comment_id=_str(c.get("reply_to_comment_id"), "content.reply_to_comment_id"),
    )


def comment_event_body(
    client_key: str, account_open_id: str, comment: DouyinComment, log_id: str = ""
) -> bytes:
    """Serialise a comment the way Douyin delivers it (used by the fake server and tests)."""
    content = {
        "comment_id": comment.comment_id,
        "comment_user_id": comment.comment_user_id,
        "content": comment.content,
        "create_time": int(comment.created_at.timestamp()),
        "digg_count": 0,
        "reply_comment_total": 0,
        "reply_to_comment_id": comment.reply_to_comment_id,
        "reply_to_item_id": comment.item_id,
        "at_user_id": "",
    }
    body = {
        "event": COMMENT_EVENT,
        "from_user_id": comment.comment_user_id,
        "to_user_id": account_open_id,
        "client_key": client_key,
        "content": json.dumps(content, ensure_ascii=False),
        "log_id": log_id,
    }
    return json.dumps(body, ensure_ascii=False).encode()
