"""Request body limits enforced while the body streams in, before any endpoint (or its signature or token
check) reads it: a chunked upload without Content-Length can no longer fill memory."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit. An HTTPException, so that FastAPI's body
    parsing re-raises it instead of turning it into a 400, and the app answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")
        self.limit = limit


def too_large(limit: int) -> JSONResponse:
    """The 413 answer, in the API's error shape."""
    return JSONResponse(
        {"detail": f"the request body is larger than {limit:,} bytes", "field": "body"}, status_code=413
    )


class BodyLimit:
    """ASGI middleware: the first of ``limits`` (path prefix, bytes) that matches a request's path, else
    ``default``, caps its body. A declared Content-Length over the cap is refused before any byte is read;
    a chunked body is counted as it arrives and refused at the chunk that passes the cap."""

    def __init__(self, app: ASGIApp, *, limits: Sequence[tuple[str, int]], default: int) -> None:
        self.app = app
        self.limits = tuple(limits)
        self.default = default

    def limit_for(self, path: str) -> int:
        """The cap for a path."""
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse early by Content-Length, else count the body as the app receives it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await too_large(limit)(scope, receive, send)
                return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # Raised where no handler turned it into a response (a plain ASGI route, a background read).
            if started:
                raise
            await too_large(limit)(scope, receive, send)
