"""A fake Douyin open platform over real HTTP, for tests, demos and local development.

Run it with ``python -m siyu.integrations.douyin.fake_server --webhook-url http://127.0.0.1:8000/hooks/douyin/demo``
or start ``FakeDouyinServer()`` in a background thread from a test. It serves:

* ``POST /item/comment/reply/`` with Douyin's answer shape
  (``{"data": {"error_code", "description", ...}, "extra": {"logid", "now"}}``), checking the
  ``access-token`` header (2190008 when wrong) and the ``open_id`` query (2190015 when not the account).
* ``/_control/...``: ``POST config`` (webhook_url, client_key, client_secret, ...), ``POST comment``
  (a viewer comments: the server POSTs a signed ``item_comment_reply`` webhook to webhook_url;
  ``{"replay_of": msg_id}`` re-delivers an earlier one with the same Msg-Id), ``POST verify`` (the
  ``verify_webhook`` challenge; ``{"signed": false}`` sends it without a signature), ``POST fail``
  (make the next N API calls answer an error code), ``GET replies``, ``GET deliveries``.

Behaviours checked against the real platform, and the independent source each follows:

* URL verification: ``{"event": "verify_webhook", "client_key": "", "content": {"challenge": <number>}}``,
  answered with ``{"challenge": <number>}``: Douyin's webhook page (developer.open-douyin.com, 开发者
  webhook 事件订阅), as quoted in an independent project's transcription of it (the empty client key, the
  numeric challenge; the page's signing example signs a verification body, so the fake signs it by
  default). Independent receivers (Python, TypeScript, Java) accept it unsigned, so the fake can send it
  unsigned too.
* ``item_comment_reply`` events carry the commenter only as ``from_user_id`` / ``comment_user_id``
  (open_id): no ``nick_name`` and no ``avatar``, as the event's documented content lists them
  (comment_id, comment_user_id, content, create_time, digg_count, reply_comment_total,
  reply_to_comment_id, reply_to_item_id, at_user_id); issue 13's comparison with the .NET client
  SKIT.FlurlHttpClient.ByteDance's event model found only the fake sending names.
* No ``/enterprise/im/message/send/``: that enterprise-account private-message API went offline on
  2023-05-31 (the date issue 13 records from Douyin's notice; its replacement is ``/im/send/msg/``),
  so the fake answers it 404 like any path it does not serve.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from siyu.integrations.douyin.webhook import (
    MSG_ID_HEADER,
    SIGNATURE_HEADER,
    VERIFY_EVENT,
    DouyinComment,
    comment_event_body,
    sign,
)
from siyu.kit.loopback import LoopbackServer


@dataclass
class Delivery:
    """One webhook POST the fake made, and siyu's answer."""

    msg_id: str
    body: bytes
    signature: str
    status: int = 0
    answer: str = ""


