"""Input no database can store, refused in one place with 422 naming the field: the NUL character
(PostgreSQL text cannot hold it; psycopg refused it with a 500) and integers outside 64 bits (SQLite
overflowed into a 422 of its own, PostgreSQL answered 500).

Checked on the path, the query string and JSON or form bodies before any endpoint runs. The body is only
parsed here when its bytes could hold such a value (an escaped or raw NUL, a run of 19+ digits), so the
event batch hot path pays one byte scan."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
_SUSPECT = re.compile(rb"\\u0000|\x00|\d{19,}")
_LONG_DIGITS = re.compile(r"^[+-]?\d{19,}$")
NUL_MESSAGE = "must not contain the NUL character (\\u0000)"
RANGE_MESSAGE = "is out of range: ids and counts fit in 64 bits"


def _bad_text(value: str) -> str | None:
    if "\x00" in value:
        return NUL_MESSAGE
    if _LONG_DIGITS.match(value.strip()) and not INT64_MIN <= int(value) <= INT64_MAX:
        return RANGE_MESSAGE
    return None


def _walk(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(field, problem) for each bad value in parsed JSON; fields written as events[3].properties.x."""
    if isinstance(value, str):
        if "\x00" in value:
            yield where or "body", NUL_MESSAGE
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            yield where or "body", RANGE_MESSAGE
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if "\x00" in key:
                yield name, NUL_MESSAGE
            yield from _walk(item, name)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")


def _refusal(field: str, problem: str) -> JSONResponse:
    return JSONResponse({"detail": f"{field} {problem}", "field": field}, status_code=422)


def _in_body(body: bytes, content_type: str) -> tuple[str, str] | None:
    if not _SUSPECT.search(body):
        return None
    if "json" in content_type:
        try:
            parsed = json.loads(body)
        except ValueError:
            return None  # the endpoint reports malformed JSON in its own words
        return next(_walk(parsed, ""), None)
    if "x-www-form-urlencoded" in content_type:
        # Form values are text (a note may be a long number): only NUL is refused here.
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return name, NUL_MESSAGE
    return None


class InputGuard:
    """ASGI middleware refusing NUL characters and out-of-range integers with 422 naming the field.

    ``exempt`` path prefixes (signed platform webhooks) pass untouched: a signature covers the raw bytes,
    and a platform retries a refusal for ever, so those strip what they cannot store themselves."""

    def __init__(self, app: ASGIApp, *, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check path and query at once; buffer and check a JSON or form body before the app sees it."""
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        for i, segment in enumerate(unquote(scope.get("raw_path", b"").decode("latin-1")).split("/")):
            problem = _bad_text(segment)
            if problem:
                await _refusal(f"path[{i}]", problem)(scope, receive, send)
                return
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"):
            problem = _bad_text(value) or (NUL_MESSAGE if "\x00" in name else None)
            if problem:
                await _refusal(name, problem)(scope, receive, send)
                return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if scope["method"] not in ("POST", "PUT", "PATCH") or not (
            "json" in content_type or "x-www-form-urlencoded" in content_type
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # the client left; let the app see it
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        bad = _in_body(body, content_type)
        if bad is not None:
            await _refusal(*bad)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
