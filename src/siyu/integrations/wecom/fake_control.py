"""Control API and callback emission of the fake WeCom server (`/_control/...`).

Tests and demos arrange the fake's world only through this JSON API: seed or generate
members, contacts, tags and groups; delete a tag as an admin would; add, rename and delete rule-group tags
(规则组标签) as an admin would, which sends change_external_tag with StrategyId; add a customer through a channel code (state); edit or
delete relationships; confirm a member's part of a mass message; make a customer refuse a
handover or cap a member's customers (transfer outcomes 3 and 4); advance the clock; expire
tokens; set quotas, trusted IPs and forbidden APIs; inject error codes; read the call log;
configure the callback receiver, verify its URL and emit events; read one contact's tags and
remarks as each member sees them (what write-back wrote). Bad control requests answer
HTTP 400 naming the problem and write nothing.

Events are POSTed as WeCom does (see `crypto.py`): `url?msg_signature=&timestamp=&nonce=`
with `<xml><ToUserName/><AgentID/><Encrypt/></xml>`; a non-200 answer is retried
`callback.retries` times. Every event is also kept in `/_control/events`. Events produced
inside the state's synchronous code (a handover failing when the clock moves) wait in
`state.pending_events` and are sent by the control call that caused them (or the next one).

Group-change callbacks (客户群变更事件) carry JoinScene in the callback's own terms, 0 invited by a member
and 3 scanned the group's QR code (the page's field list, which `crypto.py` documents too), while groupchat/get's member_list.join_scene is 1 direct invitation, 2 invitation
link, 3 QR code (获取客户群详情). A member change may come without MemChangeList
(`omit_mem_change_list`): the page marks the list as present only for some changes, so receivers must
read the group.
"""

from __future__ import annotations

import gc
import json
import secrets
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from siyu.integrations.wecom.crypto import CallbackCrypto, build_event_xml
from siyu.integrations.wecom.fake_state import (
    ApiError,
    Contact,
    FakeWeComState,
    Follow,
    GroupChatState,
)


def state_of(request: Request) -> FakeWeComState:
    """The fake state the app currently serves (replaced by /_control/reset)."""
    return request.app.state.fake


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty), or 47001."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(47001, "body is not JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(47001, "body must be a JSON object")
    return body


# --- callbacks ------------------------------------------------------------------------------


async def emit_event(state: FakeWeComState, fields: dict[str, Any]) -> dict[str, Any]:
    """Record an event and, when a receiver is configured, POST it encrypted as WeCom does."""
    full = {
        "ToUserName": state.corp_id,
        "FromUserName": "sys",
        "CreateTime": int(state.now()),
        "MsgType": "event",
        **fields,
    }
    record: dict[str, Any] = {"fields": full, "delivered": False, "status": None, "attempts": 0}
    with state.lock:
        state.outbox.append(record)
        callback = dict(state.callback)
    url = callback.get("url")
    if not url:
        return record
    crypto = CallbackCrypto(callback["token"], callback["encoding_aes_key"], state.corp_id)
    body, params = crypto.encrypt_request(build_event_xml(full), agent_id=callback.get("agent_id", ""))
    attempts = 1 + int(callback.get("retries", 0) or 0)
    async with httpx.AsyncClient(timeout=float(callback.get("timeout", 5.0))) as http:
        for _ in range(attempts):
            record["attempts"] += 1
            try:
                res = await http.post(
                    url, params=params, content=body.encode("utf-8"), headers={"Content-Type": "text/xml"}
                )
            except httpx.HTTPError as exc:
                record["status"], record["error"] = None, f"{type(exc).__name__}: {exc}"
                continue
            record["status"], record["response"] = res.status_code, res.text[:200]
            if res.status_code == 200:
                record["delivered"] = True
                break
    return record


