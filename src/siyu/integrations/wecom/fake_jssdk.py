"""The fake WeCom server's part in pages opened inside the WeCom client (the chat sidebar).

WeCom API (under /cgi-bin/, token-checked like every other call):
  GET auth/getuserinfo?code=        {userid}; missing code 41008, unknown, used or expired (5 min) 40029
  GET ticket/get?type=agent_config  {ticket, expires_in}; another type 40058
Browser side, standing in for Tencent's pages and scripts (never served by siyu itself):
  GET /connect/oauth2/authorize?appid=&redirect_uri=&state=   302 to redirect_uri?code=&state= for the member
      signed in to the fake WeCom client (see /_control/client); a wrong appid answers WeCom's error page
  GET /wwopen/js/jwxwork-1.0.0.js   a stand-in of the JS-SDK: ``wx.agentConfig`` has its signature checked
      here (POST /_jssdk/agent_config, sha1 over the ticket issued above), then ``wx.invoke`` answers
      getContext, getCurExternalContact, getCurExternalChat and sendChatMessage for the chat that is open
      (GET /_jssdk/context, POST /_jssdk/send), refusing any API left out of ``jsApiList``
Control:
  POST /_control/client {userid, external_userid | chat_id}   who is signed in and which chat is open
  GET  /_control/client                                        that, and a few chats per member to open
  GET  /_control/chat_messages                                 what sendChatMessage put into chats
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from siyu.integrations.wecom.fake_api import route
from siyu.integrations.wecom.fake_control import state_of
from siyu.integrations.wecom.fake_state import ApiError, FakeWeComState
from siyu.integrations.wecom.jssdk import STANDIN_SCRIPT_PATH, agent_config_signature

CODE_TTL_SECONDS = 300
TICKET_TTL_SECONDS = 7200
STANDIN_SCRIPT = Path(__file__).with_name("fake_jssdk.js")
#: Pages on other origins (siyu's sidebar) call the stand-in's endpoints, as the real SDK talks to WeCom.
CORS = {"Access-Control-Allow-Origin": "*"}


def agent_ticket(state: FakeWeComState) -> str:
    """The app's jsapi_ticket: the same for a company and secret until the server restarts."""
    return "fakeagentticket" + hashlib.sha1(f"{state.corp_id}:{state.secret}".encode()).hexdigest()[:40]


