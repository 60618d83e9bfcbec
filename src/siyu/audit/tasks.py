"""Background task of the audit log: forget entries older than each organization's audit retention."""

from __future__ import annotations

from huey import crontab

from siyu.audit import service
from siyu.tenancy import service as tenancy
from siyu.worker.queue import huey, sessions, settings


def prune_audit(batch: int = 10_000) -> int:
    """Delete audit entries older than each organization's retention (3 years unless set); returns how
    many were deleted."""
    defaults = tenancy.default_retention(settings())
    with sessions()() as db:
        keep = {org_id: r.audit_days for org_id, r in tenancy.retention_by_org(db, defaults).items()}
    return service.prune(sessions(), keep, batch)


@huey.periodic_task(crontab(hour="20", minute="35"), name="audit.prune")
def prune_audit_log() -> int:
    """Nightly (04:35 Asia/Shanghai): delete audit entries past their retention."""
    return prune_audit()
