"""The customer-contact endpoints of the fake WeCom server, over `FakeWeComState`.

Each handler takes (state, query, body) and returns the JSON body WeCom would answer on
success (errcode 0 is added by the server), or raises `ApiError`. Shapes, limits and errcodes
follow the official API pages (developer.work.weixin.qq.com, 客户联系):

  GET  externalcontact/get_follow_user_list          {follow_user: [userid]}
  GET  externalcontact/list?userid=                   {external_userid: [...]}
  POST externalcontact/batch/get_by_user              userid_list (or legacy userid) <= 100,
       limit default 50, max 100 (larger is clamped); {external_contact_list: [{external_contact,
       follow_info}], next_cursor}
  GET  externalcontact/get?external_userid=&cursor=   {external_contact, follow_user (500/page), next_cursor}
  POST externalcontact/remark                          remark <= 20, description <= 150, remark_company <= 20
  POST externalcontact/mark_tag                        unknown tag -> 40068
  POST externalcontact/get_corp_tag_list               group_id wins over tag_id when both are given;
       never rule-group tags
  POST externalcontact/get_strategy_tag_list           strategy_id, tag_id, group_id all optional (group_id
       wins over tag_id); {tag_group: [{group_id, group_name, create_time, order, strategy_id,
       tag: [{id, name, create_time, order}]}]}
  POST externalcontact/add_corp_tag                    group_id (unknown -> 40068) or group_name (the group
       of that name, made when missing); tag [{name <= 30, order}] not empty; a name already in the
       group -> 40071 (nothing created); {tag_group: {group_id, group_name, tag: [the new tags]}}
  POST externalcontact/add_contact_way                 state <= 30, remark <= 30, <= 100 users,
                                                       type 1 takes exactly one user; qr_code for scene 2
  POST externalcontact/groupchat/list                  limit 1..1,000 required; owner_filter.userid_list
                                                       <= 100
  POST externalcontact/groupchat/get                   unknown chat -> 40050
  POST externalcontact/send_welcome_msg                welcome_code once (again: 41051), within 20 s of
                                                       its event (later: 41050), text.content <= 4000

Where WeCom's exact errcode for a bad parameter is undocumented the fake answers 40058.
Mass messages, Moments and transfers are in `fake_api_outreach.py`; groups are below.

Behaviours checked against the real platform, and the independent source each follows:
  * batch/get_by_user and members without an interoperability licence (互通许可, set with
    /_control/config {"unlicensed_members": [...]}): they are left out of the answer and listed in
    `fail_info: {unlicensed_userid_list: [...]}` (on every page of the call); when no member of the call
    has a licence the answer is errcode 701008. Follows WeCom's 批量获取客户详情 page
    (developer.work.weixin.qq.com/document/path/92994) as the .NET client Mud.Wechat transcribes it
    (both cases, in its doc comment); independent Java and TypeScript clients declare the same
    `fail_info.unlicensed_userid_list` object. The errmsg text of 701008 is not documented.
  * groupchat/list without owner_filter answers 81017 when the app sees over 1,000 members, and lists
    a resigned member's groups only when owner_filter names them: WeCom's 获取客户群列表 page
    (document/path/92120) as wechatpy 2.0 quotes it (`work/client/api/external_contact.py`,
    `get_group_chat_list`, and `external_contact_group_chat.py`), with independent Java, PHP and Go clients
    quoting the same sentence; the resigned-owner rule as a CLI generated from the same page states it.
    The errmsg text of 81017 is not documented.
  * send_welcome_msg: a WelcomeCode already used answers 41051 "externaluser has started chatting"
    (wechatpy 2.0's `send_welcome_msg` docstring quotes WeCom's 发送新客户欢迎语 page, with the 20 s
    window); one older than 20 s answers 41050 (the code issue 13's comparison with WeCom's pages found
    for an expired code; no independent client at hand confirms its errmsg).
  * groupchat/transfer of a group whose owner has not resigned lists it in failed_chat_list with
    errcode 90500 "the owner of this chat is not resigned" (the example answer of WeCom's 分配离职成员的
    客户群 page, as PowerWeChat's `ResponseFailedChat` quotes it); groupchat/onjob_transfer of a resigned
    owner's group answers 90502 and a transfer to the current owner 90504 (the 9050x codes of the same
    pages; not confirmed by an independent client at hand).
  * Rule-group tags (规则组标签, made with /_control/strategy_tags) are enterprise tags kept apart from the
    corp library: get_corp_tag_list never lists them, get_strategy_tag_list does, with each group's
    strategy_id, filters all optional and group_id winning over tag_id. Request and answer fields follow
    WeCom's 管理企业规则组下的客户标签 page (document/path/94882) as an independent Go client declares them
    (`GetStrategyTagListRequest`; `StrategyTagGroup` {group_id, group_name, create_time, order, strategy_id,
    tag}; `StrategyTag` {id, name, create_time, order}); strategy_id optional as a PHP client sends it (only
    when set); filter precedence, "every tag when no filter", and "an app reads only the rule-group tags it
    created" as the .NET client Mud.Wechat transcribes the page (`IWechatWorkExternalContactTagService`).
    siyu keeps its mirror when the call is refused; the fake refuses only through /_control/config
    forbidden_apis (48002). mark_tag takes their ids like any tag (Mud.Wechat: the rule group must be the
    app's and the member in its scope; the fake does not check scopes). externalcontact/get lists them in
    follow_user.tags with type 3 (WeCom's 获取客户详情 page, "3-规则组标签（仅系统应用返回）", as an independent Java
    client's `FollowUserTagItem` quotes it). Admin changes send change_external_tag with StrategyId (an Integer in
    EasyMarketGo's `WeComXmlMessage`, derived from WxJava's `WxCpXmlMessage`): create (TagType tag_group
    for a new group, tag for a tag added to an existing one), update, delete; a group whose last tag is
    deleted goes too (Mud.Wechat's del_strategy_tag note: 标签组内的所有标签被删除后，标签组自动删除). The
    errcode for a bad strategy_id is not documented: the fake answers 40058.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from siyu.integrations.wecom.fake_state import (
    WELCOME_CODE_SECONDS,
    ApiError,
    ContactWay,
    FakeWeComState,
    decode_cursor,
    encode_cursor,
)

Handler = Callable[[FakeWeComState, dict[str, str], dict[str, Any]], dict[str, Any]]
ROUTES: dict[tuple[str, str], Handler] = {}

FOLLOW_USER_PAGE = 500
#: groupchat/list without owner_filter is refused (81017) when the app sees more members than this.
MAX_VISIBLE_WITHOUT_OWNER_FILTER = 1000


def route(method: str, path: str) -> Callable[[Handler], Handler]:
    """Register a handler for `/cgi-bin/{path}`."""

    def register(fn: Handler) -> Handler:
        ROUTES[(method, path)] = fn
        return fn

    return register


def limit_of(value: Any, default: int, maximum: int) -> int:
    """Read a `limit`: default when absent or not positive, clamped to the maximum."""
    if value in (None, ""):
        return default
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise ApiError(40058, "limit must be an integer") from exc
    if n <= 0:
        return default
    return min(n, maximum)


def str_list(body: dict[str, Any], key: str) -> list[str]:
    """Read a list of strings or answer 40058."""
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(40058, f"{key} must be a list of strings")
    return value


def too_long(name: str, value: Any, limit: int) -> None:
    """Answer 40058 for a non-string or a string over `limit` characters."""
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise ApiError(40058, f"{name} must be a string of at most {limit} characters")


def _follow_info(state: FakeWeComState, follow: Any, *, detailed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "userid": follow.userid,
        "remark": follow.remark,
        "description": follow.description,
        "createtime": follow.createtime,
        "remark_corp_name": follow.remark_corp_name,
        "remark_mobiles": list(follow.remark_mobiles),
        "add_way": follow.add_way,
        "oper_userid": follow.oper_userid,
    }
    if follow.state:
        out["state"] = follow.state
    if detailed:
        tags = []
        for tag_id in follow.tag_ids:
            found = state.tag_index.get(tag_id)
            if found:
                group, tag = found
                # type 3: a rule-group tag (规则组标签), as WeCom answers the system customer-contact app.
                kind = 3 if group.strategy_id else 1
                tags.append(
                    {"group_name": group.group_name, "tag_name": tag.name, "tag_id": tag.id, "type": kind}
                )
        out["tags"] = tags
    else:
        out["tag_id"] = list(follow.tag_ids)
    return out


# --- contacts ---------------------------------------------------------------------------------


@route("GET", "externalcontact/get_follow_user_list")
def get_follow_user_list(
    state: FakeWeComState, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Members with customer contact enabled."""
    return {"follow_user": [m.userid for m in state.members.values() if m.customer_contact and m.active]}


