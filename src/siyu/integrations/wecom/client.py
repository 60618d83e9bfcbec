"""The WeCom customer-contact (客户联系) adapter, built on wechatpy 2.0's `wechatpy.work.WeChatClient`.

It implements the Protocols of `siyu.integrations.channel` and returns their plain DTOs.

Token caching and refresh live in `tokens.py` (errcodes 40014/42001: refresh the token
and retry once), back-off and typed errors in `transport.py` (-1: at most 3 jittered exponential
retries; 45009: WeCom's block of a minute is waited out, an hour's is raised with `retry_after`),
mass messages, Moments and transfers in `outreach.py`.

Endpoints (paths relative to `{base_url}/cgi-bin/`; base_url is configurable so the adapter can
talk to the fake server on loopback):
  externalcontact/get_follow_user_list   GET   members with customer contact enabled
  externalcontact/list                   GET   ?userid= -> external_userid list
  externalcontact/batch/get_by_user      POST  userid_list <= 100, limit <= 100 (default 50),
                                               cursor paging via next_cursor; members without an
                                               interoperability licence (互通许可) are listed in
                                               fail_info.unlicensed_userid_list, and when every
                                               member of the call lacks one WeCom answers 701008:
                                               both become ContactPage.unlicensed, never an error
  externalcontact/get                    GET   ?external_userid=&cursor=; follow_user pages of 500
  externalcontact/remark                 POST  remark <= 20 chars, description <= 150,
                                               remark_company <= 20
  externalcontact/mark_tag               POST  add_tag / remove_tag (not both empty)
  externalcontact/get_corp_tag_list      POST  tag_id / group_id filters; the corp library only, never
                                               rule-group tags (规则组标签)
  externalcontact/get_strategy_tag_list  POST  tag_id / group_id / strategy_id filters, all optional (none:
                                               every rule-group tag the app may read); each tag_group
                                               carries its strategy_id. Rule-group ids come with the
                                               change_external_tag callback (StrategyId), so the strategy
                                               list (customer_strategy/list) is not needed
  externalcontact/add_corp_tag           POST  group_id, or group_name (a new group, or the existing
                                               one of that name); tag names <= 30 chars; a name
                                               already in the group refuses the call (40071)
  externalcontact/add_contact_way        POST  type 1 single / 2 multi, scene 2 = QR code,
                                               state <= 30 chars, <= 100 users
  externalcontact/add_msg_template       POST  chat_type single: external_userid <= 10,000;
                                               group: chat_id_list <= 2,000 (sender required)
  externalcontact/get_groupmsg_list_v2   POST  limit <= 100, cursor
  externalcontact/get_groupmsg_task      POST  limit <= 1,000, cursor
  externalcontact/get_groupmsg_send_result POST limit <= 1,000, cursor
  externalcontact/add_moment_task        POST  -> jobid (asynchronous)
  externalcontact/get_moment_task_result GET   ?jobid= -> status 1 started, 2 running, 3 done
  externalcontact/transfer_customer      POST  in-service handover, <= 100 customers a call,
                                               transfer_success_msg <= 200 chars
  externalcontact/transfer_result        POST  cursor pages of <= 1,000
  externalcontact/resigned/transfer_customer / resigned/transfer_result: same, for resigned members
  externalcontact/groupchat/list         POST  limit 1..1,000, cursor, owner_filter.userid_list
                                               <= 100 (without it WeCom answers 81017 once the app
                                               sees over 1,000 members, and never lists the groups
                                               of resigned members: callers page owners)
  externalcontact/groupchat/get          POST  chat_id, need_name

Client-side limits (WeCom would refuse the call; the adapter acts first):
  * mass messages: more than 10,000 external_userids or 2,000 chat ids are SPLIT into several
    tasks (ids de-duplicated first, so nobody is in two chunks); one msgid per chunk comes back;
  * transfers: more than 100 customers are SPLIT into calls of 100 and the per-customer
    outcomes joined (each customer's handover is independent);
  * batch/get_by_user: a single page refuses more than 100 userids; the iterator splits them;
  * state, remark, description, remark_company, tag and tag group names (30) and transfer message
    lengths are REFUSED with
    `WeComInputError` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from siyu.integrations.channel import (
    ChannelCode,
    ContactDetail,
    ContactPage,
    ContactWithFollow,
    CorpTag,
    CorpTagGroup,
    GroupChat,
    GroupChatSummary,
    GroupMember,
    Page,
)
from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.integrations.wecom.jssdk import WeComJsSdk
from siyu.integrations.wecom.outreach import WeComOutreach
from siyu.integrations.wecom.tokens import redis_token_cache
from siyu.integrations.wecom.transport import (
    DEFAULT_BASE_URL,
    check_length,
    chunks,
    contact_from,
    dedupe,
    follow_from,
    timestamp,
)

__all__ = ["DEFAULT_BASE_URL", "WeComClient", "redis_token_cache"]

MAX_BATCH_USERIDS = 100
MAX_BATCH_LIMIT = 100
MAX_STATE_LENGTH = 30
MAX_REMARK_LENGTH = 20
MAX_DESCRIPTION_LENGTH = 150
MAX_REMARK_COMPANY_LENGTH = 20
MAX_CONTACT_WAY_USERS = 100
MAX_GROUPCHAT_LIMIT = 1_000
MAX_GROUPCHAT_OWNERS = 100
MAX_TAG_NAME_LENGTH = 30
#: add_corp_tag: a tag of that name is already in the group (WeCom refuses the whole call).
TAG_NAME_EXISTS = 40071
#: batch/get_by_user: no member of the call has an interoperability licence (互通许可).
NO_LICENCE = 701008


def _no_pacing(api: str) -> None:
    """The default ``pace`` of calls that make several requests: none."""


class WeComClient(WeComOutreach, WeComJsSdk):
    """WeCom adapter implementing the carrier Protocols of `siyu.integrations.channel`."""

    # --- ContactSync ----------------------------------------------------------------------

    def list_follow_users(self) -> list[str]:
        """Return the userids of members with customer contact enabled."""
        api = "externalcontact/get_follow_user_list"
        data = self._call(api, self.api.external_contact.get_follow_user_list)
        return [str(u) for u in data.get("follow_user", [])]

    def list_external_userids(self, userid: str) -> list[str]:
        """Return the external userids of one member's customers."""
        data = self._call("externalcontact/list", lambda: self.api.external_contact.list(userid))
        return [str(u) for u in data.get("external_userid", [])]

    def list_contacts_by_user(
        self, userids: Sequence[str], cursor: str = "", limit: int = MAX_BATCH_LIMIT
    ) -> ContactPage:
        """Return one page of batch/get_by_user for at most 100 members, with those WeCom would not read."""
        ids = dedupe(userids)
        if not ids:
            raise WeComInputError("userids", "at least one member userid is required")
        if len(ids) > MAX_BATCH_USERIDS:
            raise WeComInputError("userids", f"at most {MAX_BATCH_USERIDS} per page, got {len(ids)}")
        body: dict[str, Any] = {"userid_list": ids, "limit": max(1, min(limit, MAX_BATCH_LIMIT))}
        if cursor:
            body["cursor"] = cursor
        try:
            data = self.post("externalcontact/batch/get_by_user", body)
        except WeComError as exc:
            if exc.errcode != NO_LICENCE:
                raise
            # No member of the call is licensed: WeCom refuses it rather than list them all as unlicensed.
            return ContactPage(items=[], unlicensed=tuple(ids))
        fail_info = data.get("fail_info") or {}
        unlicensed = tuple(str(u) for u in fail_info.get("unlicensed_userid_list") or ())
        items = [
            ContactWithFollow(
                contact=contact_from(e.get("external_contact", {})),
                follow=follow_from(e.get("follow_info", {})),
            )
            for e in data.get("external_contact_list", [])
        ]
        return ContactPage(
            items=items, next_cursor=str(data.get("next_cursor", "") or ""), unlicensed=unlicensed
        )

    def iter_contacts_by_user(
        self, userids: Sequence[str], limit: int = MAX_BATCH_LIMIT
    ) -> Iterator[ContactWithFollow]:
        """Yield every customer of the members, 100 members and one cursor page at a time."""
        for chunk in chunks(dedupe(userids), MAX_BATCH_USERIDS):
            cursor = ""
            while True:
                page = self.list_contacts_by_user(chunk, cursor=cursor, limit=limit)
                yield from page.items
                if not page.next_cursor:
                    break
                cursor = page.next_cursor

    def get_contact(self, external_userid: str, cursor: str = "") -> ContactDetail:
        """Return a customer with one page (<= 500) of their follow users."""
        if not external_userid:
            raise WeComInputError("external_userid", "is required")
        params = {"external_userid": external_userid}
        if cursor:
            params["cursor"] = cursor
        data = self.get("externalcontact/get", params)
        return ContactDetail(
            contact=contact_from(data.get("external_contact", {})),
            follow_users=[follow_from(f) for f in data.get("follow_user", [])],
            next_cursor=str(data.get("next_cursor", "") or ""),
        )

    def get_contact_all_followers(self, external_userid: str) -> ContactDetail:
        """Return a customer with every follow user, following the cursor past 500."""
        first = self.get_contact(external_userid)
        followers = list(first.follow_users)
        cursor = first.next_cursor
        while cursor:
            page = self.get_contact(external_userid, cursor=cursor)
            followers.extend(page.follow_users)
            cursor = page.next_cursor
        return ContactDetail(contact=first.contact, follow_users=followers)

    # --- tags and remarks -------------------------------------------------------------------

    def list_corp_tags(
        self, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> list[CorpTagGroup]:
        """Return the enterprise tag library, optionally filtered."""
        body: dict[str, Any] = {}
        if tag_ids:
            body["tag_id"] = list(tag_ids)
        if group_ids:
            body["group_id"] = list(group_ids)
        data = self.post("externalcontact/get_corp_tag_list", body)
        return [_corp_tag_group(g) for g in data.get("tag_group", [])]

    def list_strategy_tags(
        self, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = (), strategy_id: int | None = None
    ) -> list[CorpTagGroup]:
        """Return the rule-group tags (规则组标签), optionally of one rule group or filtered by tag/group."""
        body: dict[str, Any] = {}
        if strategy_id:
            body["strategy_id"] = strategy_id
        if tag_ids:
            body["tag_id"] = list(tag_ids)
        if group_ids:
            body["group_id"] = list(group_ids)
        data = self.post("externalcontact/get_strategy_tag_list", body)
        return [_corp_tag_group(g) for g in data.get("tag_group", [])]

    def add_corp_tag(
        self,
        names: Sequence[str],
        *,
        group_id: str = "",
        group_name: str = "",
        pace: Callable[[str], object] = _no_pacing,
    ) -> CorpTagGroup:
        """Create the named tags in the group ``group_id``, or else in the group named ``group_name`` (WeCom
        makes it when missing); names already in the group answer their existing ids. ``pace(api)`` runs
        before each request (a pacer's acquire)."""
        wanted = dedupe(names)
        if not wanted:
            raise WeComInputError("names", "at least one tag name is required")
        if not group_id and not group_name:
            raise WeComInputError("group_name", "give group_id or group_name")
        if not group_id:
            check_length("group_name", group_name, MAX_TAG_NAME_LENGTH)
        for name in wanted:
            check_length("names", name, MAX_TAG_NAME_LENGTH)
        try:
            pace("externalcontact/add_corp_tag")
            return self._add_corp_tag(wanted, group_id, group_name)
        except WeComError as exc:
            if exc.errcode != TAG_NAME_EXISTS:
                raise
            refused = exc
        # WeCom refuses the whole call when one name is already in the group: read the group from the
        # library, take the ids of the names it holds and create only the others.
        pace("externalcontact/get_corp_tag_list")
        groups = self.list_corp_tags(group_ids=[group_id] if group_id else ())
        group = next(
            (
                g
                for g in groups
                if not g.deleted and (g.group_id == group_id if group_id else g.group_name == group_name)
            ),
            None,
        )
        if group is None:
            raise refused
        have = {t.name: t for t in group.tags if not t.deleted}
        missing = [n for n in wanted if n not in have]
        if missing:
            pace("externalcontact/add_corp_tag")
            have.update((t.name, t) for t in self._add_corp_tag(missing, group.group_id, "").tags)
        return CorpTagGroup(
            group_id=group.group_id,
            group_name=group.group_name,
            tags=[have[n] for n in wanted if n in have],
            created_at=group.created_at,
            order=group.order,
        )

    def _add_corp_tag(self, names: list[str], group_id: str, group_name: str) -> CorpTagGroup:
        body: dict[str, Any] = {"tag": [{"name": n} for n in names]}
        if group_id:
            body["group_id"] = group_id
        else:
            body["group_name"] = group_name
        return _corp_tag_group(self.post("externalcontact/add_corp_tag", body).get("tag_group") or {})

    def mark_tag(
        self, userid: str, external_userid: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """Add/remove enterprise tags on a member's customer."""
        if not add and not remove:
            raise WeComInputError("add", "add and remove cannot both be empty")
        self._call(
            "externalcontact/mark_tag",
            lambda: self.api.external_contact.mark_tag(userid, external_userid, list(add), list(remove)),
        )

    def set_remark(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_company: str | None = None,
        remark_mobiles: Sequence[str] | None = None,
    ) -> None:
        """Set a member's remark/description/company/mobiles on a customer."""
        check_length("remark", remark, MAX_REMARK_LENGTH)
        check_length("description", description, MAX_DESCRIPTION_LENGTH)
        check_length("remark_company", remark_company, MAX_REMARK_COMPANY_LENGTH)
        body: dict[str, Any] = {"userid": userid, "external_userid": external_userid}
        if remark is not None:
            body["remark"] = remark
        if description is not None:
            body["description"] = description
        if remark_company is not None:
            body["remark_company"] = remark_company
        if remark_mobiles is not None:
            # WeCom clears the mobiles when given [""]; an empty list would mean "no field".
            body["remark_mobiles"] = list(remark_mobiles) or [""]
        if len(body) == 2:
            raise WeComInputError(
                "remark", "give at least one of remark, description, remark_company, remark_mobiles"
            )
        self.post("externalcontact/remark", body)

    # --- channel codes ----------------------------------------------------------------------

    def create_channel_code(
        self, userids: Sequence[str], state: str, *, remark: str = "", skip_verify: bool = True
    ) -> ChannelCode:
        """Create a QR "contact me" code (scene 2) for the members, tagged with `state`."""
        ids = dedupe(userids)
        if not ids:
            raise WeComInputError("userids", "at least one member userid is required")
        if len(ids) > MAX_CONTACT_WAY_USERS:
            raise WeComInputError(
                "userids", f"at most {MAX_CONTACT_WAY_USERS} members per code, got {len(ids)}"
            )
        if not state:
            raise WeComInputError("state", "is required to attribute customers to a source")
        check_length("state", state, MAX_STATE_LENGTH)
        check_length("remark", remark, 30)
        data = self._call(
            "externalcontact/add_contact_way",
            lambda: self.api.external_contact.add_contact_way(
                type=1 if len(ids) == 1 else 2,
                scene=2,
                remark=remark or None,
                skip_verify=skip_verify,
                state=state,
                user=ids,
            ),
        )
        return ChannelCode(
            config_id=str(data.get("config_id", "")), state=state, qr_code=str(data.get("qr_code", ""))
        )

    # --- groups -----------------------------------------------------------------------------

    def list_groups(
        self,
        *,
        owner_userids: Sequence[str] = (),
        status_filter: int = 0,
        cursor: str = "",
        limit: int = MAX_GROUPCHAT_LIMIT,
    ) -> Page[GroupChatSummary]:
        """Return one page of customer groups, of at most 100 owners when `owner_userids` is given."""
        owners = dedupe(owner_userids)
        if len(owners) > MAX_GROUPCHAT_OWNERS:
            raise WeComInputError(
                "owner_userids", f"at most {MAX_GROUPCHAT_OWNERS} owners per call, got {len(owners)}"
            )
        body: dict[str, Any] = {
            "status_filter": status_filter,
            "limit": max(1, min(limit, MAX_GROUPCHAT_LIMIT)),
        }
        if owners:
            body["owner_filter"] = {"userid_list": owners}
        if cursor:
            body["cursor"] = cursor
        data = self.post("externalcontact/groupchat/list", body)
        items = [
            GroupChatSummary(chat_id=str(g.get("chat_id", "")), status=int(g.get("status", 0)))
            for g in data.get("group_chat_list", [])
        ]
        return Page(items=items, next_cursor=str(data.get("next_cursor", "") or ""))

    def get_group(self, chat_id: str) -> GroupChat:
        """Return one customer group with members and admins."""
        data = self.post("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 1})
        g = data.get("group_chat", {})
        return GroupChat(
            chat_id=str(g.get("chat_id", chat_id)),
            name=str(g.get("name", "")),
            owner=str(g.get("owner", "")),
            created_at=timestamp(g.get("create_time")),
            notice=str(g.get("notice", "")),
            members=[
                GroupMember(
                    userid=str(m.get("userid", "")),
                    type=int(m.get("type", 0)),
                    join_time=timestamp(m.get("join_time")),
                    join_scene=int(m.get("join_scene", 0) or 0),
                    invitor=str((m.get("invitor") or {}).get("userid", "")),
                    group_nickname=str(m.get("group_nickname", "")),
                    name=str(m.get("name", "")),
                    unionid=str(m.get("unionid", "")),
                )
                for m in g.get("member_list", [])
            ],
            admins=[str(a.get("userid", "")) for a in g.get("admin_list", [])],
            member_version=str(g.get("member_version", "")),
        )


def _corp_tag_group(g: dict[str, Any]) -> CorpTagGroup:
    """Build a CorpTagGroup from WeCom's tag_group object (get_corp_tag_list, add_corp_tag,
    get_strategy_tag_list: the last with the group's strategy_id)."""
    return CorpTagGroup(
        strategy_id=int(g["strategy_id"]) if g.get("strategy_id") else None,
        group_id=str(g.get("group_id", "")),
        group_name=str(g.get("group_name", "")),
        created_at=timestamp(g.get("create_time")),
        order=int(g.get("order", 0) or 0),
        deleted=bool(g.get("deleted", False)),
        tags=[
            CorpTag(
                id=str(t.get("id", "")),
                name=str(t.get("name", "")),
                created_at=timestamp(t.get("create_time")),
                order=int(t.get("order", 0) or 0),
                deleted=bool(t.get("deleted", False)),
            )
            for t in g.get("tag", [])
        ],
    )
