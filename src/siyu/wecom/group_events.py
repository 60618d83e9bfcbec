"""WeCom customer-group callbacks (change_external_chat) applied through ``groups.service``: dismissal, a
member change with its join or quit scene, or else the group re-read (groupchat/get). Flushes, never
commits; idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from siyu.groups.service import apply_member_change, dismiss_group, ensure_group, upsert_group
from siyu.integrations.wecom import WeComClient, WeComError
from siyu.wecom.contact_events import event_time

#: The group-change callback's JoinScene (0 invited by a member, directly or by link; 3 scanned the group's
#: QR code) in groupchat/get's terms (1 invited directly, 2 invited by link, 3 QR code), the one meaning the
#: join_scene column holds: the callback cannot tell a direct invitation from a link, so 0 becomes 1.
CALLBACK_JOIN_SCENES = {0: 1, 3: 3}


def chat_event(db: Session, org_id: int, event: Mapping[str, Any], client: WeComClient | None) -> str:
    """Apply one change_external_chat callback through ``groups.service``: dismissal, member change, or a
    re-read of the group."""
    chat_id, change, at = str(event.get("chat_id") or ""), event.get("change_type"), event_time(event)
    if not chat_id:
        return "ignored: no ChatId"
    if change == "dismiss":
        dismiss_group(db, org_id, chat_id, at=at)
        return "group dismissed"
    detail = event.get("update_detail")
    # Without MemChangeList WeCom did not say who joined or left: read the group (below) instead of
    # recording a change of nobody.
    if change == "update" and detail in ("add_member", "del_member") and event.get("mem_change_list"):
        joined = detail == "add_member"
        if joined:
            raw = event.get("join_scene")
            scene = CALLBACK_JOIN_SCENES.get(raw, raw) if raw is not None else None
        else:
            scene = event.get("quit_scene")
        group = apply_member_change(
            db, org_id, chat_id, list(event.get("mem_change_list") or []), joined=joined, at=at, scene=scene
        )
        return f"{'join' if joined else 'quit'} of {len(event.get('mem_change_list') or [])} applied ({group.member_count} members)"
    if client is None:
        ensure_group(db, org_id, chat_id)
        return "group recorded (no client to read details)"
    try:
        chat = client.get_group(chat_id)
    except WeComError as exc:
        if exc.errcode != 40050:
            raise
        return "group not visible in WeCom"
    group = upsert_group(db, org_id, chat, at=at)
    return f"group {change} applied ({group.member_count} members)"
