"""A fake WeCom server over real HTTP, for tests, demos and local development.

Run it with `siyu wecom fake-server` (or `python -m siyu.integrations.wecom.fake_server --port 8970`;
it prints what to enter on siyu's WeCom settings page), or start
`FakeWeComServer()` in a background thread from a test) and point `WeComClient(base_url=...)`
at it. It serves:

* `/cgi-bin/gettoken` and the customer-contact endpoints of `fake_api.py`, with WeCom's
  answer shapes: HTTP 200 and `{"errcode": N, "errmsg": "..., hint: [...], from ip: ...,
  more info at https://open.work.weixin.qq.com/devtool/query?e=N"}`. Every API call is checked
  in WeCom's order of concerns: token (41001 missing, 40014 unknown, 42001 expired), trusted IP
  (60020), API permission (48002), injected faults, per-API per-minute quota (45009).
* `/_control/...`, a JSON API to arrange the world: seed or generate members, contacts, tags
  and groups; add a customer through a channel code (state); edit or delete relationships;
  mark a mass message as sent by a member; advance the clock; expire tokens; set quotas and
  inject error codes; read the call log; configure the callback receiver.
* Callbacks: with `/_control/config {"callback": {"url", "token", "encoding_aes_key"}}` the
  server POSTs each event to `url?msg_signature=&timestamp=&nonce=` with an encrypted XML body,
  exactly as WeCom does (see `crypto.py`), and `/_control/callback/verify` performs the URL
  verification GET with an encrypted `echostr`. Events are also kept in `/_control/events`.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from siyu.integrations.wecom import fake_api_outreach  # noqa: F401  (registers its routes)
from siyu.integrations.wecom.fake_api import ROUTES
from siyu.integrations.wecom.fake_control import control_routes, freeze_population, json_body, state_of
from siyu.integrations.wecom.fake_jssdk import jssdk_routes
from siyu.integrations.wecom.fake_state import (
    DEFAULT_CALLBACK_AES_KEY,
    DEFAULT_CALLBACK_TOKEN,
    DEFAULT_CORP_ID,
    DEFAULT_SECRET,
    ApiError,
    FakeWeComState,
)
from siyu.kit.loopback import LoopbackServer


class WeComJSON(JSONResponse):
    """WeCom's JSON answer (UTF-8, non-ASCII unescaped, as starlette's) encoded by orjson.

    The fake stands in for Tencent's servers; in a benchmark it shares the machine with siyu, and the
    standard library's encoder cost ~1.1 ms of its CPU per page of 100 contacts against ~0.1 ms here.
    """

    def render(self, content: Any) -> bytes:
        """Encode the body."""
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def _error_body(state: FakeWeComState, err: ApiError, ip: str) -> dict[str, Any]:
    hint = f"{int(state.now())}_{secrets.token_hex(4)}"
    return {
        "errcode": err.errcode,
        "errmsg": f"{err.errmsg}, hint: [{hint}], from ip: {ip}, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={err.errcode}",
    }


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


# --- WeCom API ------------------------------------------------------------------------------


async def gettoken(request: Request) -> JSONResponse:
    """GET /cgi-bin/gettoken?corpid=&corpsecret=."""
    state = state_of(request)
    with state.lock:
        try:
            state.check_gate("gettoken", _client_ip(request))
            token, expires_in = state.issue_token(
                request.query_params.get("corpid"), request.query_params.get("corpsecret")
            )
        except ApiError as err:
            state.record_call("gettoken", err.errcode, None)
            return WeComJSON(_error_body(state, err, _client_ip(request)))
        state.record_call("gettoken", 0, None)
        return WeComJSON({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in})


async def cgi(request: Request) -> Response:
    """Every other /cgi-bin/ endpoint: token, gate, then the handler of `fake_api.ROUTES`."""
    state = state_of(request)
    api = request.path_params["path"]
    handler = ROUTES.get((request.method, api))
    if handler is None:
        return PlainTextResponse(f"no such API: {request.method} {api}", status_code=404)
    ip = _client_ip(request)
    body: dict[str, Any] = {}
    delay = state.latency.get(api)
    if delay:  # the event loop serves other calls meanwhile, as a slow WeCom would
        await asyncio.sleep(delay)
    try:
        body = await json_body(request) if request.method == "POST" else {}
        with state.lock:
            state.check_token(request.query_params.get("access_token"))
            state.check_gate(api, ip)
            state.settle_transfers()
            result = handler(state, dict(request.query_params), body)
            state.record_call(api, 0, body)
    except ApiError as err:
        with state.lock:
            state.record_call(api, err.errcode, body)
        return WeComJSON(_error_body(state, err, ip))
    return WeComJSON({"errcode": 0, "errmsg": "ok", **result})


def create_app(state: FakeWeComState | None = None) -> Starlette:
    """Build the Starlette app serving the fake WeCom API and its control API."""
    routes = [
        Route("/cgi-bin/gettoken", gettoken, methods=["GET"]),
        Route("/cgi-bin/{path:path}", cgi, methods=["GET", "POST"]),
        *control_routes(),
        *jssdk_routes(),
    ]
    app = Starlette(routes=routes)
    app.state.fake = state or FakeWeComState()
    return app


class FakeWeComServer(LoopbackServer):
    """The fake served by uvicorn in a background thread on loopback (port 0 = ephemeral)."""

    def __init__(
        self, state: FakeWeComState | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(create_app(state), host=host, port=port, name="fake-wecom")

    @property
    def state(self) -> FakeWeComState:
        """The live state."""
        return self.app.state.fake


def connection_values(base_url: str, *, timeout: float = 1.0) -> dict[str, str] | None:
    """What to enter on siyu's WeCom settings page to connect to the fake at ``base_url`` (its
    ``/_control/connect``), or None when it does not answer."""
    try:
        res = httpx.get(base_url.rstrip("/") + "/_control/connect", timeout=timeout)
        res.raise_for_status()
        values = res.json()
    except (httpx.HTTPError, ValueError):
        return None
    return {str(k): str(v) for k, v in values.items()}


def connection_banner(values: dict[str, str], *, siyu_url: str = "http://127.0.0.1:8000") -> str:
    """The lines that tell a newcomer what to enter on siyu's WeCom settings page."""
    return "\n".join(
        [
            f"fake WeCom on {values['base_url']}",
            f"enter on siyu's WeCom settings page ({siyu_url}/wecom/settings):",
            f"  Corp ID          {values['corp_id']}",
            f"  Secret           {values['secret']}",
            f"  Callback token   {values['token']}",
            f"  EncodingAESKey   {values['encoding_aes_key']}",
            f"  API base URL     {values['base_url']}",
        ]
    )


