"""Outreach through WeCom: mass messages, Moments tasks and customer transfers.

Limits enforced before calling (WeCom would refuse the call):
  * add_msg_template: more than 10,000 external_userids or 2,000 chat ids are SPLIT into
    several tasks (ids de-duplicated first, so nobody is in two chunks); one msgid per chunk;
    attachments <= 9; a group message needs a sender;
  * transfer_customer / resigned/transfer_customer: more than 100 customers are SPLIT into calls
    of 100 and the per-customer outcomes joined (each customer's handover is independent);
    transfer_success_msg <= 200 characters is REFUSED past that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from siyu.integrations.channel import (
    MassMessageRecord,
    MassSendResult,
    MassSubmission,
    MassTask,
    MessageContent,
    MomentTaskResult,
    Page,
    TransferOutcome,
    TransferState,
)
from siyu.integrations.wecom.errors import WeComInputError
from siyu.integrations.wecom.transport import WeComTransport, check_length, chunks, dedupe, timestamp

MAX_MASS_EXTERNAL_USERIDS = 10_000
MAX_MASS_CHAT_IDS = 2_000
MAX_MASS_ATTACHMENTS = 9
MAX_TRANSFER_CUSTOMERS = 100
MAX_TRANSFER_MESSAGE = 200
MAX_GROUPMSG_LIST_LIMIT = 100
MAX_GROUPMSG_TASK_LIMIT = 1_000
MAX_GROUP_TRANSFER_CHATS = 100


@dataclass(frozen=True, slots=True)
class GroupTransferFailure:
    """A customer group whose owner could not be changed, with WeCom's errcode."""

    chat_id: str
    errcode: int
    errmsg: str = ""