def _contact_from(d: dict[str, Any], state: FakeWeComState) -> Contact:
    if not d.get("name"):
        raise ApiError(40058, "contact name is required")
    return Contact(
        external_userid=d.get("external_userid") or state.next_id("wm", 32),
        name=str(d["name"]),
        type=int(d.get("type", 1)),
        gender=int(d.get("gender", 0)),
        avatar=str(d.get("avatar", "")),
        unionid=str(d.get("unionid", "")),
        corp_name=str(d.get("corp_name", "")),
        corp_full_name=str(d.get("corp_full_name", "")),
        position=str(d.get("position", "")),
    )


def _follow_from(d: dict[str, Any], state: FakeWeComState) -> Follow:
    return Follow(
        userid=str(d["userid"]),
        createtime=int(d.get("createtime") or state.now()),
        remark=str(d.get("remark", "")),
        description=str(d.get("description", "")),
        tag_ids=list(d.get("tag_ids", [])),
        remark_mobiles=list(d.get("remark_mobiles", [])),
        add_way=int(d.get("add_way", 1)),
        state=str(d.get("state", "")),
        oper_userid=str(d.get("oper_userid", d["userid"])),
    )


async def flush_events(state: FakeWeComState) -> list[dict[str, Any]]:
    """Send the callbacks the state queued (oldest first); returns their delivery records."""
    with state.lock:
        queued, state.pending_events = state.pending_events, []
    return [await emit_event(state, fields) for fields in queued]


# --- control API ----------------------------------------------------------------------------


def _control(fn: Any) -> Any:
    """Wrap a control handler: JSON in, JSON out, ApiError/KeyError as HTTP 400 naming the problem."""

    async def endpoint(request: Request) -> JSONResponse:
        try:
            body = await json_body(request) if request.method in ("POST", "PUT") else {}
            result = await fn(request, state_of(request), body)
            await flush_events(state_of(request))
        except ApiError as err:
            return JSONResponse({"error": err.errmsg, "errcode": err.errcode}, status_code=400)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse(
                {"error": f"bad control request: {type(exc).__name__}: {exc}"}, status_code=400
            )
        return JSONResponse(result)

    return endpoint


async def c_health(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Liveness plus the corp id tests should use."""
    return {"ok": True, "corp_id": state.corp_id}


async def c_connect(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """What to enter on siyu's WeCom settings page to connect to this fake (its admin console's values)."""
    return {
        "corp_id": state.corp_id,
        "secret": state.secret,
        "token": state.callback_token,
        "encoding_aes_key": state.callback_aes_key,
        "base_url": str(request.base_url).rstrip("/"),
    }


async def c_reset(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Replace the whole state (optionally with another corp id, secret or token TTL)."""
    fresh = FakeWeComState(
        corp_id=body.get("corp_id", state.corp_id),
        secret=body.get("secret", state.secret),
        token_ttl=int(body.get("token_ttl", 7200)),
        callback_token=state.callback_token,
        callback_aes_key=state.callback_aes_key,
    )
    request.app.state.fake = fresh
    return {"ok": True, "corp_id": fresh.corp_id}


