"""In-memory state of the fake WeCom server, and a deterministic data generator.

The state models one company (corp): members (成员), external contacts (客户) and the follow
relationships between them, enterprise tags, "contact me" codes (联系我), customer groups,
mass-message tasks, Moments jobs and customer transfers. It also owns the parts of WeCom's
behaviour tests need to control: a clock that can be advanced (token expiry, transfers that
complete 24 h later), access tokens with a configurable TTL, per-API per-minute quotas,
one-shot injected error codes, an IP allow-list and forbidden APIs.

Quotas follow WeCom's 频率限制 page (developer.work.weixin.qq.com/document/path/90312; the limits
10,000 calls a minute and 150,000 an hour per API are the page's, the blocks "1 分钟 / 1 小时" too):
exceeding the per-minute quota blocks the API for 60 s, exceeding the per-hour quota for 3,600 s,
each answered 45009 "api freq out of limit" until the block ends.

A completed in-service hand-over queues del_external_contact with Source=DELETE_BY_TRANSFER for the
handing-over member (UserID), as WeCom's 客户变更事件 page describes the field ("DELETE_BY_TRANSFER表示此
客户是因在职继承自动被转接成员删除"; WxJava's `WxCpXmlMessage.source` and an independent Go client's
`EventDelExternalContact.Source` carry the same sentence). A failed one queues
transfer_fail with FailReason customer_refused / customer_limit_exceed.

Everything here is plain Python guarded by one re-entrant lock; `fake_api.py` turns HTTP
requests into calls on it and `fake_server.py` serves them. `generate()` builds 100,000
contacts in a couple of seconds from a seed, always the same for the same seed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

#: errmsg texts WeCom uses for the codes the fake can answer.
ERRMSG: dict[int, str] = {
    -1: "system busy",
    40001: "invalid credential",
    40003: "invalid userid",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40050: "chatid not found",
    40058: "invalid Request Parameter",
    40068: "invalid tagid",
    40071: "UserTag Name Already Exist",
    40096: "invalid external userid",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    42001: "access_token expired",
    45009: "api freq out of limit",
    47001: "data format error",
    45033: "api concurrent out of limit",
    48002: "api forbidden",
    60011: "no privilege to access/modify contact/party/agent",
    60020: "not allow to access from your ip",
    60111: "userid not found",
    84061: "not external contact",
    84074: "no external contact permission",
    40128: "customer transfer too frequent",
    40029: "invalid code",
    41008: "missing code",
    41050: "welcome code expired",
    41051: "externaluser has started chatting",
    90500: "the owner of this chat is not resigned",
    90502: "the owner of this chat has resigned",
    90504: "the new owner is already the owner",
    701008: "no valid interoperability license",
    81017: "too many visible users, owner_filter is required",
}

#: What a newcomer enters on siyu's WeCom settings page to connect to a fake started with the defaults.
DEFAULT_CORP_ID = "wwfake0000000001"
DEFAULT_SECRET = "fake-customer-contact-secret"
DEFAULT_CALLBACK_TOKEN = "siyufaketoken"
DEFAULT_CALLBACK_AES_KEY = "SiyuFakeCallbackKey0123456789abcdefghijklmn"  # 43 characters, as WeCom's

#: send_welcome_msg accepts a WelcomeCode this long after its add event (then 41050).
WELCOME_CODE_SECONDS = 20
TRANSFER_DELAY_SECONDS = 24 * 3600  # WeCom hands customers over 24 h after the request
#: WeCom's default cap on how many customers (friends) one member may have.
DEFAULT_CUSTOMER_LIMIT = 50_000
#: In service, a customer may be handed over at most this many times in TRANSFER_WINDOW_SECONDS.
MAX_TRANSFERS_IN_WINDOW = 2
TRANSFER_WINDOW_SECONDS = 90 * 24 * 3600


class ApiError(Exception):
    """An error the fake answers as `{"errcode": N, "errmsg": ...}`."""

    def __init__(self, errcode: int, detail: str = "") -> None:
        self.errcode = errcode
        self.detail = detail
        base = ERRMSG.get(errcode, "error")
        self.errmsg = f"{base}: {detail}" if detail else base
        super().__init__(self.errmsg)


def encode_cursor(*parts: int) -> str:
    """Make an opaque cursor from integers."""
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[int]:
    """Read a cursor made by `encode_cursor`; an empty cursor is all zeros."""
    if not cursor:
        return [0] * size
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded))
        if (
            not isinstance(parts, list)
            or len(parts) != size
            or not all(isinstance(p, int) and p >= 0 for p in parts)
        ):
            raise ValueError(cursor)
    except ValueError as exc:
        raise ApiError(40058, "invalid cursor") from exc
    return parts


@dataclass(slots=True)
class Member:
    """A company member; only members with customer contact enabled can have customers."""

    userid: str
    name: str
    active: bool = True
    customer_contact: bool = True


@dataclass(slots=True)
class Contact:
    """An external contact (customer)."""

    external_userid: str
    name: str
    type: int = 1
    gender: int = 0
    avatar: str = ""
    unionid: str = ""
    corp_name: str = ""
    corp_full_name: str = ""
    position: str = ""

    def to_api(self) -> dict[str, Any]:
        """Render as WeCom's `external_contact` object."""
        out: dict[str, Any] = {
            "external_userid": self.external_userid,
            "name": self.name,
            "type": self.type,
            "gender": self.gender,
            "avatar": self.avatar,
        }
        if self.unionid:
            out["unionid"] = self.unionid
        if self.type == 2:
            out.update(corp_name=self.corp_name, corp_full_name=self.corp_full_name, position=self.position)
        return out


