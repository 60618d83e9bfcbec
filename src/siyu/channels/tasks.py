"""Background task of the channels domain: the periodic account-safety sweep (cap, deletion-spike,
staff-deletion and low-health alerts) over every organization, one transaction per organization."""

from __future__ import annotations

import logging
from datetime import datetime

from huey import crontab
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.health import scan_alerts
from siyu.tenancy.models import Organization
from siyu.worker.queue import huey, sessions

log = logging.getLogger(__name__)


def scan_all(factory: sessionmaker[Session], now: datetime | None = None) -> int:
    """Sweep every organization's accounts for alerts; returns how many new alerts were raised."""
    with factory() as db:
        org_ids = list(db.scalars(select(Organization.id).order_by(Organization.id)))
    total = 0
    for org_id in org_ids:
        # One transaction per organization: one organization's failure does not hold back the others.
        with factory() as db:
            try:
                total += scan_alerts(db, org_id, now=now)
                db.commit()
            except Exception:
                db.rollback()
                log.exception("account alert sweep failed for organization %s", org_id)
    return total


@huey.periodic_task(crontab(minute="*/15"), name="channels.scan_alerts")
def scan_account_alerts() -> int:
    """Every 15 minutes: raise account-safety alerts for every organization."""
    return scan_all(sessions())
