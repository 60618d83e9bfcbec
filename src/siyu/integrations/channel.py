"""Carrier capabilities as `typing.Protocol`s, with the plain DTOs they exchange.

Every carrier adapter (WeCom, the sandbox, Douyin where it applies) implements the subset of
these Protocols its platform supports. Domain code depends on the Protocols only, never on an
adapter module, and tests substitute an in-memory implementation or a real HTTP fake server.

The DTOs are frozen dataclasses of builtin types: no ORM objects, no pydantic models, and no
import of any siyu domain package. Times are timezone-aware UTC `datetime`s; a platform value
of 0 ("not yet") becomes `None`.

Field vocabulary follows WeCom customer contact (客户联系) because it is the richest carrier;
other carriers fill what they have and leave the rest at the defaults.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a cursor-paged listing; `next_cursor` is empty on the last page."""

    items: list[T]
    next_cursor: str = ""

    @property
    def has_more(self) -> bool:
        """Whether another page can be fetched with `next_cursor`."""
        return bool(self.next_cursor)


# --- contacts -------------------------------------------------------------------------------


class ContactType(IntEnum):
    """Kind of external contact: a personal WeChat user or a WeCom user of another company."""

    WECHAT = 1
    WECOM = 2


@dataclass(frozen=True, slots=True)
class ExternalContact:
    """A customer as the carrier describes them, independent of who follows them."""

    external_userid: str
    name: str
    type: int = ContactType.WECHAT
    gender: int = 0  # 0 unknown, 1 male, 2 female
    avatar: str = ""
    unionid: str = ""
    corp_name: str = ""
    corp_full_name: str = ""
    position: str = ""


@dataclass(frozen=True, slots=True)
class FollowInfo:
    """The relationship between one operator (member) and one customer."""

    userid: str
    remark: str = ""
    description: str = ""
    created_at: datetime | None = None
    tag_ids: tuple[str, ...] = ()
    remark_corp_name: str = ""
    remark_mobiles: tuple[str, ...] = ()
    add_way: int = 0
    state: str = ""
    oper_userid: str = ""


@dataclass(frozen=True, slots=True)
class ContactWithFollow:
    """A customer together with the relationship to the member whose list returned it."""

    contact: ExternalContact
    follow: FollowInfo


@dataclass(frozen=True, slots=True)
class ContactDetail:
    """A customer with every member following them (all pages joined when complete)."""

    contact: ExternalContact
    follow_users: list[FollowInfo]
    next_cursor: str = ""


@dataclass(frozen=True, slots=True)
class ContactPage(Page[ContactWithFollow]):
    """A page of customers with follow info, and the members the carrier would not read.

    `unlicensed`: members of the request whose customers were not returned because they lack the
    carrier's licence to reach customers (WeCom's 互通许可); their relations are unknown, not gone."""

    unlicensed: tuple[str, ...] = ()


@runtime_checkable
class ContactSync(Protocol):
    """Read the customers of the organization, per operator, with paging."""

    def list_follow_users(self) -> list[str]:
        """Return the userids of members allowed to have customers."""
        ...

    def list_external_userids(self, userid: str) -> list[str]:
        """Return the external userids of one member's customers."""
        ...

    def list_contacts_by_user(
        self, userids: Sequence[str], cursor: str = "", limit: int = 100
    ) -> ContactPage:
        """Return one page of customers (with follow info) of the given members."""
        ...

    def iter_contacts_by_user(self, userids: Sequence[str], limit: int = 100) -> Iterator[ContactWithFollow]:
        """Yield every customer of the given members, following cursors to the end."""
        ...

    def get_contact(self, external_userid: str, cursor: str = "") -> ContactDetail:
        """Return one customer and one page of their follow users."""
        ...

    def get_contact_all_followers(self, external_userid: str) -> ContactDetail:
        """Return one customer with all of their follow users (every page)."""
        ...