@dataclass
class FakeDouyinState:
    """The fake platform: one app, one enterprise account, what was posted, and pending faults."""

    client_key: str = "awfake0000000001"
    client_secret: str = "fake-douyin-client-secret"
    account_open_id: str = "_000fakeEnterpriseAccount"
    access_token: str = "act.fake-douyin-access-token"
    webhook_url: str = ""
    replies: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    fail_code: int = 0
    fail_times: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, body: bytes, *, msg_id: str | None = None, signature: str | None = None) -> Delivery:
        """POST one webhook body to ``webhook_url``, signed like Douyin unless a signature is given."""
        if not self.webhook_url:
            raise ValueError("webhook_url is not configured (POST /_control/config)")
        delivery = Delivery(
            msg_id=msg_id or secrets.token_hex(16),
            body=body,
            signature=sign(self.client_secret, body) if signature is None else signature,
        )
        headers = {"Content-Type": "application/json", MSG_ID_HEADER: delivery.msg_id}
        if delivery.signature:
            headers[SIGNATURE_HEADER] = delivery.signature
        try:
            response = httpx.post(self.webhook_url, content=body, headers=headers, timeout=10.0)
            delivery.status, delivery.answer = response.status_code, response.text
        except httpx.HTTPError as exc:
            delivery.status, delivery.answer = 0, str(exc)
        with self.lock:
            self.deliveries.append(delivery)
        return delivery

    def comment(
        self,
        content: str,
        *,
        item_id: str = "@fakeVideo0001",
        comment_user_id: str = "",
        comment_id: str = "",
        msg_id: str | None = None,
    ) -> tuple[DouyinComment, Delivery]:
        """A viewer comments under the account's video: deliver the signed item_comment_reply webhook."""
        comment = DouyinComment(
            comment_id=comment_id or f"@{secrets.token_hex(12)}",
            comment_user_id=comment_user_id or f"_000{secrets.token_hex(10)}",
            content=content,
            item_id=item_id,
            created_at=datetime.now(UTC),
        )
        body = comment_event_body(self.client_key, self.account_open_id, comment, log_id=secrets.token_hex(8))
        return comment, self.deliver(body, msg_id=msg_id)

    def replay(self, msg_id: str) -> Delivery:
        """Re-deliver an earlier webhook with its Msg-Id, as Douyin does when it saw no 200."""
        with self.lock:
            earlier = next((d for d in self.deliveries if d.msg_id == msg_id), None)
        if earlier is None:
            raise KeyError(msg_id)
        return self.deliver(earlier.body, msg_id=msg_id)

    def verify(self, challenge: int | None = None, *, signed: bool = True) -> Delivery:
        """Deliver the verify_webhook challenge as documented: an empty client_key; unsigned when asked."""
        value = challenge if challenge is not None else secrets.randbelow(10**9)
        body = json.dumps({"event": VERIFY_EVENT, "client_key": "", "content": {"challenge": value}}).encode()
        return self.deliver(body, signature=None if signed else "")

    def take_fault(self) -> int:
        """The error code to answer this call with (0: none), consuming one injected fault."""
        with self.lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                return self.fail_code
        return 0


def _answer(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {"data": data, "extra": {"logid": secrets.token_hex(8), "now": int(time.time() * 1000)}}
    )


def _error(code: int, description: str) -> JSONResponse:
    return _answer({"error_code": code, "description": description})


def _state(request: Request) -> FakeDouyinState:
    return request.app.state.fake


async def _authorised(request: Request) -> tuple[FakeDouyinState, dict[str, Any]] | JSONResponse:
    state = _state(request)
    if request.headers.get("access-token") != state.access_token:
        return _error(2190008, "access_token过期,请刷新或重新授权")
    if request.query_params.get("open_id") != state.account_open_id:
        return _error(2190015, "请求参数open_id错误")
    code = state.take_fault()
    if code:
        return _error(code, "injected fault")
    try:
        body = await request.json()
    except ValueError:
        return _error(2100004, "参数不合法")
    if not isinstance(body, dict):
        return _error(2100004, "参数不合法")
    return state, body


async def comment_reply(request: Request) -> JSONResponse:
    """Reply under a comment of the account's video."""
    checked = await _authorised(request)
    if isinstance(checked, JSONResponse):
        return checked
    state, body = checked
    if not all(isinstance(body.get(k), str) and body.get(k) for k in ("item_id", "comment_id", "content")):
        return _error(2100004, "参数不合法: item_id, comment_id and content are required")
    reply_id = f"@{secrets.token_hex(12)}"
    with state.lock:
        state.replies.append({**body, "reply_id": reply_id, "at": time.time()})
    return _answer({"error_code": 0, "description": "", "comment_id": reply_id})


def _delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "msg_id": d.msg_id,
        "status": d.status,
        "answer": d.answer,
        "signature": d.signature,
        "body": d.body.decode(),
    }


async def control_config(request: Request) -> JSONResponse:
    """Set webhook_url and/or app identity fields."""
    state = _state(request)
    body = await request.json()
    for key in ("webhook_url", "client_key", "client_secret", "account_open_id", "access_token"):
        if key in body:
            setattr(state, key, str(body[key]))
    return JSONResponse(
        {key: getattr(state, key) for key in ("webhook_url", "client_key", "account_open_id")}
    )


