"""Erasure on the WeCom side of siyu: raw callbacks in the inbox and welcome-message records that name a
person go (their external user id is in the payload), so an erased person leaves no platform id behind."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from siyu.kit.db import json_mentions
from siyu.wecom.models import InboxItem, WelcomeSend


def forget_person(db: Session, org_id: int, customer_ids: Sequence[int], identifiers: Sequence[str]) -> int:
    """Delete the organization's inbox rows whose payload names one of ``identifiers`` (processed or not:
    applying a waiting one later would bring the person back) and blank their welcome sends."""
    if not identifiers:
        return 0
    deleted = db.execute(
        delete(InboxItem).where(InboxItem.org_id == org_id, json_mentions(InboxItem.payload, identifiers))
    )
    blanked = db.execute(
        update(WelcomeSend)
        .where(WelcomeSend.org_id == org_id, WelcomeSend.external_userid.in_(identifiers))
        .values(external_userid="")
    )
    return int(deleted.rowcount or 0) + int(blanked.rowcount or 0)  # type: ignore[attr-defined]
