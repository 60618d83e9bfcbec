"""Account safety: a health score from adds, deletions, complaints and blocks, and alerts when an
account nears a cap, its deletion rate spikes, or staff delete a customer.

Days (an alert's day, today's adds against the daily cap) are calendar days of the organization's time
zone, as the routing's day loads are (``siyu.channels.service``) and as the console shows them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountStatus
from siyu.accounts.service import visible_accounts
from siyu.channels.models import AccountAlert, AccountDayLoad, AlertKind
from siyu.channels.schemas import HealthOut
from siyu.customers.models import FollowRelation, FollowStatus
from siyu.events.models import Event, of_timed_type
from siyu.kit.bulk import insert_ignore
from siyu.kit.clock import ensure_utc, local, utcnow
from siyu.kit.errors import NotFound
from siyu.tenancy.principal import Principal
from siyu.tenancy.service import org_zone

NEAR_CAP = 0.9  # alert at 90% of a cap
SPIKE_MIN_DELETIONS = 3  # fewer deletions in a day are noise
SPIKE_FACTOR = 2.0  # a day's deletions over twice the previous week's daily mean
SPIKE_RATE = 0.3  # or over 30% of the day's adds
LOW_HEALTH = 50
COMPLAINT_EVENT = "complaint"


def raise_alert(
    db: Session,
    org_id: int,
    account_id: int,
    kind: AlertKind,
    message: str,
    at: datetime,
    *,
    zone: ZoneInfo | None = None,
) -> bool:
    """Open an alert unless one of this kind is already there for the account and day (of ``zone``, by
    default the organization's); True if new."""
    zone = zone or org_zone(db, org_id)
    result = db.execute(
        insert_ignore(db, AccountAlert.__table__, ["org_id", "account_id", "kind", "day"]).values(
            org_id=org_id,
            account_id=account_id,
            kind=kind.value,
            day=local(at, zone).date(),
            message=message[:300],
            created_at=ensure_utc(at),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def check_caps(
    db: Session,
    org_id: int,
    account_id: int,
    at: datetime,
    *,
    daily_cap: int | None = None,
    zone: ZoneInfo | None = None,
) -> None:
    """Alert when the account is at 90% of its soft or hard cap, or of today's daily add cap (today in
    ``zone``, by default the organization's)."""
    acct = db.scalar(select(Account).where(Account.id == account_id, Account.org_id == org_id))
    if acct is None:
        return
    zone = zone or org_zone(db, org_id)
    day = local(at, zone).date()
    pending = (
        db.scalar(
            select(AccountDayLoad.pending).where(
                AccountDayLoad.account_id == account_id, AccountDayLoad.day == day
            )
        )
        or 0
    )
    load = acct.friend_count + pending
    cap = min(acct.soft_cap, acct.hard_cap)
    if load >= NEAR_CAP * cap:
        message = f"{acct.name}: {load} of {cap} contacts"
        raise_alert(db, org_id, account_id, AlertKind.near_cap, message, at, zone=zone)
    if daily_cap:
        adds = (
            db.scalar(
                select(AccountDayLoad.adds).where(
                    AccountDayLoad.account_id == account_id, AccountDayLoad.day == day
                )
            )
            or 0
        )
        if adds >= NEAR_CAP * daily_cap:
            raise_alert(
                db,
                org_id,
                account_id,
                AlertKind.near_daily_cap,
                f"{acct.name}: {adds} of {daily_cap} adds today",
                at,
                zone=zone,
            )


def note_deletion(db: Session, org_id: int, account_id: int, *, by: str, at: datetime | None = None) -> None:
    """Call after customers.unfollow: staff deleting a customer alerts at once; a customer deleting
    the account checks for a deletion spike."""
    note_deletions(db, org_id, [(account_id, by, at or utcnow())])


def note_deletions(db: Session, org_id: int, deletions: Iterable[tuple[int, str, datetime]]) -> None:
    """``note_deletion`` for many (account, by, at) ends at once, a few statements whatever their number.
    They are grouped by day of the organization's time zone: a staff deletion alerts at the account's first of the day (one alert per
    account, kind and day), and the spike check runs once, at the group's latest time (the 24 hours up to
    then hold the group's earlier ends)."""
    days: dict[tuple[str, object], dict[int, list[datetime]]] = {}
    zone = org_zone(db, org_id)
    for account_id, by, at in deletions:
        at = ensure_utc(at)
        days.setdefault((by, local(at, zone).date()), {}).setdefault(account_id, []).append(at)
    for (by, _), ats in sorted(days.items(), key=lambda item: min(min(a) for a in item[1].values())):
        if by == "staff":
            names = _names(db, org_id, ats)
            for account_id, times in sorted(ats.items()):
                message = f"{names.get(account_id, '')}: a staff member deleted a customer"
                raise_alert(
                    db, org_id, account_id, AlertKind.deleted_by_staff, message, min(times), zone=zone
                )
        else:
            _check_spikes(db, org_id, sorted(ats), max(max(a) for a in ats.values()), zone)


def _names(db: Session, org_id: int, account_ids: Iterable[int]) -> dict[int, str]:
    rows = db.execute(
        select(Account.id, Account.name).where(Account.org_id == org_id, Account.id.in_(account_ids))
    )
    return {int(aid): str(name or "") for aid, name in rows}


def _counts(db: Session, org_id: int, account_ids: list[int], *conditions: Any) -> dict[int, int]:
    """Follow relations per account matching ``conditions`` (a range or a status and a range).

    One count per account, each a range of the (organization, account, ...) indexes: grouping a week's
    relations of every account sorted them first on SQLite (80 ms for 80,000 adds at a million customers).
    """
    count = (
        select(func.count())
        .where(FollowRelation.org_id == org_id, FollowRelation.account_id == Account.id, *conditions)
        .scalar_subquery()
    )
    rows = db.execute(select(Account.id, count).where(Account.id.in_(account_ids)))
    return {int(aid): int(n) for aid, n in rows if n}


def _check_spikes(
    db: Session, org_id: int, account_ids: list[int], at: datetime, zone: ZoneInfo
) -> list[int]:
    """Alert for each account whose last 24 hours' deletions by customers (up to ``at``) spike against the
    week before or the day's adds; returns the accounts alerted."""
    day_start = at - timedelta(days=1)
    by_customer = FollowRelation.status == FollowStatus.deleted_by_customer
    recent = _counts(
        db,
        org_id,
        account_ids,
        by_customer,
        FollowRelation.ended_at >= day_start,
        FollowRelation.ended_at < at + timedelta(seconds=1),
    )
    spiking = sorted(aid for aid, n in recent.items() if n >= SPIKE_MIN_DELETIONS)
    if not spiking:
        return []
    week = _counts(
        db,
        org_id,
        spiking,
        by_customer,
        FollowRelation.ended_at >= day_start - timedelta(days=7),
        FollowRelation.ended_at < day_start,
    )
    adds = _counts(db, org_id, spiking, FollowRelation.since >= day_start)
    alerted = [
        aid
        for aid in spiking
        if recent[aid] > SPIKE_FACTOR * week.get(aid, 0) / 7
        or recent[aid] > SPIKE_RATE * max(adds.get(aid, 0), 1)
    ]
    names = _names(db, org_id, alerted) if alerted else {}
    return [
        aid
        for aid in alerted
        if raise_alert(
            db,
            org_id,
            aid,
            AlertKind.deletion_spike,
            f"{names.get(aid, '')}: {recent[aid]} customers deleted the account in 24 hours",
            at,
            zone=zone,
        )
    ]


def check_deletion_spike(
    db: Session, org_id: int, account_id: int, at: datetime, *, zone: ZoneInfo | None = None
) -> bool:
    """Alert if the last 24 hours' deletions by customers spike against the week before or the day's adds
    (the alert's day in ``zone``, by default the organization's)."""
    return bool(_check_spikes(db, org_id, [account_id], at, zone or org_zone(db, org_id)))


def score(
    *,
    adds: int,
    deleted_by_customer: int,
    deleted_by_staff: int,
    complaints: int,
    status: str,
    load_ratio: float,
    daily_ratio: float,
) -> int:
    """0-100: blocked is 0; deletion rate, staff deletions, complaints and running near caps lower it."""
    if status == AccountStatus.blocked:
        return 0
    rate = deleted_by_customer / max(adds, 1)
    penalty = 40 * min(rate, 1.0) + min(5 * deleted_by_staff, 20) + min(10 * complaints, 30)
    penalty += 10 if load_ratio >= NEAR_CAP else 0
    penalty += 10 if daily_ratio >= NEAR_CAP else 0
    return max(0, round(100 - penalty))


def account_health(
    db: Session,
    org_id: int,
    *,
    account_ids: list[int] | None = None,
    days: int = 7,
    now: datetime | None = None,
    daily_caps: dict[int, int] | None = None,
) -> list[HealthOut]:
    """Health of the organization's accounts over the last `days` days; today's adds are those of the
    organization's calendar day."""
    now = ensure_utc(now) if now is not None else utcnow()
    start = now - timedelta(days=days)
    stmt = select(Account).where(Account.org_id == org_id).order_by(Account.id)
    if account_ids is not None:
        stmt = stmt.where(Account.id.in_(account_ids))
    accounts = list(db.scalars(stmt))
    ids = [a.id for a in accounts]
    if not ids:
        return []
    adds = _counts(db, org_id, ids, FollowRelation.since >= start)
    ended_after = FollowRelation.ended_at >= start
    by_customer_counts = _counts(
        db, org_id, ids, FollowRelation.status == FollowStatus.deleted_by_customer, ended_after
    )
    by_staff_counts = _counts(
        db, org_id, ids, FollowRelation.status == FollowStatus.deleted_by_staff, ended_after
    )
    complaints = dict(
        db.execute(
            select(Event.account_id, func.count())
            .where(
                Event.org_id == org_id,
                Event.account_id.in_(ids),
                of_timed_type(COMPLAINT_EVENT),
                Event.occurred_at >= start,
            )
            .group_by(Event.account_id)
        ).all()
    )
    today = local(now, org_zone(db, org_id)).date()
    today_rows = {
        r.account_id: r
        for r in db.scalars(
            select(AccountDayLoad).where(AccountDayLoad.account_id.in_(ids), AccountDayLoad.day == today)
        )
    }
    out = []
    for a in accounts:
        n_adds = int(adds.get(a.id, 0))
        by_customer = by_customer_counts.get(a.id, 0)
        by_staff = by_staff_counts.get(a.id, 0)
        n_complaints = int(complaints.get(a.id, 0))
        day_row = today_rows.get(a.id)
        adds_today = day_row.adds if day_row else 0
        cap = (daily_caps or {}).get(a.id)
        load = a.friend_count + (day_row.pending if day_row else 0)
        out.append(
            HealthOut(
                account_id=a.id,
                name=a.name,
                status=str(a.status),
                friend_count=a.friend_count,
                soft_cap=a.soft_cap,
                hard_cap=a.hard_cap,
                adds=n_adds,
                adds_today=adds_today,
                daily_cap=cap,
                deleted_by_customer=by_customer,
                deleted_by_staff=by_staff,
                complaints=n_complaints,
                deletion_rate=round(by_customer / n_adds, 4) if n_adds else 0.0,
                score=score(
                    adds=n_adds,
                    deleted_by_customer=by_customer,
                    deleted_by_staff=by_staff,
                    complaints=n_complaints,
                    status=str(a.status),
                    load_ratio=load / max(min(a.soft_cap, a.hard_cap), 1),
                    daily_ratio=adds_today / cap if cap else 0.0,
                ),
            )
        )
    return out


def scan_alerts(db: Session, org_id: int, *, now: datetime | None = None) -> int:
    """Periodic sweep: cap, deletion-spike, staff-deletion and low-health alerts for every account; returns new alerts."""
    now = ensure_utc(now) if now is not None else utcnow()
    before = (
        db.scalar(select(func.count()).select_from(AccountAlert).where(AccountAlert.org_id == org_id)) or 0
    )
    zone = org_zone(db, org_id)
    for h in account_health(db, org_id, days=1, now=now):
        check_caps(db, org_id, h.account_id, now, zone=zone)
        check_deletion_spike(db, org_id, h.account_id, now, zone=zone)
        if h.deleted_by_staff:
            raise_alert(
                db,
                org_id,
                h.account_id,
                AlertKind.deleted_by_staff,
                f"{h.name}: staff deleted {h.deleted_by_staff} customer(s) in 24 hours",
                now,
                zone=zone,
            )
        if h.score < LOW_HEALTH:
            message = f"{h.name}: health score {h.score}"
            raise_alert(db, org_id, h.account_id, AlertKind.low_health, message, now, zone=zone)
    db.flush()
    after = (
        db.scalar(select(func.count()).select_from(AccountAlert).where(AccountAlert.org_id == org_id)) or 0
    )
    return after - before


def list_alerts(
    db: Session,
    org_id: int,
    *,
    open_only: bool = True,
    limit: int = 200,
    account_ids: list[int] | None = None,
) -> list[AccountAlert]:
    """The organization's alerts (optionally of some accounts only), newest first."""
    stmt = select(AccountAlert).where(AccountAlert.org_id == org_id)
    if account_ids is not None:
        stmt = stmt.where(AccountAlert.account_id.in_(account_ids))
    if open_only:
        stmt = stmt.where(AccountAlert.resolved_at.is_(None))
    return list(db.scalars(stmt.order_by(AccountAlert.id.desc()).limit(limit)))


def visible_account_ids(db: Session, principal: Principal) -> list[int] | None:
    """None for principals who see the whole organization, else the ids of the operator's own accounts."""
    if principal.sees_whole_org:
        return None
    return list(db.scalars(visible_accounts(principal).with_only_columns(Account.id)))


def resolve_alert(db: Session, org_id: int, alert_id: int) -> AccountAlert:
    """Mark an alert handled (idempotent)."""
    alert = db.scalar(select(AccountAlert).where(AccountAlert.id == alert_id, AccountAlert.org_id == org_id))
    if alert is None:
        raise NotFound("alert not found", field="alert_id")
    if alert.resolved_at is None:
        db.execute(
            update(AccountAlert)
            .where(AccountAlert.id == alert.id)
            .values(resolved_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
        db.refresh(alert)
    return alert