@dataclass(slots=True)
class Follow:
    """A member's relationship to a customer (follow_info / follow_user)."""

    userid: str
    createtime: int
    remark: str = ""
    description: str = ""
    tag_ids: list[str] = field(default_factory=list)
    remark_corp_name: str = ""
    remark_mobiles: list[str] = field(default_factory=list)
    add_way: int = 1
    state: str = ""
    oper_userid: str = ""


@dataclass(slots=True)
class Tag:
    """An enterprise customer tag."""

    id: str
    name: str
    create_time: int
    order: int = 0


@dataclass(slots=True)
class TagGroup:
    """A group of enterprise customer tags; a rule-group tag group (规则组标签) has its rule group's
    ``strategy_id`` (0 for the corp library's own groups)."""

    group_id: str
    group_name: str
    create_time: int
    order: int = 0
    tags: list[Tag] = field(default_factory=list)
    strategy_id: int = 0


@dataclass(slots=True)
class ContactWay:
    """A "contact me" configuration; scans are routed round-robin over its users."""

    config_id: str
    type: int
    scene: int
    users: list[str]
    state: str = ""
    remark: str = ""
    skip_verify: bool = True
    qr_code: str = ""
    next_index: int = 0


@dataclass(slots=True)
class GroupChatState:
    """A customer group."""

    chat_id: str
    name: str
    owner: str
    create_time: int
    notice: str = ""
    members: list[dict[str, Any]] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)
    status: int = 0
    version: int = 1


@dataclass(slots=True)
class MassMessage:
    """A mass-message task with per-member tasks and per-recipient results."""

    msgid: str
    chat_type: str
    creator: str
    create_type: int
    create_time: int
    text: str
    attachments: list[dict[str, Any]]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(slots=True)
class MomentJob:
    """An asynchronous add_moment_task job."""

    jobid: str
    created: float
    moment_id: str
    invalid_senders: list[str]
    invalid_tags: list[str]


@dataclass(slots=True)
class Transfer:
    """One customer's handover between two members."""

    external_userid: str
    handover: str
    takeover: str
    resigned: bool
    status: int  # 1 done, 2 waiting, 3 refused, 4 takeover full
    takeover_time: int
    requested_time: int = 0
    fail_reason: str = ""  # transfer_fail's FailReason: customer_refused / customer_limit_exceed


_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鑫斌浩宇欣怡子涵梓萱一诺"
_STATES = ("douyin_live", "taobao_card", "jd_card", "offline_flyer", "referral", "zhihu", "xhs_note", "")
_TAG_GROUPS = {
    "意向": ["高意向", "中意向", "低意向"],
    "阶段": ["新客", "首单", "复购", "沉睡"],
    "来源": ["抖音", "淘宝", "京东", "线下", "转介绍"],
}