async def control_comment(request: Request) -> JSONResponse:
    """Simulate a viewer's comment (or replay an earlier delivery) and report siyu's answer."""
    state = _state(request)
    body = await request.json()
    if body.get("replay_of"):
        delivery = await run_in_threadpool(state.replay, str(body["replay_of"]))
        return JSONResponse(_delivery_json(delivery))
    if not isinstance(body.get("content"), str):
        return JSONResponse({"detail": "content (the comment text) is required"}, status_code=422)
    kwargs = {k: str(body[k]) for k in ("item_id", "comment_user_id", "comment_id") if body.get(k)}
    comment, delivery = await run_in_threadpool(lambda: state.comment(body["content"], **kwargs))
    return JSONResponse(
        {
            **_delivery_json(delivery),
            "comment_id": comment.comment_id,
            "comment_user_id": comment.comment_user_id,
            "item_id": comment.item_id,
        }
    )


async def control_verify(request: Request) -> JSONResponse:
    """Deliver the verify_webhook challenge (``{"signed": false}``: without X-Douyin-Signature)."""
    raw = await request.body()
    signed = bool(json.loads(raw).get("signed", True)) if raw.strip() else True
    delivery = await run_in_threadpool(lambda: _state(request).verify(signed=signed))
    return JSONResponse(_delivery_json(delivery))


async def control_fail(request: Request) -> JSONResponse:
    """Make the next ``times`` API calls answer ``error_code``."""
    state = _state(request)
    body = await request.json()
    with state.lock:
        state.fail_code, state.fail_times = int(body.get("error_code", 2190004)), int(body.get("times", 1))
    return JSONResponse({"error_code": state.fail_code, "times": state.fail_times})


async def control_list(request: Request) -> JSONResponse:
    """List replies or deliveries."""
    state = _state(request)
    what = request.path_params["what"]
    with state.lock:
        if what == "replies":
            return JSONResponse(list(state.replies))
        if what == "deliveries":
            return JSONResponse([_delivery_json(d) for d in state.deliveries])
    return JSONResponse({"detail": f"unknown list {what!r}"}, status_code=404)


def create_app(state: FakeDouyinState | None = None) -> Starlette:
    """Build the Starlette app serving the fake Douyin API and its control API."""
    app = Starlette(
        routes=[
            Route("/item/comment/reply/", comment_reply, methods=["POST"]),
            Route("/_control/config", control_config, methods=["POST"]),
            Route("/_control/comment", control_comment, methods=["POST"]),
            Route("/_control/verify", control_verify, methods=["POST"]),
            Route("/_control/fail", control_fail, methods=["POST"]),
            Route("/_control/{what}", control_list, methods=["GET"]),
        ]
    )
    app.state.fake = state or FakeDouyinState()
    return app


class FakeDouyinServer(LoopbackServer):
    """The fake served by uvicorn in a background thread on loopback (port 0 = ephemeral)."""

    def __init__(
        self, state: FakeDouyinState | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(create_app(state), host=host, port=port, name="fake-douyin")

    @property
    def state(self) -> FakeDouyinState:
        """The live state."""
        return self.app.state.fake


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the fake in the foreground."""
    parser = argparse.ArgumentParser(
        description="Fake Douyin (抖音) open platform: comment webhooks and replies"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8971)
    parser.add_argument("--webhook-url", default="", help="siyu's /hooks/douyin/<org> URL")
    parser.add_argument("--client-key", default=FakeDouyinState.client_key)
    parser.add_argument("--client-secret", default=FakeDouyinState.client_secret)
    args = parser.parse_args(argv)
    state = FakeDouyinState(
        client_key=args.client_key, client_secret=args.client_secret, webhook_url=args.webhook_url
    )
    print(
        f"fake Douyin on http://{args.host}:{args.port}  client_key={state.client_key}  "
        f"account open_id={state.account_open_id}  access_token={state.access_token}"
    )
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="info", lifespan="off")


if __name__ == "__main__":
    main()
