"""Background task of the leads domain: forget old Douyin webhook receipts.

A receipt exists to recognise Douyin's retries of one delivery (minutes apart) and keeps the delivery's
body; the comment itself lives on in ``lead_comments``. Without pruning, the table would hold every
delivery ever received, with the commenters' payloads.
"""

from __future__ import annotations

from datetime import timedelta

from huey import crontab
from sqlalchemy import and_

from siyu.kit.bulk import delete_in_batches
from siyu.kit.clock import utcnow
from siyu.leads.models import WebhookReceipt
from siyu.tenancy import service as tenancy
from siyu.worker.queue import huey, sessions, settings

PRUNE_BATCH = 10_000


def prune_receipts(keep: timedelta | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete webhook receipts received more than ``keep`` ago (default: each organization's webhook
    retention, 30 days unless set: far longer than Douyin retries a delivery, long enough to look into
    one), ``batch`` rows per transaction; returns how many were deleted."""
    now = utcnow()
    deleted = 0
    with sessions()() as db:
        days_by_org = tenancy.webhook_days_by_org(db, tenancy.default_retention(settings()), keep)
    for org_id, days in days_by_org.items():
        deleted += delete_in_batches(
            sessions(),
            WebhookReceipt.__table__,
            and_(WebhookReceipt.org_id == org_id, WebhookReceipt.received_at < now - timedelta(days=days)),
            batch,
        )
    return deleted


@huey.periodic_task(crontab(hour="20", minute="25"), name="leads.prune_receipts")
def prune_webhook_receipts() -> int:
    """Nightly (04:25 Asia/Shanghai): delete Douyin webhook receipts older than each organization's retention."""
    return prune_receipts()
