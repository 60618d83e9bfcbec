"""Outreach endpoints of the fake WeCom server: mass messages, Moments tasks, customer transfers.

Shapes, limits and errcodes follow the official pages (developer.work.weixin.qq.com, 客户联系):

  POST externalcontact/add_msg_template                external_userid <= 10,000, chat_id_list <= 2,000,
                                                       attachments <= 9; {fail_list, msgid}
  POST externalcontact/get_groupmsg_list_v2            limit <= 100 (default 50)
  POST externalcontact/get_groupmsg_task               limit <= 1,000 (default 500)
  POST externalcontact/get_groupmsg_send_result        limit <= 1,000 (default 500)
  POST externalcontact/add_moment_task                 {jobid}
  GET  externalcontact/get_moment_task_result?jobid=   {status, type, result}
  POST externalcontact/transfer_customer               <= 100 customers, message <= 200;
                                                       per-customer errcode (40128 past 2 in-service
                                                       handovers of a customer in 90 days); done 24 h later
  POST externalcontact/transfer_result                 pages of <= 1,000
  POST externalcontact/resigned/transfer_customer      handover must have resigned
  POST externalcontact/resigned/transfer_result

Tasks are created unsent: members confirm on their phones, which `/_control/mass/{msgid}/send`
simulates.

What get_groupmsg_list_v2 answers, and the sources (the fake behaves as they describe):
  * no `creator` for a task created through the API (create_type 0): "群发消息创建者userid，API接口创建的
    群发消息不返回该字段" in WeCom's page for the endpoint (document/path/93338), carried word for word by
    LinkWeChat's transcription (`WeGroupMsgVo`) and by the Go client generated from WeCom's documents;
    WxJava's `WxCpGroupMsgListResult` cites the same page; wechatpy passes the body through. Hence a
    `creator` filter never matches an API-created task either: siyu recognises its tasks by other means
    (see `siyu.campaigns.submission`);
  * a range of more than one month is refused: "群发任务记录的起止时间间隔不能超过1个月" (same page; also in
    LinkWeChat's transcription). The page names no errcode for it; the fake answers 40058, WeCom's code
    for an invalid parameter, with an errmsg that says why.

add_msg_template with a `sender` who has left the company is answered 40003 (invalid userid), as for an
unknown userid: WeCom's global error codes (document/path/90313) list 40003 for a userid that is not (or
no longer) a member; the other senders' calls are unaffected. A group task (chat_type "group") only takes chat ids of live groups the sender owns;
the others are answered in `fail_list` (WeCom does not document its answer for a foreign chat id;
answering them as failed lets the caller see which ones did not go out).

Transfers wait 24 hours (status 2) and then complete (status 1), moving the follow relationship to
the takeover member, as WeCom does. Two other outcomes end a handover without moving anyone: the
customer refuses within the 24 hours (`/_control/transfers/refuse`, status 3) and the takeover
member is at their customer limit when the 24 hours end (50,000 by default, lowered per member
with `/_control/members/{userid}/customer_limit`; status 4). Both push a `transfer_fail` callback.
The 90-day rule counts every in-service handover the fake accepted, refused ones included (see
`siyu.accounts.departures` for why).
"""

from __future__ import annotations

import calendar
from datetime import datetime
from typing import Any

from siyu.integrations.wecom.fake_api import limit_of, route, str_list, too_long
from siyu.integrations.wecom.fake_state import (
    ERRMSG,
    MAX_TRANSFERS_IN_WINDOW,
    TRANSFER_DELAY_SECONDS,
    ApiError,
    FakeWeComState,
    MassMessage,
    MomentJob,
    Transfer,
    decode_cursor,
    encode_cursor,
)
from siyu.kit.clock import SHANGHAI

# --- mass messages ---------------------------------------------------------------------------


