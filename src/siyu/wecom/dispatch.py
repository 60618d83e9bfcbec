"""One decrypted WeCom callback (a ``CallbackEvent`` as the inbox stores it) handed to its use case:
contact, customer-group or tag-library change. The drain applies batchable contact callbacks set-wise
through ``contact_batch`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from siyu.integrations.wecom import WeComClient
from siyu.wecom.contact_events import contact_event
from siyu.wecom.group_events import chat_event
from siyu.wecom.tag_events import tag_event


def apply_event(
    db: Session,
    org_id: int,
    event: Mapping[str, Any],
    *,
    client: WeComClient | None = None,
    welcome_text: str = "",
) -> str:
    """Apply one decrypted callback (a ``CallbackEvent`` as stored in the inbox); returns what was done."""
    kind = event.get("event")
    if kind == "change_external_contact":
        return contact_event(db, org_id, event, client, welcome_text)
    if kind == "change_external_chat":
        return chat_event(db, org_id, event, client)
    if kind == "change_external_tag":
        return tag_event(db, org_id, event, client)
    return f"ignored event {kind!r}"
