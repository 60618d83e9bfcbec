"""Background task of the leads domain: forget old Douyin webhook receipts.

A receipt exists to recognise Douyin's retries of one delivery (minutes apart) and keeps the delivery's
body; the comment itself lives on in ``lead_comments``. Without pruning, the table would hold every
delivery ever received, with the commenters' payloads.
"""

from __future__ import annotations

from datetime import timedelta

from huey import crontab

from siyu.kit.bulk import delete_in_batches
from siyu.kit.clock import utcnow
from siyu.leads.models import WebhookReceipt
from siyu.worker.queue import huey, sessions

#: Receipts are kept this long: far longer than Douyin retries a delivery, long enough to look into one.
RECEIPT_KEEP = timedelta(days=30)
PRUNE_BATCH = 10_000


def prune_receipts(keep: timedelta = RECEIPT_KEEP, batch: int = PRUNE_BATCH) -> int:
    """Delete webhook receipts received more than ``keep`` ago, ``batch`` rows per transaction; returns how
    many were deleted."""
    return delete_in_batches(
        sessions(),
        WebhookReceipt.__table__,
        WebhookReceipt.received_at < utcnow() - keep,
        batch,
    )


@huey.periodic_task(crontab(hour="20", minute="25"), name="leads.prune_receipts")
def prune_webhook_receipts() -> int:
    """Nightly (04:25 Asia/Shanghai): delete Douyin webhook receipts older than RECEIPT_KEEP."""
    return prune_receipts()
