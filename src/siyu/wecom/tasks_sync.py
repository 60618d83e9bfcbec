"""Scheduled WeCom operations: the nightly reconciliation, transfer polling and mass-message read-back.

Each task builds the organization's client from its stored credentials and opens its own transactions.
The reconciliation runs every night at 03:30 Asia/Shanghai (19:30 UTC) for every organization with
credentials, and on demand (``start_sync``: POST /api/v1/wecom/sync and the console's "Sync now").
Transfers waiting on a customer's 24 hours are polled every 15 minutes; submitted mass messages of the
last 3 days are read back every hour.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from huey import crontab
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts import departures
from siyu.accounts.models import CustomerTransfer, TransferStatus
from siyu.analytics.service import after_bulk_write
from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassMessage, MassMessageStatus
from siyu.kit.clock import utcnow
from siyu.kit.db import transaction
from siyu.wecom.credentials import client_for, load_plain
from siyu.wecom.models import WeComCredential
from siyu.wecom.sync import ensure_not_running, last_run, sync_org
from siyu.worker.queue import huey, sessions, settings

log = logging.getLogger(__name__)


def _orgs_with_credentials() -> list[int]:
    with sessions()() as db:
        return list(db.scalars(select(WeComCredential.org_id).order_by(WeComCredential.org_id)))


@huey.task(retries=2, retry_delay=300, name="wecom.sync_org")
def sync_org_task(org_id: int) -> dict[str, object]:
    """Reconcile one organization with WeCom; returns the report's counts. A first sync of a big
    organization is a bulk write: statistics, projection and CLV follow it."""
    report = sync_org(sessions(), org_id, settings().resolved_secret_key())
    after_bulk_write(sessions().kw["bind"], org_id, report.changed())
    return {"org_id": org_id, "changed": report.changed(), "contacts_seen": report.contacts_seen}


def start_sync(db: Session, org_id: int, secret_key: str) -> None:
    """Check the organization's credentials (NotFound when WeCom is not configured) and that no sync runs
    (Conflict), commit, enqueue its sync.

    A request boundary's helper, so it commits: an inline (immediate) task must not wait on the
    request's write lock, and a job is enqueued only after the commit.
    """
    load_plain(db, org_id, secret_key)
    ensure_not_running(last_run(db, org_id))
    db.commit()
    sync_org_task(org_id)


@huey.periodic_task(crontab(hour="19", minute="30"), name="wecom.sync_all")
def sync_all() -> int:
    """Nightly: enqueue a reconciliation of every organization with WeCom credentials."""
    orgs = _orgs_with_credentials()
    for org_id in orgs:
        sync_org_task(org_id)
    return len(orgs)


def poll_org_transfers(org_id: int) -> dict[str, int]:
    """Settle the organization's waiting transfers (in one transaction)."""
    factory = sessions()
    with transaction(factory) as db:
        client = client_for(load_plain(db, org_id, settings().resolved_secret_key()))
        return departures.poll_transfers(db, org_id, client)


@huey.periodic_task(crontab(minute="*/15"), name="wecom.poll_transfers")
def poll_all_transfers() -> int:
    """Every 15 minutes: poll transfer results for organizations with waiting hand-overs."""
    with sessions()() as db:
        orgs = list(
            db.scalars(
                select(CustomerTransfer.org_id)
                .where(CustomerTransfer.status == TransferStatus.waiting)
                .distinct()
            )
        )
    for org_id in orgs:
        try:
            poll_org_transfers(org_id)
        except Exception:  # one organization's broken credentials must not stop the others
            log.exception("polling transfers of org %s failed", org_id)
    return len(orgs)


@huey.periodic_task(crontab(minute="7"), name="wecom.mass_results")
def refresh_recent_mass_results() -> int:
    """Hourly: read back delivery of mass messages submitted in the last 3 days."""
    since = utcnow() - timedelta(days=3)
    with sessions()() as db:
        rows = db.execute(
            select(MassMessage.id, MassMessage.org_id).where(
                # A message cancelled half-way has its submitted part to read back too.
                MassMessage.status.in_((MassMessageStatus.submitted, MassMessageStatus.cancelled)),
                MassMessage.submitted_at >= since,
            )
        ).all()
    for message_id, org_id in rows:
        try:
            with transaction(sessions()) as db:
                client = client_for(load_plain(db, org_id, settings().resolved_secret_key()))
                campaigns.refresh_results(db, org_id, message_id, client)
        except Exception:
            log.exception("reading results of mass message %s failed", message_id)
    return len(rows)
