"""Response headers that limit what a page may do if text a user typed ever slips through unescaped."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


# Scripts only from our own /static (no inline script, no eval: htmx runs with allowEval off). Styles may
# be inline: templates size bars with style="width: …" and ECharts positions its tooltip the same way;
# a style cannot run code. data: images are the favicon and ECharts' exported pictures.
def content_security_policy(script_origins: tuple[str, ...] = ()) -> str:
    """The policy, allowing scripts from ``script_origins`` too, and requests to them (the chat sidebar's
    WeCom JS-SDK, which talks to its own host)."""
    policy = CONTENT_SECURITY_POLICY
    for directive in ("script-src 'self'", "connect-src 'self'"):
        policy = policy.replace(directive, " ".join((directive, *script_origins)))
    return policy


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# FastAPI's own API explorer loads Swagger UI and ReDoc from their CDN with an inline bootstrap script;
# it shows the schema, never stored data, so it keeps working without the policy.
EXEMPT_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
)


class SecurityHeaders:
    """ASGI middleware: the Content-Security-Policy (and nosniff) on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response start of every HTTP request outside the API explorer."""
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # A page that names its own policy (the sidebar, which loads WeCom's JS-SDK) keeps it.
                own = any(name.lower() == b"content-security-policy" for name, _ in headers)
                message["headers"] = [
                    *headers,
                    *(h for h in _HEADERS if not (own and h[0] == _HEADERS[0][0])),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