@route("POST", "externalcontact/add_msg_template")
def add_msg_template(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Create a mass-message task; members must still confirm it."""
    chat_type = body.get("chat_type") or "single"
    if chat_type not in ("single", "group"):
        raise ApiError(40058, "chat_type must be single or group")
    text = (body.get("text") or {}).get("content", "") if isinstance(body.get("text"), dict) else ""
    attachments = body.get("attachments") or []
    if not text and not attachments:
        raise ApiError(40058, "text and attachments cannot both be empty")
    if not isinstance(attachments, list) or len(attachments) > 9:
        raise ApiError(40058, "at most 9 attachments")
    external = str_list(body, "external_userid")
    chat_ids = str_list(body, "chat_id_list")
    if len(external) > 10_000:
        raise ApiError(40058, "external_userid holds at most 10000 ids")
    if len(chat_ids) > 2_000:
        raise ApiError(40058, "chat_id_list holds at most 2000 ids")
    sender = body.get("sender") or ""
    if sender and not state.member(sender).active:
        raise ApiError(40003, f"userid {sender!r} has left the company")
    if chat_type == "group" and not sender:
        raise ApiError(40058, "sender is required for group messages")
    msg = MassMessage(
        msgid=state.next_id("msg", 32),
        chat_type=chat_type,
        creator="",  # created through the API: WeCom keeps (and returns) no creator
        create_type=0,
        create_time=int(state.now()),
        text=text,
        attachments=attachments,
    )
    fail_list: list[str] = []
    if chat_type == "single":
        if not external and sender:
            external = [e for e in state.by_user.get(sender, []) if sender in state.follows.get(e, {})]
        for eid in external:
            follows = state.follows.get(eid, {})
            if sender:
                userid = sender if sender in follows else ""
            else:
                # WeCom gives the task to the member who last interacted; the fake uses the latest added.
                userid = max(follows.values(), key=lambda f: f.createtime).userid if follows else ""
            if not userid:
                fail_list.append(eid)
                continue
            msg.tasks.setdefault(userid, {"userid": userid, "status": 0, "send_time": 0})
            msg.results.setdefault(userid, []).append({"external_userid": eid, "userid": userid, "status": 0})
    else:
        owned = [g.chat_id for g in state.groups.values() if g.owner == sender and g.status == 0]
        owned_set = set(owned)
        for chat_id in dict.fromkeys(chat_ids) if chat_ids else owned:
            if chat_id not in owned_set:
                fail_list.append(chat_id)  # unknown, dismissed, or another member's group
                continue
            msg.tasks.setdefault(sender, {"userid": sender, "status": 0, "send_time": 0})
            msg.results.setdefault(sender, []).append({"chat_id": chat_id, "userid": sender, "status": 0})
    state.mass_messages[msg.msgid] = msg
    return {"fail_list": fail_list, "msgid": msg.msgid}


def _one_month_after(start: int) -> int:
    """The same moment one calendar month later (Asia/Shanghai; the 31st becomes the month's last day)."""
    at = datetime.fromtimestamp(start, SHANGHAI)
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    day = min(at.day, calendar.monthrange(year, month)[1])
    return int(at.replace(year=year, month=month, day=day).timestamp())


def _mass(state: FakeWeComState, body: dict[str, Any]) -> MassMessage:
    msg = state.mass_messages.get(str(body.get("msgid") or ""))
    if msg is None:
        raise ApiError(40058, "invalid msgid")
    return msg


@route("POST", "externalcontact/get_groupmsg_list_v2")
def get_groupmsg_list_v2(
    state: FakeWeComState, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Mass-message tasks created in [start_time, end_time]."""
    chat_type = body.get("chat_type") or "single"
    try:
        start, end = int(body["start_time"]), int(body["end_time"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(40058, "start_time and end_time are required") from exc
    if end < start:
        raise ApiError(40058, "end_time must not be before start_time")
    if end > _one_month_after(start):
        raise ApiError(40058, "invalid Parameter: the range of start_time and end_time exceeds one month")
    creator = body.get("creator") or ""
    filter_type = int(body.get("filter_type", 2))
    limit = limit_of(body.get("limit"), 50, 100)
    rows = [
        m
        for m in sorted(state.mass_messages.values(), key=lambda m: (m.create_time, m.msgid))
        if m.chat_type == chat_type
        and start <= m.create_time <= end
        and (not creator or m.creator == creator)
        and (filter_type == 2 or m.create_type == filter_type)
    ]
    (offset,) = decode_cursor(str(body.get("cursor") or ""), 1)
    page = rows[offset : offset + limit]
    nxt = offset + len(page)
    return {
        "group_msg_list": [
            {
                "msgid": m.msgid,
                **({"creator": m.creator} if m.creator else {}),
                "create_type": m.create_type,
                "create_time": m.create_time,
                **({"text": {"content": m.text}} if m.text else {}),
                "attachments": m.attachments,
            }
            for m in page
        ],
        "next_cursor": encode_cursor(nxt) if nxt < len(rows) else "",
    }


@route("POST", "externalcontact/get_groupmsg_task")
def get_groupmsg_task(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Per-member tasks of a mass message."""
    msg = _mass(state, body)
    rows = list(msg.tasks.values())
    limit = limit_of(body.get("limit"), 500, 1000)
    (offset,) = decode_cursor(str(body.get("cursor") or ""), 1)
    page = rows[offset : offset + limit]
    nxt = offset + len(page)
    return {
        "task_list": [dict(r) for r in page],
        "next_cursor": encode_cursor(nxt) if nxt < len(rows) else "",
    }


@route("POST", "externalcontact/get_groupmsg_send_result")
def get_groupmsg_send_result(
    state: FakeWeComState, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Per-recipient delivery of one member's part of a mass message."""
    msg = _mass(state, body)
    userid = str(body.get("userid") or "")
    state.member(userid)
    rows = msg.results.get(userid, [])
    limit = limit_of(body.get("limit"), 500, 1000)
    (offset,) = decode_cursor(str(body.get("cursor") or ""), 1)
    page = rows[offset : offset + limit]
    nxt = offset + len(page)
    return {
        "send_list": [dict(r) for r in page],
        "next_cursor": encode_cursor(nxt) if nxt < len(rows) else "",
    }


# --- moments -------------------------------------------------------------------------------------


@route("POST", "externalcontact/add_moment_task")
def add_moment_task(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Start an asynchronous Moments job."""
    text = (body.get("text") or {}).get("content", "") if isinstance(body.get("text"), dict) else ""
    attachments = body.get("attachments") or []
    if not text and not attachments:
        raise ApiError(40058, "text and attachments cannot both be empty")
    if len(text) > 2000:
        raise ApiError(40058, "invalid text size")
    visible = body.get("visible_range") or {}
    senders = (visible.get("sender_list") or {}).get("user_list") or []
    tags = (visible.get("external_contact_list") or {}).get("tag_list") or []
    job = MomentJob(
        jobid=state.next_id("job", 32),
        created=state.now(),
        moment_id=state.next_id("mom", 32),
        invalid_senders=[u for u in senders if u not in state.members],
        invalid_tags=[t for t in tags if t not in state.tag_index],
    )
    state.moment_jobs[job.jobid] = job
    return {"jobid": job.jobid}


@route("GET", "externalcontact/get_moment_task_result")
def get_moment_task_result(
    state: FakeWeComState, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Status of a Moments job: 2 while running, 3 once `moment_delay` seconds passed."""
    job = state.moment_jobs.get(query.get("jobid", ""))
    if job is None:
        raise ApiError(40058, "invalid jobid")
    if state.now() - job.created < state.moment_delay:
        return {"status": 2, "type": "add_moment_task"}
    return {
        "status": 3,
        "type": "add_moment_task",
        "result": {
            "errcode": 0,
            "errmsg": "ok",
            "moment_id": job.moment_id,
            "invalid_sender_list": {"user_list": job.invalid_senders},
            "invalid_external_contact_list": {"tag_list": job.invalid_tags},
        },
    }


# --- transfers ---------------------------------------------------------------------------------


def _transfer(state: FakeWeComState, body: dict[str, Any], *, resigned: bool) -> dict[str, Any]:
    handover = state.member(body.get("handover_userid"))
    takeover = state.member(body.get("takeover_userid"))
    if resigned and handover.active:
        raise ApiError(40058, "handover_userid has not resigned")
    if not resigned and not handover.active:
        raise ApiError(40058, "handover_userid has resigned; use resigned/transfer_customer")
    if not takeover.active or not takeover.customer_contact:
        raise ApiError(84074, takeover.userid)
    ids = str_list(body, "external_userid")
    if not ids:
        raise ApiError(40058, "external_userid is required")
    if len(ids) > 100:
        raise ApiError(40058, "external_userid holds at most 100 ids")
    too_long("transfer_success_msg", body.get("transfer_success_msg"), 200)
    state.settle_transfers()
    out = []
    for eid in ids:
        if eid not in state.contacts:
            out.append({"external_userid": eid, "errcode": 40096})
            continue
        if handover.userid not in state.follows[eid]:
            out.append({"external_userid": eid, "errcode": 84061})
            continue
        if not resigned and state.recent_transfer_count(eid) >= MAX_TRANSFERS_IN_WINDOW:
            out.append({"external_userid": eid, "errcode": 40128})
            continue
        now = int(state.now())
        state.transfers.append(
            Transfer(
                external_userid=eid,
                handover=handover.userid,
                takeover=takeover.userid,
                resigned=resigned,
                status=2,
                takeover_time=now + TRANSFER_DELAY_SECONDS,
                requested_time=now,
            )
        )
        out.append({"external_userid": eid, "errcode": 0})
    return {"customer": out}


def _transfer_result(state: FakeWeComState, body: dict[str, Any], *, resigned: bool) -> dict[str, Any]:
    state.settle_transfers()
    handover, takeover = body.get("handover_userid"), body.get("takeover_userid")
    rows = [
        t
        for t in state.transfers
        if t.resigned == resigned and t.handover == handover and t.takeover == takeover
    ]
    (offset,) = decode_cursor(str(body.get("cursor") or ""), 1)
    page = rows[offset : offset + 1000]
    nxt = offset + len(page)
    return {
        "customer": [
            {"external_userid": t.external_userid, "status": t.status, "takeover_time": t.takeover_time}
            for t in page
        ],
        "next_cursor": encode_cursor(nxt) if nxt < len(rows) else "",
    }


@route("POST", "externalcontact/transfer_customer")
def transfer_customer(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Hand over an in-service member's customers."""
    return _transfer(state, body, resigned=False)


@route("POST", "externalcontact/resigned/transfer_customer")
def resigned_transfer_customer(
    state: FakeWeComState, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Hand over a resigned member's customers."""
    return _transfer(state, body, resigned=True)


@route("POST", "externalcontact/transfer_result")
def transfer_result(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Handover states (in service)."""
    return _transfer_result(state, body, resigned=False)


@route("POST", "externalcontact/resigned/transfer_result")
def resigned_transfer_result(
    state: FakeWeComState, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Handover states (resigned)."""
    return _transfer_result(state, body, resigned=True)


# --- group owner transfer ----------------------------------------------------------------------


def _group_transfer(state: FakeWeComState, body: dict[str, Any], *, resigned: bool) -> dict[str, Any]:
    chat_ids = str_list(body, "chat_id_list")
    if not chat_ids:
        raise ApiError(40058, "chat_id_list is required")
    if len(chat_ids) > 100:
        raise ApiError(40058, "chat_id_list holds at most 100 ids")
    owner = state.member(body.get("new_owner"))
    if not owner.active:
        raise ApiError(84074, owner.userid)
    failed = []
    for chat_id in chat_ids:
        group = state.groups.get(chat_id)
        if group is None:
            failed.append({"chat_id": chat_id, "errcode": 40050, "errmsg": "chatid not found"})
            continue
        previous = state.members.get(group.owner)
        if resigned and previous is not None and previous.active:
            failed.append({"chat_id": chat_id, "errcode": 90500, "errmsg": ERRMSG[90500]})
            continue
        if not resigned and previous is not None and not previous.active:
            failed.append({"chat_id": chat_id, "errcode": 90502, "errmsg": ERRMSG[90502]})
            continue
        if group.owner == owner.userid:
            failed.append({"chat_id": chat_id, "errcode": 90504, "errmsg": ERRMSG[90504]})
            continue
        group.owner = owner.userid
        if not any(m.get("userid") == owner.userid for m in group.members):
            group.members.append(
                {"userid": owner.userid, "type": 1, "join_time": int(state.now()), "join_scene": 1}
            )
        group.version += 1
    return {"failed_chat_list": failed}


@route("POST", "externalcontact/groupchat/onjob_transfer")
def groupchat_onjob_transfer(
    state: FakeWeComState, query: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Give an in-service member's customer groups to another member."""
    return _group_transfer(state, body, resigned=False)


@route("POST", "externalcontact/groupchat/transfer")
def groupchat_transfer(state: FakeWeComState, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Give a resigned member's customer groups to another member."""
    return _group_transfer(state, body, resigned=True)