class WeComOutreach(WeComTransport):
    """Mass messages, Moments and transfers (MassMessenger, MomentPoster, CustomerTransferrer)."""

    # --- mass messages ----------------------------------------------------------------------

    def submit_mass_message(
        self,
        content: MessageContent,
        *,
        external_userids: Sequence[str] = (),
        chat_ids: Sequence[str] = (),
        sender: str = "",
        chat_type: str = "single",
    ) -> MassSubmission:
        """Create mass-message task(s), splitting past 10,000 customers or 2,000 groups."""
        if chat_type not in ("single", "group"):
            raise WeComInputError("chat_type", "must be 'single' or 'group'")
        if not content.text and not content.attachments:
            raise WeComInputError("content", "text and attachments cannot both be empty")
        if len(content.attachments) > MAX_MASS_ATTACHMENTS:
            raise WeComInputError("content.attachments", f"at most {MAX_MASS_ATTACHMENTS}")
        base: dict[str, Any] = {"chat_type": chat_type}
        if content.text:
            base["text"] = {"content": content.text}
        if content.attachments:
            base["attachments"] = [dict(a) for a in content.attachments]
        if sender:
            base["sender"] = sender
        if chat_type == "single":
            if chat_ids:
                raise WeComInputError("chat_ids", "only valid with chat_type='group'")
            ids = dedupe(external_userids)
            if not ids and not sender:
                raise WeComInputError(
                    "external_userids", "give recipients, or a sender to reach all their customers"
                )
            bodies = [dict(base, external_userid=c) for c in chunks(ids, MAX_MASS_EXTERNAL_USERIDS)] or [base]
        else:
            if external_userids:
                raise WeComInputError("external_userids", "only valid with chat_type='single'")
            if not sender:
                raise WeComInputError("sender", "is required when sending to customer groups")
            ids = dedupe(chat_ids)
            bodies = [dict(base, chat_id_list=c) for c in chunks(ids, MAX_MASS_CHAT_IDS)] or [base]
        msgids: list[str] = []
        failed: list[str] = []
        for body in bodies:
            data = self._call(
                "externalcontact/add_msg_template",
                partial(self.api.external_contact.add_msg_template, body),
            )
            msgids.append(str(data.get("msgid", "")))
            failed.extend(str(f) for f in data.get("fail_list", []))
        return MassSubmission(msgids=msgids, fail_list=failed)

    def list_mass_messages(
        self,
        start: datetime,
        end: datetime,
        *,
        chat_type: str = "single",
        creator: str = "",
        cursor: str = "",
        limit: int = MAX_GROUPMSG_LIST_LIMIT,
    ) -> Page[MassMessageRecord]:
        """Return mass-message tasks created between `start` and `end`."""
        if start.tzinfo is None or end.tzinfo is None:
            raise WeComInputError("start", "start and end must be timezone-aware")
        if end < start:
            raise WeComInputError("end", "must not be before start")
        body: dict[str, Any] = {
            "chat_type": chat_type,
            "start_time": int(start.timestamp()),
            "end_time": int(end.timestamp()),
            "filter_type": 2,
            "limit": max(1, min(limit, MAX_GROUPMSG_LIST_LIMIT)),
        }
        if creator:
            body["creator"] = creator
        if cursor:
            body["cursor"] = cursor
        data = self.post("externalcontact/get_groupmsg_list_v2", body)
        items = [
            MassMessageRecord(
                msgid=str(m.get("msgid", "")),
                creator=str(m.get("creator", "")),
                create_type=int(m.get("create_type", 0) or 0),
                text=str((m.get("text") or {}).get("content", "")),
                attachments=tuple(m.get("attachments") or ()),
            )
            for m in data.get("group_msg_list", [])
        ]
        return Page(items=items, next_cursor=str(data.get("next_cursor", "") or ""))

    def list_mass_tasks(
        self, msgid: str, cursor: str = "", limit: int = MAX_GROUPMSG_TASK_LIMIT
    ) -> Page[MassTask]:
        """Return the per-member tasks of a mass message."""
        body: dict[str, Any] = {"msgid": msgid, "limit": max(1, min(limit, MAX_GROUPMSG_TASK_LIMIT))}
        if cursor:
            body["cursor"] = cursor
        data = self.post("externalcontact/get_groupmsg_task", body)
        items = [
            MassTask(
                userid=str(t.get("userid", "")),
                status=int(t.get("status", 0)),
                sent_at=timestamp(t.get("send_time")),
            )
            for t in data.get("task_list", [])
        ]
        return Page(items=items, next_cursor=str(data.get("next_cursor", "") or ""))

    def list_mass_send_results(
        self, msgid: str, userid: str, cursor: str = "", limit: int = MAX_GROUPMSG_TASK_LIMIT
    ) -> Page[MassSendResult]:
        """Return per-recipient delivery of one member's part of a mass message."""
        body: dict[str, Any] = {
            "msgid": msgid,
            "userid": userid,
            "limit": max(1, min(limit, MAX_GROUPMSG_TASK_LIMIT)),
        }
        if cursor:
            body["cursor"] = cursor
        data = self.post("externalcontact/get_groupmsg_send_result", body)
        items = [
            MassSendResult(
                userid=str(r.get("userid", "")),
                status=int(r.get("status", 0)),
                external_userid=str(r.get("external_userid", "")),
                chat_id=str(r.get("chat_id", "")),
                sent_at=timestamp(r.get("send_time")),
            )
            for r in data.get("send_list", [])
        ]
        return Page(items=items, next_cursor=str(data.get("next_cursor", "") or ""))

    # --- moments ----------------------------------------------------------------------------

    def post_moment(
        self, content: MessageContent, *, sender_userids: Sequence[str] = (), tag_ids: Sequence[str] = ()
    ) -> str:
        """Create a Moments task (members confirm on their phones) and return its job id."""
        if not content.text and not content.attachments:
            raise WeComInputError("content", "text and attachments cannot both be empty")
        body: dict[str, Any] = {}
        if content.text:
            body["text"] = {"content": content.text}
        if content.attachments:
            body["attachments"] = [dict(a) for a in content.attachments]
        visible: dict[str, Any] = {}
        if sender_userids:
            visible["sender_list"] = {"user_list": list(sender_userids)}
        if tag_ids:
            visible["external_contact_list"] = {"tag_list": list(tag_ids)}
        if visible:
            body["visible_range"] = visible
        data = self.post("externalcontact/add_moment_task", body)
        return str(data.get("jobid", ""))

    def get_moment_task_result(self, jobid: str) -> MomentTaskResult:
        """Return the status of a Moments task."""
        data = self.get("externalcontact/get_moment_task_result", {"jobid": jobid})
        result = data.get("result") or {}
        return MomentTaskResult(
            status=int(data.get("status", 0)),
            moment_id=str(result.get("moment_id", "")),
            errcode=int(result.get("errcode", 0) or 0),
            errmsg=str(result.get("errmsg", "")),
            invalid_senders=[str(u) for u in (result.get("invalid_sender_list") or {}).get("user_list", [])],
            invalid_tags=[
                str(t) for t in (result.get("invalid_external_contact_list") or {}).get("tag_list", [])
            ],
        )

    # --- transfers --------------------------------------------------------------------------

    def transfer_customers(
        self,
        handover_userid: str,
        takeover_userid: str,
        external_userids: Sequence[str],
        *,
        resigned: bool = False,
        message: str = "",
    ) -> list[TransferOutcome]:
        """Hand customers over in calls of at most 100; returns one outcome per customer."""
        if not handover_userid or not takeover_userid:
            raise WeComInputError("handover_userid", "handover and takeover members are required")
        if handover_userid == takeover_userid:
            raise WeComInputError("takeover_userid", "must differ from handover_userid")
        ids = dedupe(external_userids)
        if not ids:
            raise WeComInputError("external_userids", "at least one customer is required")
        check_length("message", message, MAX_TRANSFER_MESSAGE)
        if resigned and message:
            raise WeComInputError("message", "WeCom sends no message when a resigned member's customers move")
        path = (
            "externalcontact/resigned/transfer_customer" if resigned else "externalcontact/transfer_customer"
        )
        outcomes: list[TransferOutcome] = []
        for chunk in chunks(ids, MAX_TRANSFER_CUSTOMERS):
            body: dict[str, Any] = {
                "handover_userid": handover_userid,
                "takeover_userid": takeover_userid,
                "external_userid": chunk,
            }
            if message:
                body["transfer_success_msg"] = message
            data = self.post(path, body)
            outcomes.extend(
                TransferOutcome(
                    external_userid=str(c.get("external_userid", "")), errcode=int(c.get("errcode", 0))
                )
                for c in data.get("customer", [])
            )
        return outcomes

    def transfer_results(
        self, handover_userid: str, takeover_userid: str, *, resigned: bool = False, cursor: str = ""
    ) -> Page[TransferState]:
        """Return one page of handover states between two members."""
        path = "externalcontact/resigned/transfer_result" if resigned else "externalcontact/transfer_result"
        body: dict[str, Any] = {"handover_userid": handover_userid, "takeover_userid": takeover_userid}
        if cursor:
            body["cursor"] = cursor
        data = self.post(path, body)
        items = [
            TransferState(
                external_userid=str(c.get("external_userid", "")),
                status=int(c.get("status", 0)),
                takeover_at=timestamp(c.get("takeover_time")),
            )
            for c in data.get("customer", [])
        ]
        return Page(items=items, next_cursor=str(data.get("next_cursor", "") or ""))

    # --- group owner transfer -----------------------------------------------------------------

    def transfer_groups(
        self, chat_ids: Sequence[str], new_owner: str, *, resigned: bool = False
    ) -> list[GroupTransferFailure]:
        """Give customer groups a new owner in calls of at most 100; returns the groups that failed.

        In service: groupchat/onjob_transfer; a resigned owner's groups: groupchat/transfer.
        """
        if not new_owner:
            raise WeComInputError("new_owner", "is required")
        ids = dedupe(chat_ids)
        if not ids:
            raise WeComInputError("chat_ids", "at least one group is required")
        path = (
            "externalcontact/groupchat/transfer" if resigned else "externalcontact/groupchat/onjob_transfer"
        )
        failed: list[GroupTransferFailure] = []
        for chunk in chunks(ids, MAX_GROUP_TRANSFER_CHATS):
            data = self.post(path, {"chat_id_list": chunk, "new_owner": new_owner})
            failed.extend(
                GroupTransferFailure(
                    chat_id=str(f.get("chat_id", "")),
                    errcode=int(f.get("errcode", 0)),
                    errmsg=str(f.get("errmsg", "")),
                )
                for f in data.get("failed_chat_list", [])
            )
        return failed