# --- tags and remarks -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CorpTag:
    """One enterprise customer tag."""

    id: str
    name: str
    created_at: datetime | None = None
    order: int = 0
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class CorpTagGroup:
    """A group of enterprise customer tags; ``strategy_id`` is the rule group (规则组) of a rule-group tag
    group (None for the corp library's own groups)."""

    group_id: str
    group_name: str
    tags: list[CorpTag]
    created_at: datetime | None = None
    order: int = 0
    deleted: bool = False
    strategy_id: int | None = None


@runtime_checkable
class CorpTagReader(Protocol):
    """Read the enterprise tag library."""

    def list_corp_tags(
        self, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> list[CorpTagGroup]:
        """Return tag groups, all of them or those holding the given tags/groups."""
        ...

    def list_strategy_tags(
        self, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = (), strategy_id: int | None = None
    ) -> list[CorpTagGroup]:
        """Return the rule-group tag groups (规则组标签), all of them, those of one rule group, or those
        holding the given tags/groups; they are enterprise tags too, but not in ``list_corp_tags``."""
        ...


@runtime_checkable
class CorpTagWriter(Protocol):
    """Put tags in the enterprise tag library."""

    def add_corp_tag(self, names: Sequence[str], *, group_id: str = "", group_name: str = "") -> CorpTagGroup:
        """Create the named tags in the group ``group_id``, or else in the group named ``group_name`` (made
        when missing). Names the group already holds are not created again: the answer is the group with
        the id of every named tag, new or existing."""
        ...


@runtime_checkable
class TagMarker(Protocol):
    """Add or remove enterprise tags on one member's customer."""

    def mark_tag(
        self, userid: str, external_userid: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """Apply tag changes to the customer as seen by `userid`."""
        ...


@runtime_checkable
class RemarkSetter(Protocol):
    """Write the member's remark and notes about a customer."""

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
        """Set the given fields; fields left as None are not changed."""
        ...


# --- channel codes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelCode:
    """A "contact me" code whose `state` comes back on every customer it brings."""

    config_id: str
    state: str
    qr_code: str = ""


@runtime_checkable
class ChannelCodeCreator(Protocol):
    """Create a per-source QR code that routes scanners to members and records the source."""

    def create_channel_code(
        self,
        userids: Sequence[str],
        state: str,
        *,
        remark: str = "",
        skip_verify: bool = True,
    ) -> ChannelCode:
        """Create a QR code shared by `userids`; `state` identifies the source."""
        ...


# --- mass messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageContent:
    """Text plus attachments in the carrier's attachment shape (e.g. {"msgtype": "image", ...})."""

    text: str = ""
    attachments: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class MassSubmission:
    """What the carrier accepted: one task id per submitted chunk, and recipients it refused."""

    msgids: list[str]
    fail_list: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MassMessageRecord:
    """A mass-message task as listed by the carrier."""

    msgid: str
    creator: str
    create_type: int  # 0 created by the company, 1 by a member
    text: str = ""
    attachments: tuple[dict[str, Any], ...] = ()


class SendStatus(IntEnum):
    """Delivery status of a mass message to one member task or one recipient."""

    UNSENT = 0
    SENT = 1
    NOT_FRIEND = 2
    CAP_REACHED = 3


@dataclass(frozen=True, slots=True)
class MassTask:
    """One member's part of a mass message (members confirm before it is sent)."""

    userid: str
    status: int
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MassSendResult:
    """Delivery of a mass message to one customer or one group."""

    userid: str
    status: int
    external_userid: str = ""
    chat_id: str = ""
    sent_at: datetime | None = None


@runtime_checkable
class MassMessenger(Protocol):
    """Submit mass messages to customers or groups and read their results."""

    def submit_mass_message(
        self,
        content: MessageContent,
        *,
        external_userids: Sequence[str] = (),
        chat_ids: Sequence[str] = (),
        sender: str = "",
        chat_type: str = "single",
    ) -> MassSubmission:
        """Create the task(s); members still confirm before anything is delivered."""
        ...

    def list_mass_messages(
        self,
        start: datetime,
        end: datetime,
        *,
        chat_type: str = "single",
        creator: str = "",
        cursor: str = "",
        limit: int = 100,
    ) -> Page[MassMessageRecord]:
        """Return mass-message tasks created in [start, end]."""
        ...

    def list_mass_tasks(self, msgid: str, cursor: str = "", limit: int = 1000) -> Page[MassTask]:
        """Return the per-member tasks of one mass message."""
        ...

    def list_mass_send_results(
        self, msgid: str, userid: str, cursor: str = "", limit: int = 1000
    ) -> Page[MassSendResult]:
        """Return per-recipient delivery of one member's part of a mass message."""
        ...


# --- groups ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupChatSummary:
    """A customer group as listed (status 0 normal, 1-3 resigned-owner inheritance stages)."""

    chat_id: str
    status: int = 0


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One member of a customer group: type 1 company member, 2 external contact."""

    userid: str
    type: int
    join_time: datetime | None = None
    join_scene: int = 0  # 1 invited directly, 2 invited by link, 3 scanned a QR code
    invitor: str = ""
    group_nickname: str = ""
    name: str = ""
    unionid: str = ""


@dataclass(frozen=True, slots=True)
class GroupChat:
    """A customer group with its members and admins."""

    chat_id: str
    name: str
    owner: str
    created_at: datetime | None
    notice: str = ""
    members: list[GroupMember] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)
    member_version: str = ""


@runtime_checkable
class GroupReader(Protocol):
    """List customer groups and read their members."""

    def list_groups(
        self,
        *,
        owner_userids: Sequence[str] = (),
        status_filter: int = 0,
        cursor: str = "",
        limit: int = 1000,
    ) -> Page[GroupChatSummary]:
        """Return one page of groups, optionally only those owned by `owner_userids`."""
        ...

    def get_group(self, chat_id: str) -> GroupChat:
        """Return one group with its members."""
        ...


# --- moments --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MomentTaskResult:
    """Outcome of an asynchronous Moments task: status 1 started, 2 running, 3 done."""

    status: int
    moment_id: str = ""
    errcode: int = 0
    errmsg: str = ""
    invalid_senders: list[str] = field(default_factory=list)
    invalid_tags: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """Whether the carrier finished creating the task."""
        return self.status == 3


@runtime_checkable
class MomentPoster(Protocol):
    """Post content to customers' Moments through members."""

    def post_moment(
        self,
        content: MessageContent,
        *,
        sender_userids: Sequence[str] = (),
        tag_ids: Sequence[str] = (),
    ) -> str:
        """Create a Moments task and return its job id."""
        ...

    def get_moment_task_result(self, jobid: str) -> MomentTaskResult:
        """Return the state of a Moments task."""
        ...


# --- transfers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """Per-customer answer to a transfer request; errcode 0 means the handover started."""

    external_userid: str
    errcode: int


class TransferStatus(IntEnum):
    """Status of one customer's handover."""

    DONE = 1
    WAITING = 2
    REFUSED = 3
    TAKEOVER_FULL = 4
    NO_RECORD = 5


@dataclass(frozen=True, slots=True)
class TransferState:
    """Where one customer's handover stands; `takeover_at` is future while waiting."""

    external_userid: str
    status: int
    takeover_at: datetime | None = None


@runtime_checkable
class CustomerTransferrer(Protocol):
    """Hand customers of a member (in service or resigned) over to another member."""

    def transfer_customers(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userids: Sequence[str],
        *,
        resigned: bool = False,
        message: str = "",
    ) -> list[TransferOutcome]:
        """Start handing the customers over; returns one outcome per customer."""
        ...

    def transfer_results(
        self, handover_userid: str, takeover_userid: str, *, resigned: bool = False, cursor: str = ""
    ) -> Page[TransferState]:
        """Return one page of handover states between two members."""
        ...


# --- public comments (Douyin and other content platforms) ----------------------------------


@runtime_checkable
class CommentReplier(Protocol):
    """Answer a public comment under a piece of content."""

    def reply_to_comment(self, item_id: str, comment_id: str, text: str) -> str:
        """Post ``text`` as a reply to the comment; returns the platform's id of the reply."""
        ...