@route("GET", "externalcontact/list")
def list_external(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """External userids of one member's customers."""
    member = state.member(query.get("userid"))
    if not member.customer_contact:
        raise ApiError(84074, member.userid)
    ids = [e for e in state.by_user.get(member.userid, []) if member.userid in state.follows.get(e, {})]
    return {"external_userid": ids}


@route("POST", "externalcontact/batch/get_by_user")
def batch_get_by_user(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Customers of up to 100 members with their follow_info, cursor-paged."""
    userids = str_list(body, "userid_list")
    if not userids and isinstance(body.get("userid"), str):
        userids = [body["userid"]]  # the older single-userid form
    if not userids:
        raise ApiError(40058, "userid_list is required")
    if len(userids) > 100:
        raise ApiError(40058, "userid_list holds at most 100 userids")
    for userid in userids:
        state.member(userid)
    unlicensed = [u for u in dict.fromkeys(userids) if u in state.unlicensed]
    userids = [u for u in userids if u not in state.unlicensed]
    if not userids:
        raise ApiError(701008, ",".join(unlicensed))
    limit = limit_of(body.get("limit"), 50, 100)
    user_index, position = decode_cursor(str(body.get("cursor") or ""), 2)
    out: list[dict[str, Any]] = []
    while user_index < len(userids) and len(out) < limit:
        userid = userids[user_index]
        eids = state.by_user.get(userid, [])
        while position < len(eids) and len(out) < limit:
            eid = eids[position]
            position += 1
            follow = state.follows.get(eid, {}).get(userid)
            if follow is not None:
                out.append(
                    {
                        "external_contact": state.contacts[eid].to_api(),
                        "follow_info": _follow_info(state, follow, detailed=False),
                    }
                )
        if position >= len(eids):
            user_index, position = user_index + 1, 0
    more = user_index < len(userids)
    if more:
        # Don't hand out a cursor that would only lead to an empty page.
        more = any(
            any(
                u in state.follows.get(e, {})
                for e in state.by_user.get(u, [])[(position if i == user_index else 0) :]
            )
            for i, u in enumerate(userids[user_index:], start=user_index)
        )
    answer: dict[str, Any] = {
        "external_contact_list": out,
        "next_cursor": encode_cursor(user_index, position) if more else "",
    }
    if unlicensed:
        answer["fail_info"] = {"unlicensed_userid_list": unlicensed}
    return answer


@route("GET", "externalcontact/get")
def get_contact(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """One customer with follow users in pages of 500."""
    eid = query.get("external_userid")
    if not eid or eid not in state.contacts:
        raise ApiError(40096, str(eid))
    follows = list(state.follows[eid].values())
    if not follows:
        raise ApiError(84061, eid)
    (start,) = decode_cursor(query.get("cursor", ""), 1)
    page = follows[start : start + FOLLOW_USER_PAGE]
    end = start + len(page)
    return {
        "external_contact": state.contacts[eid].to_api(),
        "follow_user": [_follow_info(state, f, detailed=True) for f in page],
        "next_cursor": encode_cursor(end) if end < len(follows) else "",
    }


@route("POST", "externalcontact/remark")
def remark(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Edit a member's remark fields on a customer."""
    follow = state.follow(body.get("external_userid"), body.get("userid"))
    fields = ("remark", "description", "remark_company", "remark_mobiles", "remark_pic_mediaid")
    if all(body.get(f) in (None, "") for f in fields) and "remark_mobiles" not in body:
        raise ApiError(
            40058, "remark, description, remark_company, remark_mobiles and remark_pic_mediaid are all empty"
        )
    too_long("remark", body.get("remark"), 20)
    too_long("description", body.get("description"), 150)
    too_long("remark_company", body.get("remark_company"), 20)
    if "remark" in body:
        follow.remark = body["remark"]
    if "description" in body:
        follow.description = body["description"]
    if "remark_company" in body:
        follow.remark_corp_name = body["remark_company"]
    if "remark_mobiles" in body:
        mobiles = str_list(body, "remark_mobiles")
        follow.remark_mobiles = [m for m in mobiles if m]  # [""] clears them
    return {}


@route("POST", "externalcontact/send_welcome_msg")
def send_welcome_msg(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Welcome a new customer with the WelcomeCode of the add event; each code is accepted once."""
    code = body.get("welcome_code")
    if not isinstance(code, str) or not code:
        raise ApiError(40058, "welcome_code is required")
    text = (body.get("text") or {}).get("content", "") if isinstance(body.get("text"), dict) else ""
    if not text and not body.get("attachments"):
        raise ApiError(40058, "text or attachments is required")
    too_long("text.content", text, 4000)
    if any(w["welcome_code"] == code for w in state.welcome_messages):
        raise ApiError(41051, "welcome_code already used")
    issued = state.welcome_codes.get(code)
    if issued is not None and state.now() - issued > WELCOME_CODE_SECONDS:
        raise ApiError(41050, "welcome_code expired")
    state.welcome_messages.append({"welcome_code": code, "text": text, "at": state.now()})
    return {}


# --- tags ---------------------------------------------------------------------------------------


@route("POST", "externalcontact/mark_tag")
def mark_tag(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Add/remove enterprise tags on a member's customer."""
    follow = state.follow(body.get("external_userid"), body.get("userid"))
    add, remove = str_list(body, "add_tag"), str_list(body, "remove_tag")
    if not add and not remove:
        raise ApiError(40058, "add_tag and remove_tag cannot both be empty")
    for tag_id in add + remove:
        if tag_id not in state.tag_index:
            raise ApiError(40068, tag_id)
    tags = [t for t in follow.tag_ids if t not in remove]
    tags += [t for t in add if t not in tags]
    follow.tag_ids = tags
    return {}


def _tag_groups(
    state: FakeWeComState, body: dict[str, Any], strategy: Callable[[int], bool]
) -> list[dict[str, Any]]:
    """The tag groups whose strategy_id passes ``strategy``, filtered as WeCom filters them: group_id
    filters take precedence over tag_id filters; a group answers only its matching tags under a tag_id
    filter."""
    tag_ids, group_ids = str_list(body, "tag_id"), str_list(body, "group_id")
    out = []
    for group in state.tag_groups.values():
        if not strategy(group.strategy_id):
            continue
        if group_ids:
            if group.group_id not in group_ids:
                continue
            tags = group.tags
        elif tag_ids:
            tags = [t for t in group.tags if t.id in tag_ids]
            if not tags:
                continue
        else:
            tags = group.tags
        item: dict[str, Any] = {
            "group_id": group.group_id,
            "group_name": group.group_name,
            "create_time": group.create_time,
            "order": group.order,
            "tag": [
                {"id": t.id, "name": t.name, "create_time": t.create_time, "order": t.order} for t in tags
            ],
        }
        if group.strategy_id:
            item["strategy_id"] = group.strategy_id
        out.append(item)
    return out


@route("POST", "externalcontact/get_corp_tag_list")
def get_corp_tag_list(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """The corp tag library, without rule-group tags; group_id filters take precedence over tag_id ones."""
    return {"tag_group": _tag_groups(state, body, lambda strategy_id: strategy_id == 0)}


@route("POST", "externalcontact/get_strategy_tag_list")
def get_strategy_tag_list(
    state: FakeWeComState, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """The rule-group tags (规则组标签), of one rule group when strategy_id is given, each group with its
    strategy_id; group_id filters take precedence over tag_id ones."""
    raw = body.get("strategy_id")
    if raw is not None and (not isinstance(raw, int) or isinstance(raw, bool) or raw < 0):
        raise ApiError(40058, "strategy_id must be a rule group id (an integer)")
    wanted = int(raw or 0)
    return {"tag_group": _tag_groups(state, body, lambda sid: sid > 0 and (not wanted or sid == wanted))}


@route("POST", "externalcontact/add_corp_tag")
def add_corp_tag(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Add tags to a group of the tag library (a new group when named and missing)."""
    group_id, group_name = body.get("group_id") or "", body.get("group_name") or ""
    if not isinstance(group_id, str) or not isinstance(group_name, str):
        raise ApiError(40058, "group_id and group_name must be strings")
    if not group_id and not group_name:
        raise ApiError(40058, "group_id or group_name is required")
    too_long("group_name", group_name, 30)
    items = body.get("tag")
    if not isinstance(items, list) or not items:
        raise ApiError(40058, "tag must be a non-empty list (empty groups are not supported)")
    tags: list[tuple[str, int]] = []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not name:
            raise ApiError(40058, "tag.name is required")
        too_long("tag.name", name, 30)
        tags.append((name, int(item.get("order") or 0)))
    group = state.add_corp_tag(group_id, group_name, tags)
    return {
        "tag_group": {
            "group_id": group.group_id,
            "group_name": group.group_name,
            "create_time": group.create_time,
            "order": group.order,
            "tag": [
                {"id": t.id, "name": t.name, "create_time": t.create_time, "order": t.order}
                for t in group.tags
            ],
        }
    }


# --- channel codes -----------------------------------------------------------------------------


@route("POST", "externalcontact/add_contact_way")
def add_contact_way(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Create a "contact me" configuration."""
    kind, scene = body.get("type"), body.get("scene")
    if kind not in (1, 2):
        raise ApiError(40058, "type must be 1 (single) or 2 (multi)")
    if scene not in (1, 2):
        raise ApiError(40058, "scene must be 1 (mini program) or 2 (QR code)")
    users = str_list(body, "user")
    if not users and not body.get("party"):
        raise ApiError(40058, "user or party is required")
    if kind == 1 and len(users) != 1:
        raise ApiError(40058, "type 1 takes exactly one user")
    if len(users) > 100:
        raise ApiError(40058, "at most 100 users")
    for userid in users:
        if not state.member(userid).customer_contact:
            raise ApiError(84074, userid)
    too_long("state", body.get("state"), 30)
    too_long("remark", body.get("remark"), 30)
    config_id = state.next_id("", 32)
    way = ContactWay(
        config_id=config_id,
        type=kind,
        scene=scene,
        users=users,
        state=body.get("state") or "",
        remark=body.get("remark") or "",
        skip_verify=bool(body.get("skip_verify", True)),
        qr_code=f"https://wework.qpic.cn/wwpic/fake_{config_id}/0" if scene == 2 else "",
    )
    state.contact_ways[config_id] = way
    out: dict[str, Any] = {"config_id": way.config_id}
    if way.qr_code:
        out["qr_code"] = way.qr_code
    return out


# --- groups ----------------------------------------------------------------------------------------


@route("POST", "externalcontact/groupchat/list")
def groupchat_list(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Customer groups, optionally of given owners, cursor-paged."""
    try:
        limit = int(body.get("limit"))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ApiError(40058, "limit is required") from exc
    if not 1 <= limit <= 1000:
        raise ApiError(40058, "limit must be between 1 and 1000")
    status_filter = int(body.get("status_filter", 0) or 0)
    owner_filter = body.get("owner_filter") or {}
    if not isinstance(owner_filter, dict):
        raise ApiError(40058, "owner_filter must be an object")
    owners = str_list(owner_filter, "userid_list")
    if len(owners) > 100:
        raise ApiError(40058, "owner_filter.userid_list holds at most 100 userids")
    if not owners and len(state.members) > MAX_VISIBLE_WITHOUT_OWNER_FILTER:
        raise ApiError(81017, f"{len(state.members)} visible members")

    def listed(owner: str) -> bool:
        if owners:
            return owner in owners
        # A resigned member's groups are listed only when the filter names them.
        member = state.members.get(owner)
        return member is None or member.active

    rows = [
        g
        for g in state.groups.values()
        if (status_filter == 0 or g.status == status_filter) and listed(g.owner)
    ]
    (offset,) = decode_cursor(str(body.get("cursor") or ""), 1)
    page = rows[offset : offset + limit]
    nxt = offset + len(page)
    return {
        "group_chat_list": [{"chat_id": g.chat_id, "status": g.status} for g in page],
        "next_cursor": encode_cursor(nxt) if nxt < len(rows) else "",
    }


@route("POST", "externalcontact/groupchat/get")
def groupchat_get(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """One customer group with members."""
    group = state.groups.get(str(body.get("chat_id") or ""))
    if group is None:
        raise ApiError(40050, str(body.get("chat_id")))
    need_name = bool(body.get("need_name"))
    members = []
    for m in group.members:
        row = dict(m)
        if need_name:
            if m["type"] == 1 and m["userid"] in state.members:
                row["name"] = state.members[m["userid"]].name
            elif m["type"] == 2 and m["userid"] in state.contacts:
                row["name"] = state.contacts[m["userid"]].name
        members.append(row)
    return {
        "group_chat": {
            "chat_id": group.chat_id,
            "name": group.name,
            "owner": group.owner,
            "create_time": group.create_time,
            "notice": group.notice,
            "member_list": members,
            "admin_list": [{"userid": a} for a in group.admins],
            "member_version": str(group.version),
        }
    }