def main(argv: list[str] | None = None, *, prog: str | None = None) -> None:
    """Command line: serve the fake in the foreground, with a small generated company by default."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Fake WeCom (企业微信) customer-contact API server"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8970)
    parser.add_argument("--corp-id", default=DEFAULT_CORP_ID)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--token-ttl", type=int, default=7200, help="seconds an access_token lives")
    parser.add_argument("--members", type=int, default=5, help="generate this many members (0: none)")
    parser.add_argument("--contacts", type=int, default=200, help="generate this many contacts (0: none)")
    parser.add_argument("--groups", type=int, default=5, help="generate this many customer groups")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--callback-url", default="", help="where to send events, e.g. http://127.0.0.1:8000/hooks/wecom/ORG"
    )
    parser.add_argument("--callback-token", default=DEFAULT_CALLBACK_TOKEN)
    parser.add_argument("--callback-aes-key", default=DEFAULT_CALLBACK_AES_KEY)
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="don't log each request (benchmarks: the log line costs the server CPU)",
    )
    args = parser.parse_args(argv)
    if len(args.callback_aes_key) != 43:
        parser.error("--callback-aes-key must be 43 characters, as WeCom's EncodingAESKey")
    state = FakeWeComState(
        args.corp_id,
        args.secret,
        token_ttl=args.token_ttl,
        callback_token=args.callback_token,
        callback_aes_key=args.callback_aes_key,
    )
    if args.members or args.contacts:
        stats = state.generate(
            members=max(1, args.members), contacts=args.contacts, seed=args.seed, groups=args.groups
        )
        freeze_population()
        print(f"generated {stats}")
    if args.callback_url:
        state.callback = {
            "url": args.callback_url,
            "token": args.callback_token,
            "encoding_aes_key": args.callback_aes_key,
        }
    values = {
        "corp_id": state.corp_id,
        "secret": state.secret,
        "token": state.callback_token,
        "encoding_aes_key": state.callback_aes_key,
        "base_url": f"http://{args.host}:{args.port}",
    }
    print(connection_banner(values), flush=True)
    if not args.callback_url:
        print("no --callback-url: events (adds, deletions, group changes) are kept, not sent", flush=True)
    uvicorn.run(
        create_app(state),
        host=args.host,
        port=args.port,
        log_level="info",
        lifespan="off",
        access_log=not args.no_access_log,
    )


if __name__ == "__main__":
    main()