async def c_config(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Set token TTL, quotas, IP allow-list, forbidden APIs, unlicensed members, extra secrets, callback
    receiver, latency."""
    with state.lock:
        if "token_ttl" in body:
            state.token_ttl = int(body["token_ttl"])
        if "rate_limits" in body:
            state.rate_limits = {str(k): int(v) for k, v in body["rate_limits"].items()}
        if "hourly_rate_limits" in body:
            state.hourly_rate_limits = {str(k): int(v) for k, v in body["hourly_rate_limits"].items()}
        if "default_rate_limit" in body:
            v = body["default_rate_limit"]
            state.default_rate_limit = None if v is None else int(v)
        if "allowed_ips" in body:
            v = body["allowed_ips"]
            state.allowed_ips = None if v is None else set(v)
        if "forbidden_apis" in body:
            state.forbidden_apis = set(body["forbidden_apis"])
        if "unlicensed_members" in body:
            state.unlicensed = {str(u) for u in body["unlicensed_members"]}
        if "secrets" in body:
            state.secrets.update(body["secrets"])
        if "moment_delay" in body:
            state.moment_delay = float(body["moment_delay"])
        if "latency" in body:
            state.latency = {str(k): float(v) for k, v in body["latency"].items()}
        if "callback" in body:
            cb = body["callback"] or {}
            if cb and cb.get("url"):  # a URL alone: the Token and EncodingAESKey this company shows
                cb = {"token": state.callback_token, "encoding_aes_key": state.callback_aes_key, **cb}
            if cb and (not cb.get("url") or not cb.get("token") or len(cb.get("encoding_aes_key", "")) != 43):
                raise ApiError(40058, "callback needs url, token and a 43-character encoding_aes_key")
            state.callback = dict(cb.items())
        return {"ok": True}


async def c_clock(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Advance the fake's clock by `advance` seconds; handovers that fail on the way call back."""
    state.advance(float(body["advance"]))
    return {"now": state.now(), "deliveries": await flush_events(state)}


async def c_expire_tokens(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Expire every issued token now."""
    return {"expired": state.expire_tokens()}


async def c_faults(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Queue errcodes the next calls to `api` ("*" = any) will answer."""
    state.inject_faults(str(body["api"]), list(body["errcodes"]))
    return {"ok": True}


async def c_calls(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """The call log, optionally of one API; DELETE clears it."""
    with state.lock:
        if request.method == "DELETE":
            state.calls.clear()
            return {"calls": []}
        api = request.query_params.get("api")
        return {"calls": [c for c in state.calls if not api or c["api"] == api]}


async def c_generate(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Add a deterministic population (see `FakeWeComState.generate`)."""
    stats = state.generate(
        members=int(body.get("members", 10)),
        contacts=int(body.get("contacts", 1000)),
        seed=int(body.get("seed", 1)),
        max_followers=int(body.get("max_followers", 2)),
        groups=int(body.get("groups", 0)),
    )
    freeze_population()
    return stats


def freeze_population() -> None:
    """Move the generated world out of the garbage collector's sight (it lives as long as the fake).

    A population of 100,000 contacts is millions of objects; every full collection would walk them all
    and pause the fake mid-answer, and the benchmarks would count that pause against siyu."""
    gc.collect()
    gc.freeze()


async def c_members(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Create or update members."""
    for m in body["members"]:
        state.add_member(
            str(m["userid"]),
            str(m.get("name", "")),
            active=bool(m.get("active", True)),
            customer_contact=bool(m.get("customer_contact", True)),
        )
    return {"members": len(state.members)}


async def c_resign(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Mark a member as resigned (their customers await resigned transfer)."""
    with state.lock:
        state.member(request.path_params["userid"]).active = False
    return {"ok": True}


async def c_customer_limit(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Cap how many customers a member may have (null: WeCom's default 50,000); handovers past it fail (4)."""
    with state.lock:
        userid = state.member(request.path_params["userid"]).userid
        limit = body["customer_limit"]
        if limit is None:
            state.customer_limits.pop(userid, None)
        else:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ApiError(40058, "customer_limit must be a whole number >= 0, or null")
            state.customer_limits[userid] = limit
        return {
            "userid": userid,
            "customer_limit": state.customer_limit(userid),
            "customers": state.customer_count(userid),
        }


async def c_refuse_transfer(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """The customer refuses a waiting handover (status 3); WeCom pushes transfer_fail customer_refused."""
    transfer = state.refuse_transfer(
        str(body["external_userid"]),
        str(body.get("handover_userid") or ""),
        str(body.get("takeover_userid") or ""),
    )
    return {
        "external_userid": transfer.external_userid,
        "handover_userid": transfer.handover,
        "takeover_userid": transfer.takeover,
        "status": transfer.status,
        "deliveries": await flush_events(state),
    }


async def c_transfers(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Every handover the fake holds, with its status (1 done, 2 waiting, 3 refused, 4 takeover full)."""
    with state.lock:
        state.settle_transfers()
        return {
            "transfers": [
                {
                    "external_userid": t.external_userid,
                    "handover_userid": t.handover,
                    "takeover_userid": t.takeover,
                    "resigned": t.resigned,
                    "status": t.status,
                    "takeover_time": t.takeover_time,
                    "fail_reason": t.fail_reason,
                }
                for t in state.transfers
            ]
        }


async def c_contacts(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Create contacts with follow relationships; `emit` sends add_external_contact for each."""
    events: list[dict[str, Any]] = []
    with state.lock:
        # Validate every row before writing any, so a bad row leaves nothing half-written.
        rows = []
        for n, d in enumerate(body["contacts"]):
            try:
                contact = _contact_from(d, state)
                follows = [_follow_from(f, state) for f in d.get("follow", [])]
                for f in follows:
                    state.member(f.userid)
            except ApiError as err:
                raise ApiError(err.errcode, f"contacts[{n}]: {err.detail}") from err
            rows.append((contact, follows))
        for contact, follows in rows:
            state.add_contact(contact)
            for follow in follows:
                state.add_follow(contact.external_userid, follow)
                events.append(
                    {
                        "Event": "change_external_contact",
                        "ChangeType": "add_external_contact",
                        "UserID": follow.userid,
                        "ExternalUserID": contact.external_userid,
                        "State": follow.state or None,
                        "WelcomeCode": state.issue_welcome_code(),
                    }
                )
        created = [contact.external_userid for contact, _ in rows]
    deliveries = [await emit_event(state, e) for e in events] if body.get("emit") else []
    return {"external_userids": created, "deliveries": deliveries}


async def c_tags(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Create tag groups; answers their ids."""
    out = []
    for g in body["groups"]:
        group = state.add_tag_group(
            str(g["group_name"]), [str(t) for t in g["tags"]], group_id=g.get("group_id", "")
        )
        out.append({"group_id": group.group_id, "tags": {t.name: t.id for t in group.tags}})
    return {"groups": out}


async def c_delete_tag(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """An admin deletes a tag in WeCom's console (no callback: send one with callback/emit if wanted)."""
    state.delete_corp_tag(request.path_params["tag_id"])
    return {}


async def c_strategy_tags(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """An admin adds rule-group tags (规则组标签) to rule group ``strategy_id``: to ``group_id``, else to a new
    group ``group_name``; WeCom sends change_external_tag create with StrategyId. Answers the ids."""
    group = state.add_strategy_tags(
        int(body["strategy_id"]),
        [str(t) for t in body["tags"]],
        group_id=str(body.get("group_id", "")),
        group_name=str(body.get("group_name", "")),
    )
    return {"group_id": group.group_id, "tags": {t.name: t.id for t in group.tags}}


async def c_strategy_tag_edit(
    request: Request, state: FakeWeComState, body: dict[str, Any]
) -> dict[str, Any]:
    """An admin renames a rule-group tag or tag group (``id``); WeCom sends change_external_tag update."""
    state.edit_strategy_tag(str(body["id"]), str(body["name"]))
    return {}


async def c_strategy_tag_delete(
    request: Request, state: FakeWeComState, body: dict[str, Any]
) -> dict[str, Any]:
    """An admin deletes rule-group tags and groups; WeCom sends change_external_tag delete for each."""
    state.delete_strategy_tags(
        [str(t) for t in body.get("tag_ids", [])], [str(g) for g in body.get("group_ids", [])]
    )
    return {}


async def c_groups(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Create customer groups (owner + members: member userids or external userids; ``join_time``, unix
    seconds, dates the members' joins, by default now)."""
    created: list[str] = []
    events: list[dict[str, Any]] = []
    with state.lock:
        now = int(state.now())
        for g in body["groups"]:
            owner = state.member(g["owner"]).userid
            chat_id = g.get("chat_id") or state.next_id("wr", 32)
            joined = int(g.get("join_time", now))
            members = [{"userid": owner, "type": 1, "join_time": joined, "join_scene": 1}]
            for uid in g.get("members", []):
                kind = 1 if uid in state.members else 2
                if kind == 2 and uid not in state.contacts:
                    raise ApiError(40096, uid)
                members.append(
                    {
                        "userid": uid,
                        "type": kind,
                        "join_time": joined,
                        "join_scene": 1,
                        "invitor": {"userid": owner},
                    }
                )
            state.groups[chat_id] = GroupChatState(
                chat_id=chat_id,
                name=str(g.get("name", "")),
                owner=owner,
                create_time=now,
                notice=str(g.get("notice", "")),
                members=members,
                admins=list(g.get("admins", [])),
            )
            created.append(chat_id)
            events.append({"Event": "change_external_chat", "ChatId": chat_id, "ChangeType": "create"})
    deliveries = [await emit_event(state, e) for e in events] if body.get("emit") else []
    return {"chat_ids": created, "deliveries": deliveries}


async def c_group_change(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Members join (action=join) or quit (action=quit) a group, or its owner dismisses it (action=dismiss);
    emits change_external_chat update / dismiss (``omit_mem_change_list``: without MemChangeList, as WeCom
    may send it)."""
    action = request.path_params["action"]
    with state.lock:
        group = state.groups.get(request.path_params["chat_id"])
        if group is None:
            raise ApiError(40050, request.path_params["chat_id"])
        if action == "dismiss":
            del state.groups[group.chat_id]
            dismissed = {"Event": "change_external_chat", "ChatId": group.chat_id, "ChangeType": "dismiss"}
            return await emit_event(state, dismissed)
        userids = [str(u) for u in body["userids"]]
        last = group.version
        now = int(state.now())
        fields: dict[str, Any] = {
            "Event": "change_external_chat",
            "ChatId": group.chat_id,
            "ChangeType": "update",
        }
        if action == "join":
            scene = int(body.get("join_scene", 3))  # groupchat/get's terms: 1 direct, 2 link, 3 QR code
            for uid in userids:
                group.members.append(
                    {
                        "userid": uid,
                        "type": 1 if uid in state.members else 2,
                        "join_time": now,
                        "join_scene": scene,
                        "invitor": {"userid": group.owner},
                    }
                )
            # The callback's own terms: 0 invited by a member (directly or by link), 3 scanned the QR code.
            fields.update(UpdateDetail="add_member", JoinScene=3 if scene == 3 else 0)
        elif action == "quit":
            group.members = [m for m in group.members if m["userid"] not in userids]
            fields.update(UpdateDetail="del_member", QuitScene=int(body.get("quit_scene", 0)))
        else:
            raise ApiError(40058, f"unknown group action {action!r}")
        group.version += 1
        fields.update(MemChangeCnt=len(userids), LastMemVer=str(last), CurMemVer=str(group.version))
        if not body.get("omit_mem_change_list"):
            fields["MemChangeList"] = userids
    return await emit_event(state, fields)


async def c_scan(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """A person scans a channel code: becomes a customer of the code's next member, with its state."""
    with state.lock:
        way = state.contact_ways.get(str(body.get("config_id", "")))
        if way is None and body.get("state"):
            way = next((w for w in state.contact_ways.values() if w.state == body["state"]), None)
        if way is None:
            raise ApiError(40058, "no contact way with that config_id or state")
        userid = way.users[way.next_index % len(way.users)]
        way.next_index += 1
        eid = body.get("external_userid")
        contact = state.contacts.get(eid) if eid else None
        if contact is None:
            contact = state.add_contact(_contact_from({"name": body.get("name", "微信用户"), **body}, state))
        state.add_follow(
            contact.external_userid,
            Follow(
                userid=userid,
                createtime=int(state.now()),
                add_way=1,
                state=way.state,
                oper_userid=contact.external_userid,
            ),
        )
        fields = {
            "Event": "change_external_contact",
            "ChangeType": "add_external_contact",
            "UserID": userid,
            "ExternalUserID": contact.external_userid,
            "State": way.state or None,
            "WelcomeCode": state.issue_welcome_code(),
        }
    delivery = await emit_event(state, fields)
    return {"external_userid": contact.external_userid, "userid": userid, "delivery": delivery}


async def c_delete(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """End a relationship: by="member" (member deleted the customer) or "customer" (the reverse)."""
    eid = request.path_params["external_userid"]
    userid = str(body["userid"])
    by = body.get("by", "member")
    if by not in ("member", "customer"):
        raise ApiError(40058, "by must be member or customer")
    state.remove_follow(eid, userid)
    change = "del_external_contact" if by == "member" else "del_follow_user"
    return await emit_event(
        state,
        {"Event": "change_external_contact", "ChangeType": change, "UserID": userid, "ExternalUserID": eid},
    )


async def c_contact(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """One contact as each member sees them: remark, mobiles and tags (ids and names), as written by the
    members or through remark / mark_tag (what write-back left on WeCom)."""
    eid = request.path_params["external_userid"]
    with state.lock:
        if eid not in state.contacts:
            raise ApiError(40096, eid)
        follows = []
        for follow in state.follows[eid].values():
            named = [state.tag_index.get(t) for t in follow.tag_ids]
            follows.append(
                {
                    "userid": follow.userid,
                    "remark": follow.remark,
                    "description": follow.description,
                    "remark_mobiles": list(follow.remark_mobiles),
                    "tag_ids": list(follow.tag_ids),
                    "tags": [found[1].name for found in named if found],
                }
            )
        return {"external_userid": eid, "name": state.contacts[eid].name, "follow": follows}


async def c_edit(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """A member edits remark/description/tags in the app; emits edit_external_contact."""
    eid = request.path_params["external_userid"]
    with state.lock:
        follow = state.follow(eid, str(body["userid"]))
        if "remark" in body:
            follow.remark = str(body["remark"])
        if "description" in body:
            follow.description = str(body["description"])
        if "tag_ids" in body:
            follow.tag_ids = [str(t) for t in body["tag_ids"]]
    return await emit_event(
        state,
        {
            "Event": "change_external_contact",
            "ChangeType": "edit_external_contact",
            "UserID": follow.userid,
            "ExternalUserID": eid,
        },
    )


def _reachable(state: FakeWeComState, userid: str, row: dict[str, Any]) -> bool:
    """A customer still a friend of the sender, or a live group the sender still owns."""
    if "chat_id" in row:
        group = state.groups.get(row["chat_id"])
        return group is not None and group.status == 0 and group.owner == userid
    return userid in state.follows.get(row.get("external_userid", ""), {})


async def c_mass_send(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """A member confirms their part of a mass message: reachable recipients get status 1, others 2.

    `only` (optional) lists the external userids or chat ids the member picked; the rest stay unsent (0)."""
    with state.lock:
        msg = state.mass_messages.get(request.path_params["msgid"])
        if msg is None:
            raise ApiError(40058, "invalid msgid")
        userid = str(body["userid"])
        task = msg.tasks.get(userid)
        if task is None:
            raise ApiError(40058, f"{userid} has no task in this message")
        only = body.get("only")
        if only is not None and (not isinstance(only, list) or not all(isinstance(o, str) for o in only)):
            raise ApiError(40058, "only must be a list of external userids or chat ids")
        picked = set(only) if only is not None else None
        now = int(state.now())
        task.update(status=1, send_time=now)
        for row in msg.results.get(userid, []):
            if picked is not None and row.get("chat_id", row.get("external_userid")) not in picked:
                continue
            ok = _reachable(state, userid, row)
            row.update(status=1 if ok else 2, send_time=now if ok else 0)
        return {"sent": sum(1 for r in msg.results.get(userid, []) if r["status"] == 1)}


async def c_emit(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Emit an arbitrary event (fields as WeCom XML tags)."""
    return await emit_event(state, dict(body["fields"]))


async def c_verify(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Verify the callback URL as WeCom does: GET with encrypted echostr, expect the plaintext back."""
    cb = dict(state.callback)
    if not cb.get("url"):
        raise ApiError(40058, "no callback configured")
    crypto = CallbackCrypto(cb["token"], cb["encoding_aes_key"], state.corp_id)
    plaintext = str(secrets.randbelow(10**18))
    params = crypto.verification_request(plaintext)
    async with httpx.AsyncClient(timeout=5.0) as http:
        res = await http.get(cb["url"], params=params)
    return {"ok": res.status_code == 200 and res.text == plaintext, "status": res.status_code}


async def c_events(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Every event emitted so far, with delivery results."""
    with state.lock:
        return {"events": list(state.outbox)}


async def c_stats(request: Request, state: FakeWeComState, body: dict[str, Any]) -> dict[str, Any]:
    """Counts of what the fake holds."""
    with state.lock:
        return {
            "members": len(state.members),
            "contacts": len(state.contacts),
            "follows": sum(len(f) for f in state.follows.values()),
            "groups": len(state.groups),
            "tags": len(state.tag_index),
            "mass_messages": len(state.mass_messages),
            "transfers": len(state.transfers),
        }


def control_routes() -> list[Route]:
    """The /_control routes, for `fake_server.create_app`."""
    return [
        Route("/_control/health", _control(c_health), methods=["GET"]),
        Route("/_control/connect", _control(c_connect), methods=["GET"]),
        Route("/_control/reset", _control(c_reset), methods=["POST"]),
        Route("/_control/config", _control(c_config), methods=["POST"]),
        Route("/_control/clock", _control(c_clock), methods=["POST"]),
        Route("/_control/tokens/expire", _control(c_expire_tokens), methods=["POST"]),
        Route("/_control/faults", _control(c_faults), methods=["POST"]),
        Route("/_control/calls", _control(c_calls), methods=["GET", "DELETE"]),
        Route("/_control/generate", _control(c_generate), methods=["POST"]),
        Route("/_control/members", _control(c_members), methods=["POST"]),
        Route("/_control/members/{userid}/resign", _control(c_resign), methods=["POST"]),
        Route("/_control/members/{userid}/customer_limit", _control(c_customer_limit), methods=["POST"]),
        Route("/_control/transfers", _control(c_transfers), methods=["GET"]),
        Route("/_control/transfers/refuse", _control(c_refuse_transfer), methods=["POST"]),
        Route("/_control/contacts", _control(c_contacts), methods=["POST"]),
        Route("/_control/contacts/{external_userid}", _control(c_contact), methods=["GET"]),
        Route("/_control/contacts/{external_userid}/delete", _control(c_delete), methods=["POST"]),
        Route("/_control/contacts/{external_userid}/edit", _control(c_edit), methods=["POST"]),
        Route("/_control/tags", _control(c_tags), methods=["POST"]),
        Route("/_control/tags/{tag_id}/delete", _control(c_delete_tag), methods=["POST"]),
        Route("/_control/strategy_tags", _control(c_strategy_tags), methods=["POST"]),
        Route("/_control/strategy_tags/edit", _control(c_strategy_tag_edit), methods=["POST"]),
        Route("/_control/strategy_tags/delete", _control(c_strategy_tag_delete), methods=["POST"]),
        Route("/_control/groups", _control(c_groups), methods=["POST"]),
        Route("/_control/groups/{chat_id}/{action}", _control(c_group_change), methods=["POST"]),
        Route("/_control/scan", _control(c_scan), methods=["POST"]),
        Route("/_control/mass/{msgid}/send", _control(c_mass_send), methods=["POST"]),
        Route("/_control/callback/emit", _control(c_emit), methods=["POST"]),
        Route("/_control/callback/verify", _control(c_verify), methods=["POST"]),
        Route("/_control/events", _control(c_events), methods=["GET"]),
        Route("/_control/stats", _control(c_stats), methods=["GET"]),
    ]