@route("GET", "auth/getuserinfo")
def getuserinfo(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Exchange a one-time OAuth2 code for the member's userid."""
    code = query.get("code", "")
    if not code:
        raise ApiError(41008)
    issued = state.oauth_codes.pop(code, None)
    if issued is None or issued[1] < state.now():
        raise ApiError(40029, code)
    return {"userid": issued[0]}


@route("GET", "ticket/get")
def ticket_get(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """The app's ticket for wx.agentConfig."""
    if query.get("type") != "agent_config":
        raise ApiError(40058, "type must be agent_config")
    return {"ticket": agent_ticket(state), "expires_in": TICKET_TTL_SECONDS}


async def authorize(request: Request) -> Response:
    """OAuth2 authorize: send the signed-in member back to redirect_uri with a fresh code."""
    state = state_of(request)
    params = request.query_params
    redirect_uri = params.get("redirect_uri", "")
    if params.get("appid") != state.corp_id or not redirect_uri.startswith(("http://", "https://")):
        return HTMLResponse("<h1>参数错误</h1><p>appid or redirect_uri is invalid</p>", status_code=400)
    with state.lock:
        userid = state.client_view.get("userid", "")
        if userid not in state.members:
            return HTMLResponse(
                "<h1>未登录</h1><p>no member is signed in to the fake WeCom client: POST /_control/client</p>",
                status_code=400,
            )
        code = state.next_id("code", 32)
        state.oauth_codes[code] = (userid, state.now() + CODE_TTL_SECONDS)
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(
        f"{redirect_uri}{sep}{urlencode({'code': code, 'state': params.get('state', '')})}", status_code=302
    )


async def standin_script(request: Request) -> Response:
    """The JS-SDK stand-in."""
    return Response(STANDIN_SCRIPT.read_text(encoding="utf-8"), media_type="application/javascript")


async def _body(request: Request) -> dict[str, Any]:
    # Sent as text/plain by the stand-in, so the browser needs no CORS preflight.
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def check_agent_config(request: Request) -> JSONResponse:
    """Verify wx.agentConfig's signature as WeCom does."""
    state = state_of(request)
    body = await _body(request)
    try:
        expected = agent_config_signature(
            agent_ticket(state),
            str(body.get("nonceStr", "")),
            int(body.get("timestamp", 0)),
            str(body["url"]),
        )
    except (KeyError, ValueError, TypeError):
        return JSONResponse({"errMsg": "agentConfig:fail invalid arguments"}, headers=CORS)
    if body.get("corpid") != state.corp_id or body.get("signature") != expected:
        return JSONResponse({"errMsg": "agentConfig:fail invalid signature"}, headers=CORS)
    return JSONResponse({"errMsg": "agentConfig:ok"}, headers=CORS)


def _entry(view: dict[str, str]) -> str:
    if view.get("chat_id"):
        return "group_chat_tools"
    return "single_chat_tools" if view.get("external_userid") else "normal"


async def context(request: Request) -> JSONResponse:
    """The chat open in the fake WeCom client."""
    state = state_of(request)
    with state.lock:
        view = dict(state.client_view)
    return JSONResponse({**view, "entry": _entry(view)}, headers=CORS)


async def send(request: Request) -> JSONResponse:
    """sendChatMessage: the text goes into the open chat's input box (kept for tests)."""
    state = state_of(request)
    body = await _body(request)
    with state.lock:
        view = dict(state.client_view)
        if _entry(view) == "normal":
            return JSONResponse({"err_msg": "sendChatMessage:fail no chat is open"}, headers=CORS)
        state.chat_messages.append({**view, "msgtype": body.get("msgtype"), "text": body.get("text")})
    return JSONResponse({"err_msg": "sendChatMessage:ok"}, headers=CORS)


async def c_client(request: Request) -> JSONResponse:
    """Sign a member in to the fake WeCom client and open a chat (a customer's or a group's); GET shows the
    open chat and, per member, a few chats that could be opened."""
    state = state_of(request)
    if request.method == "GET":
        with state.lock:
            chats = {
                userid: {
                    "external_userids": sorted(state.by_user.get(userid, []))[:5],
                    "chat_ids": sorted(g.chat_id for g in state.groups.values() if g.owner == userid)[:5],
                }
                for userid in state.members
            }
            return JSONResponse({"open": dict(state.client_view), "members": chats})
    body = await _body(request)
    userid = str(body.get("userid", ""))
    with state.lock:
        if userid not in state.members:
            return JSONResponse({"error": f"no member {userid!r}", "errcode": 40003}, status_code=400)
        chat = {k: str(body[k]) for k in ("external_userid", "chat_id") if body.get(k)}
        if "external_userid" in chat and chat["external_userid"] not in state.contacts:
            return JSONResponse({"error": "no such contact", "errcode": 40096}, status_code=400)
        if "chat_id" in chat and chat["chat_id"] not in state.groups:
            return JSONResponse({"error": "no such group", "errcode": 40050}, status_code=400)
        state.client_view = {"userid": userid, **chat}
    return JSONResponse({"ok": True, "entry": _entry(state.client_view)})


async def c_chat_messages(request: Request) -> JSONResponse:
    """Every message sendChatMessage put into a chat."""
    state = state_of(request)
    with state.lock:
        return JSONResponse({"messages": list(state.chat_messages)})


def jssdk_routes() -> list[Route]:
    """The browser-side and control routes, for `fake_server.create_app`."""
    return [
        Route("/connect/oauth2/authorize", authorize, methods=["GET"]),
        Route(STANDIN_SCRIPT_PATH, standin_script, methods=["GET"]),
        Route("/_jssdk/agent_config", check_agent_config, methods=["POST"]),
        Route("/_jssdk/context", context, methods=["GET"]),
        Route("/_jssdk/send", send, methods=["POST"]),
        Route("/_control/client", c_client, methods=["GET", "POST"]),
        Route("/_control/chat_messages", c_chat_messages, methods=["GET"]),
    ]