class FakeWeComState:
    """Everything the fake WeCom server knows, plus its clock, tokens, quotas and faults."""

    def __init__(
        self,
        corp_id: str = DEFAULT_CORP_ID,
        secret: str = DEFAULT_SECRET,
        *,
        token_ttl: int = 7200,
        callback_token: str = DEFAULT_CALLBACK_TOKEN,
        callback_aes_key: str = DEFAULT_CALLBACK_AES_KEY,
    ) -> None:
        self.lock = threading.RLock()
        self.corp_id = corp_id
        self.secret = secret  # the one a newcomer is told to enter; `secrets` may hold more
        self.secrets = {secret}
        #: The callback Token and EncodingAESKey this company's admin console shows (used when a callback
        #: receiver is configured with a URL alone).
        self.callback_token = callback_token
        self.callback_aes_key = callback_aes_key
        self.token_ttl = token_ttl
        self.clock_offset = 0.0
        self.tokens: dict[str, tuple[str, float]] = {}
        self.rate_limits: dict[str, int] = {}
        self.default_rate_limit: int | None = None
        #: Calls an hour per API (WeCom: 150,000); None = unlimited, as tests usually want.
        self.hourly_rate_limits: dict[str, int] = {}
        self._rate_counts: dict[tuple[str, int], int] = {}
        self._hour_counts: dict[tuple[str, int], int] = {}
        #: api -> fake time until which WeCom refuses it (45009) after a limit was exceeded.
        self.blocked: dict[str, float] = {}
        self.faults: dict[str, deque[int]] = {}
        self.allowed_ips: set[str] | None = None
        self.forbidden_apis: set[str] = set()
        #: Members without an interoperability licence (互通许可): batch/get_by_user leaves them out.
        self.unlicensed: set[str] = set()
        self.calls: deque[dict[str, Any]] = deque(maxlen=20_000)
        self.members: dict[str, Member] = {}
        self.contacts: dict[str, Contact] = {}
        self.follows: dict[str, dict[str, Follow]] = {}
        self.by_user: dict[str, list[str]] = {}
        self._by_user_seen: dict[str, set[str]] = {}
        self.tag_groups: dict[str, TagGroup] = {}
        self.tag_index: dict[str, tuple[TagGroup, Tag]] = {}
        self.contact_ways: dict[str, ContactWay] = {}
        self.groups: dict[str, GroupChatState] = {}
        self.mass_messages: dict[str, MassMessage] = {}
        self.moment_jobs: dict[str, MomentJob] = {}
        self.moment_delay = 0.0
        #: Seconds an API takes to answer (per API name), so tests can see calls overlap.
        self.latency: dict[str, float] = {}
        self.transfers: list[Transfer] = []
        self.customer_limits: dict[str, int] = {}  # per-member caps below DEFAULT_CUSTOMER_LIMIT
        #: Callback fields produced by a state change made inside a synchronous call (a transfer
        #: that failed when the clock moved); the control API sends them (see fake_control.flush_events).
        self.pending_events: list[dict[str, Any]] = []
        self.callback: dict[str, str] = {}
        self.outbox: list[dict[str, Any]] = []
        self.welcome_messages: list[dict[str, Any]] = []  # externalcontact/send_welcome_msg calls accepted
        # Pages inside the WeCom client (fake_jssdk.py): OAuth2 codes -> (userid, expiry), the member signed
        # in to the client and the chat they have open, and what sendChatMessage put into chats.
        self.oauth_codes: dict[str, tuple[str, float]] = {}
        self.client_view: dict[str, str] = {}
        self.chat_messages: list[dict[str, Any]] = []
        self.welcome_codes: dict[str, float] = {}  # WelcomeCode -> when its add event was made
        self._seq = 0

    # --- clock, ids ---------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock: wall time plus whatever tests advanced it by."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (expires tokens, resets quotas, completes transfers)."""
        with self.lock:
            self.clock_offset += seconds
            self.settle_transfers()

    def next_id(self, prefix: str, length: int = 32) -> str:
        """A unique id in WeCom's style: prefix + deterministic filler of `length` chars."""
        self._seq += 1
        digest = hashlib.sha1(f"{self.corp_id}:{prefix}:{self._seq}".encode()).hexdigest()
        return (prefix + digest)[:length]

    def issue_welcome_code(self) -> str:
        """A WelcomeCode for an add event, valid WELCOME_CODE_SECONDS from now."""
        code = secrets.token_urlsafe(16)
        self.welcome_codes[code] = self.now()
        return code

    # --- tokens, quotas, faults ----------------------------------------------------------

    def issue_token(self, corpid: str | None, secret: str | None) -> tuple[str, int]:
        """Answer gettoken: reuse the live token of this secret, or issue a new one."""
        if not corpid:
            raise ApiError(41002)
        if corpid != self.corp_id:
            raise ApiError(40013)
        if not secret:
            raise ApiError(41004)
        if secret not in self.secrets:
            raise ApiError(40001)
        now = self.now()
        for token, (owner, expires_at) in self.tokens.items():
            if owner == secret and expires_at > now:
                # WeCom returns the same token while it is valid; the fake reports its remaining life.
                return token, int(expires_at - now)
        token = secrets.token_urlsafe(48)
        self.tokens[token] = (secret, now + self.token_ttl)
        return token, self.token_ttl

    def check_token(self, token: str | None) -> None:
        """Raise the error WeCom gives for a missing, unknown or expired token."""
        if not token:
            raise ApiError(41001)
        entry = self.tokens.get(token)
        if entry is None:
            raise ApiError(40014)
        if entry[1] <= self.now():
            raise ApiError(42001)

    def expire_tokens(self) -> int:
        """Invalidate every token at once (WeCom may do so before expires_in)."""
        with self.lock:
            count = len(self.tokens)
            now = self.now()
            self.tokens = {t: (s, min(e, now)) for t, (s, e) in self.tokens.items()}
            return count

    def check_gate(self, api: str, client_ip: str) -> None:
        """Apply IP allow-list, forbidden APIs, injected faults and per-minute quotas."""
        if self.allowed_ips is not None and client_ip not in self.allowed_ips:
            raise ApiError(60020, f"from ip: {client_ip}")
        if api in self.forbidden_apis:
            raise ApiError(48002)
        for key in (api, "*"):
            queue = self.faults.get(key)
            if queue:
                raise ApiError(queue.popleft())
        now = self.now()
        if self.blocked.get(api, 0.0) > now:
            raise ApiError(45009, "blocked")
        # WeCom blocks an API for a minute once it exceeds its per-minute quota, for an hour once it
        # exceeds its per-hour quota; both answer 45009.
        for quotas, counts, span, block in (
            (self.hourly_rate_limits, self._hour_counts, 3600, 3600.0),
            (self.rate_limits, self._rate_counts, 60, 60.0),
        ):
            quota = quotas.get(api, self.default_rate_limit if span == 60 else None)
            if quota is None:
                continue
            window = int(now // span)
            count = counts.get((api, window), 0)
            if count >= quota:
                self.blocked[api] = now + block
                raise ApiError(45009)
            if len(counts) > 10_000:
                for stale in [k for k in counts if k[1] < window]:
                    del counts[stale]
            counts[(api, window)] = count + 1

    def inject_faults(self, api: str, errcodes: list[int]) -> None:
        """Make the next calls to `api` ("*" for any) answer these errcodes, in order."""
        with self.lock:
            self.faults.setdefault(api, deque()).extend(int(c) for c in errcodes)

    def record_call(self, api: str, errcode: int, body: dict[str, Any] | None) -> None:
        """Remember a call for `/_control/calls` (with the request's list sizes, not contents)."""
        sizes = {k: len(v) for k, v in (body or {}).items() if isinstance(v, list)}
        self.calls.append({"api": api, "errcode": errcode, "at": self.now(), "sizes": sizes})

    # --- members, contacts, follows --------------------------------------------------------

    def add_member(
        self, userid: str, name: str = "", *, active: bool = True, customer_contact: bool = True
    ) -> Member:
        """Create or update a member."""
        if not userid:
            raise ApiError(40003, "userid is required")
        with self.lock:
            member = Member(
                userid=userid, name=name or userid, active=active, customer_contact=customer_contact
            )
            self.members[userid] = member
            self.by_user.setdefault(userid, [])
            self._by_user_seen.setdefault(userid, set())
            return member

    def member(self, userid: str | None) -> Member:
        """Return a member or raise 40003."""
        member = self.members.get(userid or "")
        if member is None:
            raise ApiError(40003, f"userid {userid!r}")
        return member

    def add_contact(self, contact: Contact) -> Contact:
        """Create or replace an external contact's profile."""
        with self.lock:
            self.contacts[contact.external_userid] = contact
            self.follows.setdefault(contact.external_userid, {})
            return contact

    def add_follow(self, external_userid: str, follow: Follow) -> Follow:
        """Make `follow.userid` follow the customer (replacing an existing relationship)."""
        with self.lock:
            self.member(follow.userid)
            if external_userid not in self.contacts:
                raise ApiError(40096, external_userid)
            self.follows[external_userid][follow.userid] = follow
            seen = self._by_user_seen.setdefault(follow.userid, set())
            if external_userid not in seen:
                seen.add(external_userid)
                self.by_user.setdefault(follow.userid, []).append(external_userid)
            return follow

    def remove_follow(self, external_userid: str, userid: str) -> Follow:
        """End a relationship (either side deleted the other)."""
        with self.lock:
            follow = self.follows.get(external_userid, {}).pop(userid, None)
            if follow is None:
                raise ApiError(84061, f"{external_userid} / {userid}")
            return follow

    def follow(self, external_userid: str | None, userid: str | None) -> Follow:
        """Return a live relationship or raise 84061 (or 40096 for an unknown contact)."""
        if not external_userid or external_userid not in self.contacts:
            raise ApiError(40096, str(external_userid))
        found = self.follows[external_userid].get(userid or "")
        if found is None:
            raise ApiError(84061, f"{external_userid} / {userid}")
        return found

    # --- tags ----------------------------------------------------------------------------

    def add_tag_group(
        self, group_name: str, tag_names: list[str], *, group_id: str = "", tag_ids: list[str] | None = None
    ) -> TagGroup:
        """Create a tag group with tags (ids generated unless given)."""
        with self.lock:
            now = int(self.now())
            group = TagGroup(
                group_id=group_id or self.next_id("et", 32), group_name=group_name, create_time=now
            )
            for i, name in enumerate(tag_names):
                tag_id = (tag_ids or [])[i] if tag_ids and i < len(tag_ids) else self.next_id("et", 32)
                tag = Tag(id=tag_id, name=name, create_time=now, order=i)
                group.tags.append(tag)
                self.tag_index[tag.id] = (group, tag)
            self.tag_groups[group.group_id] = group
            return group

    def add_corp_tag(self, group_id: str, group_name: str, tags: list[tuple[str, int]]) -> TagGroup:
        """WeCom's add_corp_tag: tags (name, order) appended to the group ``group_id`` (40068 when unknown),
        else to the group named ``group_name``, made when missing. A name already in the group refuses the
        whole call (40071); a name given twice is created once. Answers the group with the new tags."""
        with self.lock:
            if group_id:
                group = self.tag_groups.get(group_id)
                if group is None:
                    raise ApiError(40068, group_id)
            else:
                group = next((g for g in self.tag_groups.values() if g.group_name == group_name), None)
            have = {t.name for t in group.tags} if group is not None else set()
            clash = [name for name, _ in tags if name in have]
            if clash:
                raise ApiError(40071, clash[0])
            now = int(self.now())
            if group is None:
                group = TagGroup(group_id=self.next_id("et", 32), group_name=group_name, create_time=now)
                self.tag_groups[group.group_id] = group
            created: list[Tag] = []
            for name, order in tags:
                if any(t.name == name for t in created):
                    continue
                tag = Tag(id=self.next_id("et", 32), name=name, create_time=now, order=order)
                group.tags.append(tag)
                self.tag_index[tag.id] = (group, tag)
                created.append(tag)
            return TagGroup(group.group_id, group.group_name, group.create_time, group.order, created)

    def delete_corp_tag(self, tag_id: str) -> None:
        """Delete a tag from the library and from every customer (40068 when unknown)."""
        with self.lock:
            found = self.tag_index.pop(tag_id, None)
            if found is None:
                raise ApiError(40068, tag_id)
            group, tag = found
            group.tags.remove(tag)
            for follows in self.follows.values():
                for follow in follows.values():
                    if tag_id in follow.tag_ids:
                        follow.tag_ids = [t for t in follow.tag_ids if t != tag_id]

    # --- rule-group tags (规则组标签) ---------------------------------------------------------------

    def _tag_event(self, change: str, tag_id: str, tag_type: str, strategy_id: int) -> None:
        self.pending_events.append(
            {
                "Event": "change_external_tag",
                "ChangeType": change,
                "Id": tag_id,
                "TagType": tag_type,
                "StrategyId": strategy_id,
            }
        )

    def add_strategy_tags(
        self, strategy_id: int, tag_names: list[str], *, group_id: str = "", group_name: str = ""
    ) -> TagGroup:
        """An admin adds rule-group tags: to the group ``group_id`` of that rule group (40068 when it is no
        such group), else to a new group named ``group_name``. Queues change_external_tag create with
        StrategyId: one tag_group event for a new group, one tag event per tag added to an existing one."""
        if strategy_id <= 0:
            raise ApiError(40058, "strategy_id must be a positive rule group id")
        with self.lock:
            now = int(self.now())
            if group_id:
                group = self.tag_groups.get(group_id)
                if group is None or group.strategy_id != strategy_id:
                    raise ApiError(40068, group_id)
                new_group = False
            else:
                if not group_name:
                    raise ApiError(40058, "group_name is required for a new group")
                group = TagGroup(
                    self.next_id("et", 32),
                    group_name,
                    now,
                    order=len(self.tag_groups),
                    strategy_id=strategy_id,
                )
                self.tag_groups[group.group_id] = group
                new_group = True
            for name in tag_names:
                if any(t.name == name for t in group.tags):
                    raise ApiError(40071, name)
                tag = Tag(id=self.next_id("et", 32), name=name, create_time=now, order=len(group.tags))
                group.tags.append(tag)
                self.tag_index[tag.id] = (group, tag)
                if not new_group:
                    self._tag_event("create", tag.id, "tag", strategy_id)
            if new_group:
                self._tag_event("create", group.group_id, "tag_group", strategy_id)
            return group

    def edit_strategy_tag(self, tag_or_group_id: str, name: str) -> None:
        """An admin renames a rule-group tag or tag group; queues change_external_tag update (TagType tag
        or tag_group) with StrategyId. 40068 when it is no rule-group tag or group."""
        with self.lock:
            group = self.tag_groups.get(tag_or_group_id)
            if group is not None and group.strategy_id:
                group.group_name = name
                self._tag_event("update", group.group_id, "tag_group", group.strategy_id)
                return
            found = self.tag_index.get(tag_or_group_id)
            if found is None or not found[0].strategy_id:
                raise ApiError(40068, tag_or_group_id)
            found[1].name = name
            self._tag_event("update", found[1].id, "tag", found[0].strategy_id)

    def delete_strategy_tags(self, tag_ids: list[str], group_ids: list[str]) -> None:
        """An admin deletes rule-group tags or whole groups: gone from the library and from every customer.
        Queues change_external_tag delete with StrategyId, one event per tag or group named; a group whose
        last tag is deleted goes too (no event of its own). 40068 for an id that is no rule-group one."""
        with self.lock:
            doomed: list[str] = []
            for gid in group_ids:
                group = self.tag_groups.get(gid)
                if group is None or not group.strategy_id:
                    raise ApiError(40068, gid)
            for tid in tag_ids:
                found = self.tag_index.get(tid)
                if found is None or not found[0].strategy_id:
                    raise ApiError(40068, tid)
            for gid in group_ids:
                group = self.tag_groups.pop(gid)
                doomed += [t.id for t in group.tags]
                for t in group.tags:
                    self.tag_index.pop(t.id, None)
                self._tag_event("delete", gid, "tag_group", group.strategy_id)
            for tid in tag_ids:
                found = self.tag_index.pop(tid, None)
                if found is None:  # its group was deleted above
                    continue
                group, tag = found
                group.tags.remove(tag)
                doomed.append(tid)
                self._tag_event("delete", tid, "tag", group.strategy_id)
                if not group.tags:
                    self.tag_groups.pop(group.group_id, None)
            gone = set(doomed)
            for follows in self.follows.values():
                for follow in follows.values():
                    if gone.intersection(follow.tag_ids):
                        follow.tag_ids = [t for t in follow.tag_ids if t not in gone]

    # --- transfers -------------------------------------------------------------------------

    def customer_limit(self, userid: str) -> int:
        """How many customers the member may have (WeCom's default unless a test lowered it)."""
        return self.customer_limits.get(userid, DEFAULT_CUSTOMER_LIMIT)

    def customer_count(self, userid: str) -> int:
        """How many customers the member follows now."""
        return sum(1 for eid in self.by_user.get(userid, []) if userid in self.follows.get(eid, {}))

    def _transfer_failed(self, t: Transfer, status: int, reason: str) -> None:
        """End a waiting handover without moving anyone, and queue WeCom's transfer_fail callback.

        The callback names the takeover member (UserID) and the customer, as WeCom's does; it does
        not say which handover it was, so receivers must match it or ask transfer_result."""
        t.status, t.fail_reason = status, reason
        self.pending_events.append(
            {
                "Event": "change_external_contact",
                "ChangeType": "transfer_fail",
                "FailReason": reason,
                "UserID": t.takeover,
                "ExternalUserID": t.external_userid,
            }
        )

    def settle_transfers(self) -> None:
        """Complete waiting handovers whose time has come (moves the follow relationship).

        A takeover member at their customer limit gets status 4 and the customer stays with the
        handover member (WeCom: 接替成员客户达到上限)."""
        now = self.now()
        counts: dict[str, int] = {}
        for t in self.transfers:
            if t.status != 2 or t.takeover_time > now:
                continue
            if t.takeover not in counts:
                counts[t.takeover] = self.customer_count(t.takeover)
            already = t.takeover in self.follows.get(t.external_userid, {})
            if not already and counts[t.takeover] >= self.customer_limit(t.takeover):
                self._transfer_failed(t, 4, "customer_limit_exceed")
                continue
            old = self.follows.get(t.external_userid, {}).pop(t.handover, None)
            if old is not None and t.takeover in self.members:
                moved = Follow(
                    userid=t.takeover,
                    createtime=t.takeover_time,
                    remark=old.remark,
                    description=old.description,
                    tag_ids=list(old.tag_ids),
                    remark_corp_name=old.remark_corp_name,
                    remark_mobiles=list(old.remark_mobiles),
                    add_way=old.add_way,
                    state=old.state,
                    oper_userid=t.takeover,
                )
                self.follows[t.external_userid].setdefault(t.takeover, moved)
                seen = self._by_user_seen.setdefault(t.takeover, set())
                if t.external_userid not in seen:
                    seen.add(t.external_userid)
                    self.by_user.setdefault(t.takeover, []).append(t.external_userid)
                if not already:
                    counts[t.takeover] += 1
                if not t.resigned:
                    # WeCom tells the handing-over member's app that the customer left them, marked as a
                    # hand-over (在职继承) rather than a deletion.
                    self.pending_events.append(
                        {
                            "Event": "change_external_contact",
                            "ChangeType": "del_external_contact",
                            "UserID": t.handover,
                            "ExternalUserID": t.external_userid,
                            "Source": "DELETE_BY_TRANSFER",
                        }
                    )
            t.status = 1

    def refuse_transfer(self, external_userid: str, handover: str = "", takeover: str = "") -> Transfer:
        """The customer taps 暂不添加 within the 24 hours: status 3, the customer stays where they were."""
        with self.lock:
            self.settle_transfers()
            waiting = [
                t
                for t in self.transfers
                if t.status == 2
                and t.external_userid == external_userid
                and (not handover or t.handover == handover)
                and (not takeover or t.takeover == takeover)
            ]
            if not waiting:
                raise ApiError(40058, f"no waiting transfer of {external_userid}")
            if len(waiting) > 1:
                raise ApiError(
                    40058, f"{len(waiting)} waiting transfers of {external_userid}; name handover_userid"
                )
            self._transfer_failed(waiting[0], 3, "customer_refused")
            return waiting[0]

    def recent_transfer_count(self, external_userid: str) -> int:
        """In-service handovers of a customer WeCom accepted in the last 90 days, whatever their outcome."""
        since = self.now() - TRANSFER_WINDOW_SECONDS
        return sum(
            1
            for t in self.transfers
            if t.external_userid == external_userid and not t.resigned and t.requested_time > since
        )

    # --- generator -------------------------------------------------------------------------

    def generate(
        self,
        *,
        members: int = 10,
        contacts: int = 1000,
        seed: int = 1,
        max_followers: int = 2,
        groups: int = 0,
    ) -> dict[str, int]:
        """Add a deterministic population: same seed, same members, contacts, tags and groups."""
        if members < 1 or contacts < 0 or max_followers < 1 or groups < 0:
            raise ApiError(40058, "members >= 1, contacts >= 0, max_followers >= 1, groups >= 0")
        rng = random.Random(seed)
        with self.lock:
            if not self.tag_groups:
                for name, tags in _TAG_GROUPS.items():
                    self.add_tag_group(name, tags)
            tag_ids = list(self.tag_index)
            userids = [f"seed{seed}_u{i:04d}" for i in range(1, members + 1)]
            for userid in userids:
                self.add_member(userid, rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN))
            now = int(self.now())
            year = 365 * 24 * 3600
            follows = 0
            # Index arithmetic on rng.random() instead of choice/sample/randint: 100,000 contacts
            # must generate in about a second, and determinism only needs one seeded stream.
            r = rng.random
            n_users, n_tags, n_sur, n_given, n_states = (
                len(userids),
                len(tag_ids),
                len(_SURNAMES),
                len(_GIVEN),
                len(_STATES),
            )
            max_k = min(n_users, max_followers)
            for i in range(contacts):
                digest = hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()
                eid = "wm" + digest[:30]
                name = _SURNAMES[int(r() * n_sur)] + _GIVEN[int(r() * n_given)]
                if r() < 0.6:
                    name += _GIVEN[int(r() * n_given)]
                contact = Contact(
                    external_userid=eid,
                    name=name,
                    type=1 if r() < 0.95 else 2,
                    gender=int(r() * 3),
                    avatar=f"https://wework.qpic.cn/fake/{eid}/0",
                    unionid="oz" + digest[30:40] + digest[:16],
                )
                if contact.type == 2:
                    contact.corp_name, contact.corp_full_name, contact.position = (
                        "某公司",
                        "某某科技有限公司",
                        "经理",
                    )
                self.contacts[eid] = contact
                followers: dict[str, Follow] = {}
                self.follows[eid] = followers
                first = int(r() * n_users)
                for j in range(1 + int(r() * max_k)):
                    userid = userids[(first + j) % n_users]
                    state = _STATES[int(r() * n_states)]
                    t0 = int(r() * n_tags)
                    followers[userid] = Follow(
                        userid=userid,
                        createtime=now - int(r() * year),
                        tag_ids=[tag_ids[(t0 + t) % n_tags] for t in range(int(r() * 3))],
                        add_way=1 if state else int(r() * 4),
                        state=state,
                        oper_userid=userid if r() < 0.5 else eid,
                    )
                    self._by_user_seen[userid].add(eid)
                    self.by_user[userid].append(eid)
                    follows += 1
            for g in range(groups):
                owner = rng.choice(userids)
                chat_id = "wr" + hashlib.sha1(f"g{seed}:{g}".encode()).hexdigest()[:30]
                picked = rng.sample(
                    sorted(self.by_user[owner]), k=min(len(self.by_user[owner]), rng.randint(1, 50))
                )
                members_list = [{"userid": owner, "type": 1, "join_time": now - year, "join_scene": 1}]
                members_list += [
                    {
                        "userid": e,
                        "type": 2,
                        "join_time": now - rng.randint(0, year),
                        "join_scene": rng.choice((1, 2, 3)),
                        "invitor": {"userid": owner},
                        "unionid": self.contacts[e].unionid,
                    }
                    for e in picked
                ]
                self.groups[chat_id] = GroupChatState(
                    chat_id=chat_id,
                    name=f"客户群{g + 1}",
                    owner=owner,
                    create_time=now - year,
                    members=members_list,
                    admins=[],
                )
            return {"members": len(userids), "contacts": contacts, "follows": follows, "groups": groups}
