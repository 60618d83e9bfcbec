"""Rules for routing pools, channel codes and routed adds.

Other domains call: `route_new_contact` (which account takes a new contact; reserves its place) and
`code_for_state` (the code behind a WeCom callback's State); an add through a code is the use case in
`channels.adds`, built on `record_add` here. Services flush, never commit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, bindparam, delete, exists, literal, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountStatus
from siyu.channels import attribution, health
from siyu.channels.models import (
    AccountDayLoad,
    ChannelAdd,
    ChannelCode,
    CodeStatus,
    PoolMember,
    RoutingPool,
    RoutingRule,
)
from siyu.channels.routing import PoolRouter, Slot, hour_of_week, hours_mask, warmup_daily_cap
from siyu.channels.schemas import CodeIn, CodePatch, MemberIn, MemberOut, PoolIn, PoolOut, PoolPatch
from siyu.customers.tagging import check_tag_ids
from siyu.integrations.channel import ChannelCodeCreator
from siyu.kit.bulk import insert_ignore
from siyu.kit.clock import ensure_utc, local, utcnow
from siyu.kit.errors import Conflict, Invalid, NotFound
from siyu.tenancy.service import org_zone

# A cached router is reloaded after this long, so friend counts changed elsewhere are seen.
ROUTER_TTL_SECONDS = 30.0
RESERVE_ATTEMPTS = 8
WECOM_MAX_CODE_USERS = 100
#: The origin of changes a simulated (sandbox carrier) scan makes.
SANDBOX_ORIGIN = "sandbox"


# --- pools ----------------------------------------------------------------------------------------


def get_pool(db: Session, org_id: int, pool_id: int, *, field: str = "pool_id") -> RoutingPool:
    """A pool of the organization (404 for another organization's, like a missing one)."""
    pool = db.scalar(select(RoutingPool).where(RoutingPool.id == pool_id, RoutingPool.org_id == org_id))
    if pool is None:
        raise NotFound("routing pool not found", field=field)
    return pool


def list_pools(db: Session, org_id: int) -> list[RoutingPool]:
    """The organization's pools by name."""
    return list(
        db.scalars(select(RoutingPool).where(RoutingPool.org_id == org_id).order_by(RoutingPool.name))
    )


def members_of(db: Session, pool_id: int) -> list[PoolMember]:
    """A pool's members, primaries first."""
    return list(
        db.scalars(
            select(PoolMember)
            .where(PoolMember.pool_id == pool_id)
            .order_by(PoolMember.is_backup, PoolMember.account_id)
        )
    )


def pool_out(db: Session, pool: RoutingPool) -> PoolOut:
    """The API shape of a pool with its members."""
    return PoolOut.model_validate(
        {
            "id": pool.id,
            "name": pool.name,
            "rule": pool.rule,
            "daily_cap": pool.daily_cap,
            "warmup": list(pool.warmup),
            "members": [MemberOut.model_validate(m) for m in members_of(db, pool.id)],
        }
    )


def _check_name_free(db: Session, org_id: int, name: str, pool_id: int | None = None) -> None:
    stmt = select(RoutingPool.id).where(RoutingPool.org_id == org_id, RoutingPool.name == name)
    if pool_id is not None:
        stmt = stmt.where(RoutingPool.id != pool_id)
    if db.scalar(stmt) is not None:
        raise Conflict(f"a pool named {name!r} already exists", field="name")


def _set_members(db: Session, org_id: int, pool: RoutingPool, members: list[MemberIn]) -> None:
    ids = [m.account_id for m in members]
    if len(set(ids)) != len(ids):
        raise Invalid("an account appears twice in members", field="members")
    found = (
        set(db.scalars(select(Account.id).where(Account.org_id == org_id, Account.id.in_(ids))))
        if ids
        else set()
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise Invalid(f"unknown account ids: {', '.join(map(str, missing))}", field="members")
    db.execute(delete(PoolMember).where(PoolMember.pool_id == pool.id))
    db.add_all(
        PoolMember(
            org_id=org_id,
            pool_id=pool.id,
            account_id=m.account_id,
            is_backup=m.is_backup,
            regions=list(m.regions),
            hours=dict(m.hours),
        )
        for m in members
    )


def create_pool(db: Session, org_id: int, data: PoolIn) -> RoutingPool:
    """Create a pool with its members (accounts of the organization)."""
    _check_name_free(db, org_id, data.name)
    pool = RoutingPool(
        org_id=org_id,
        name=data.name,
        rule=data.rule,
        daily_cap=data.daily_cap,
        warmup=list(data.warmup),
        revision=1,
    )
    db.add(pool)
    db.flush()
    _set_members(db, org_id, pool, data.members)
    db.flush()
    return pool


def update_pool(db: Session, pool: RoutingPool, patch: PoolPatch) -> RoutingPool:
    """Change a pool; `members`, when given, replaces the membership. Cached routers reload."""
    if patch.name is not None and patch.name != pool.name:
        _check_name_free(db, pool.org_id, patch.name, pool.id)
        pool.name = patch.name
    if patch.rule is not None:
        pool.rule = patch.rule
    if patch.daily_cap is not None:
        pool.daily_cap = patch.daily_cap
    if patch.warmup is not None:
        if any(v < 1 for v in patch.warmup):
            raise Invalid("every warm-up cap must be at least 1", field="warmup")
        pool.warmup = list(patch.warmup)
    if patch.members is not None:
        _set_members(db, pool.org_id, pool, patch.members)
    pool.revision += 1
    db.flush()
    return pool


# --- codes ----------------------------------------------------------------------------------------


def get_code(db: Session, org_id: int, code_id: int) -> ChannelCode:
    """A code of the organization (404 otherwise)."""
    code = db.scalar(select(ChannelCode).where(ChannelCode.id == code_id, ChannelCode.org_id == org_id))
    if code is None:
        raise NotFound("channel code not found", field="code_id")
    return code


def list_codes(db: Session, org_id: int, *, status: CodeStatus | None = None) -> list[ChannelCode]:
    """The organization's codes, newest first."""
    stmt = select(ChannelCode).where(ChannelCode.org_id == org_id)
    if status is not None:
        stmt = stmt.where(ChannelCode.status == status)
    return list(db.scalars(stmt.order_by(ChannelCode.id.desc())))


# Built once: every WeCom add_external_contact with a State looks its code up.
_CODE_BY_STATE = select(ChannelCode).where(
    ChannelCode.org_id == bindparam("org_id"), ChannelCode.state == bindparam("state")
)


def code_for_state(db: Session, org_id: int, state: str | None) -> ChannelCode | None:
    """The code whose `state` a WeCom add_external_contact callback carried, or None."""
    if not state:
        return None
    return db.scalar(_CODE_BY_STATE, {"org_id": org_id, "state": state})


def create_code(db: Session, org_id: int, data: CodeIn, creator: ChannelCodeCreator) -> ChannelCode:
    """Issue a code on its carrier for the pool's members and store it."""
    pool = get_pool(db, org_id, data.pool_id)
    if code_for_state(db, org_id, data.state) is not None:
        raise Conflict(f"a code with state {data.state!r} already exists", field="state")
    tag_ids = check_tag_ids(db, org_id, data.tag_ids)
    userids = list(
        db.scalars(
            select(Account.external_id)
            .join(PoolMember, PoolMember.account_id == Account.id)
            .where(PoolMember.pool_id == pool.id, Account.status == AccountStatus.active)
            .order_by(PoolMember.is_backup, Account.friend_count, Account.id)
            .limit(WECOM_MAX_CODE_USERS)
        )
    )
    if not userids:
        raise Invalid("the pool has no active account to put on the code", field="pool_id")
    try:
        issued = creator.create_channel_code(userids, data.state, remark=data.name[:30])
    except ValueError as exc:  # the carrier's own input checks name the field
        raise Invalid(f"the carrier refused the code: {exc}", field="state") from exc
    code = ChannelCode(
        org_id=org_id,
        name=data.name,
        state=data.state,
        channel=data.channel,
        campaign=data.campaign,
        content_item=data.content_item,
        pool_id=pool.id,
        carrier=data.carrier,
        config_id=issued.config_id,
        qr_url=issued.qr_code,
        tag_ids=tag_ids,
        remark_template=data.remark_template,
        welcome_message=data.welcome_message,
        cost_fen=data.cost_fen,
        status=CodeStatus.active,
    )
    db.add(code)
    db.flush()
    return code


def update_code(db: Session, code: ChannelCode, patch: CodePatch) -> ChannelCode:
    """Change a code's labels, pool, auto-tags, templates, cost or status."""
    values = patch.model_dump(exclude_unset=True, exclude_none=True)
    if "pool_id" in values:
        get_pool(db, code.org_id, values["pool_id"])
    if "tag_ids" in values:
        values["tag_ids"] = check_tag_ids(db, code.org_id, values["tag_ids"])
    for key, value in values.items():
        setattr(code, key, value)
    db.flush()
    return code


# --- routing --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    """The account a new contact was routed to; its place is reserved for the local day."""

    account_id: int
    pool_id: int
    backup: bool


@dataclass
class _CachedRouter:
    router: PoolRouter
    revision: int
    loaded_at: float
    lock: threading.Lock


_ROUTERS: dict[tuple[int, int, int], _CachedRouter] = {}
_ROUTERS_LOCK = threading.Lock()


def _day_of(now: datetime, zone: ZoneInfo) -> date:
    # Day loads (and so daily caps) run by the organization's calendar day, the day health reads them by.
    return local(now, zone).date()


def load_slots(db: Session, pool: RoutingPool, now: datetime, zone: ZoneInfo) -> list[Slot]:
    """The routing state of a pool's members from the database, for the day of `now` in ``zone``."""
    day = _day_of(now, zone)
    rows = db.execute(
        select(PoolMember, Account, AccountDayLoad.adds, AccountDayLoad.pending)
        .join(Account, Account.id == PoolMember.account_id)
        .outerjoin(AccountDayLoad, (AccountDayLoad.account_id == Account.id) & (AccountDayLoad.day == day))
        .where(PoolMember.pool_id == pool.id)
    ).all()
    return [
        Slot(
            account_id=acct.id,
            load=acct.friend_count + (pending or 0),
            soft_cap=acct.soft_cap,
            hard_cap=acct.hard_cap,
            day_adds=adds or 0,
            daily_cap=warmup_daily_cap(acct.created_at, now, pool.warmup, pool.daily_cap),
            active=acct.status == AccountStatus.active,
            is_backup=member.is_backup,
            regions=frozenset(member.regions or ()),
            mask=hours_mask(member.hours),
        )
        for member, acct, adds, pending in rows
    ]


def _router_for(db: Session, pool: RoutingPool, now: datetime, zone: ZoneInfo) -> _CachedRouter:
    key = (id(db.get_bind().engine), pool.org_id, pool.id)
    day = _day_of(now, zone)
    with _ROUTERS_LOCK:
        cached = _ROUTERS.get(key)
        fresh = (
            cached is not None
            and cached.revision == pool.revision
            and cached.router.day == day
            and time.monotonic() - cached.loaded_at < ROUTER_TTL_SECONDS
        )
        if not fresh:
            router = PoolRouter.build(pool.rule, day, load_slots(db, pool, now, zone))
            cached = _CachedRouter(router, pool.revision, time.monotonic(), threading.Lock())
            _ROUTERS[key] = cached
        assert cached is not None
        return cached


def forget_routers() -> None:
    """Drop every cached router (tests; or after bulk changes made outside this module)."""
    with _ROUTERS_LOCK:
        _ROUTERS.clear()


def _ensure_day_row(db: Session, org_id: int, account_id: int, day: date) -> None:
    # INSERT ... SELECT: a removed account gets no row (and no foreign-key error), so reserving it just fails.
    source = select(literal(org_id), Account.id, literal(day, Date), literal(0), literal(0)).where(
        Account.id == account_id, Account.org_id == org_id
    )
    db.execute(
        insert_ignore(db, AccountDayLoad.__table__, ["account_id", "day"]).from_select(
            ["org_id", "account_id", "day", "adds", "pending"], source
        )
    )


def reserve(db: Session, org_id: int, account_id: int, day: date, daily_cap: int, *, backup: bool) -> bool:
    """Take one place on the account for the day, atomically: one conditional UPDATE that checks the
    daily cap, the account's status and friends plus reservations against its cap (soft for primaries,
    hard for backups). True if taken."""
    _ensure_day_row(db, org_id, account_id, day)
    load = Account.friend_count + AccountDayLoad.pending
    account_ok = [
        Account.id == account_id,
        Account.org_id == org_id,
        Account.status == AccountStatus.active,
        load < Account.hard_cap,
    ]
    if not backup:
        account_ok.append(load < Account.soft_cap)
    result = db.execute(
        update(AccountDayLoad)
        .where(
            AccountDayLoad.account_id == account_id,
            AccountDayLoad.day == day,
            AccountDayLoad.adds < daily_cap,
            exists().where(*account_ok),
        )
        .values(adds=AccountDayLoad.adds + 1, pending=AccountDayLoad.pending + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _refresh_slot(db: Session, cached: _CachedRouter, account_id: int, day: date) -> None:
    row = db.execute(
        select(Account.friend_count, Account.status, AccountDayLoad.adds, AccountDayLoad.pending)
        .outerjoin(AccountDayLoad, (AccountDayLoad.account_id == Account.id) & (AccountDayLoad.day == day))
        .where(Account.id == account_id)
    ).first()
    with cached.lock:
        if row is None:  # the account was removed: the pool keeps routing over the others
            cached.router.remove(account_id)
            return
        friends, status, adds, pending = row
        cached.router.update(
            account_id,
            load=friends + (pending or 0),
            day_adds=adds or 0,
            active=status == AccountStatus.active,
        )


def route_new_contact(
    db: Session,
    org_id: int,
    pool_id: int,
    *,
    region: str | None = None,
    now: datetime | None = None,
) -> Assignment:
    """Choose the account for a new contact by the pool's rule and reserve its place (409 when all are full).

    Primaries below their soft cap come first; backups (up to their hard cap) only when no primary is
    free. Paused, blocked and resigned accounts and those at today's (warm-up) add cap are skipped.
    """
    now = ensure_utc(now) if now is not None else utcnow()
    pool = get_pool(db, org_id, pool_id)
    zone = org_zone(db, org_id)
    cached = _router_for(db, pool, now, zone)
    router = cached.router
    # Members' hours are the organization's wall-clock hours.
    hour = hour_of_week(local(now, zone)) if pool.rule is RoutingRule.schedule else None
    for _ in range(RESERVE_ATTEMPTS):
        # The in-memory pick is taken optimistically under the lock; the database call happens outside
        # it, so a transaction that routes twice can never wait on a lock held by one waiting on its rows.
        with cached.lock:
            slot = router.choose(hour=hour, region=region)
            if slot is None:
                break
            router.commit(slot)
            account_id, daily_cap, backup = slot.account_id, slot.daily_cap, slot.is_backup
        if reserve(db, org_id, account_id, router.day, daily_cap, backup=backup):
            return Assignment(account_id=account_id, pool_id=pool.id, backup=backup)
        # Another process took the place, or the account changed: learn its real state and choose again.
        _refresh_slot(db, cached, account_id, router.day)
    raise Conflict(f"no account in pool {pool.name!r} can take a new contact now", field="pool_id")


def route_for_code(
    db: Session, org_id: int, code: ChannelCode, *, region: str | None = None, now: datetime | None = None
) -> Assignment:
    """Route a new contact arriving through a code over the code's pool."""
    if code.status is not CodeStatus.active:
        raise Conflict("the channel code is archived", field="code_id")
    return route_new_contact(db, org_id, code.pool_id, region=region, now=now)


# --- adds -----------------------------------------------------------------------------------------


def _settle_day(db: Session, org_id: int, account_id: int, day: date) -> None:
    # A routed add turns its reservation into a friend (follow() raises friend_count); an add the
    # carrier routed by itself still counts against the daily cap.
    taken = db.execute(
        update(AccountDayLoad)
        .where(AccountDayLoad.account_id == account_id, AccountDayLoad.day == day, AccountDayLoad.pending > 0)
        .values(pending=AccountDayLoad.pending - 1)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not taken:
        _ensure_day_row(db, org_id, account_id, day)
        db.execute(
            update(AccountDayLoad)
            .where(AccountDayLoad.account_id == account_id, AccountDayLoad.day == day)
            .values(adds=AccountDayLoad.adds + 1)
            .execution_options(synchronize_session=False)
        )


def record_add(
    db: Session,
    org_id: int,
    code: ChannelCode,
    customer_id: int,
    account_id: int | None,
    at: datetime,
) -> ChannelAdd:
    """Book that a customer came in through `code` to `account_id` at `at` (idempotent per code,
    customer and account): settles the reservation, sets first/last touch and raises cap alerts.
    Part of `channels.adds.contact_added_through_code`, which callers use (it also tags and records)."""
    at = ensure_utc(at)
    if code.org_id != org_id:
        raise NotFound("channel code not found", field="code_id")
    if (
        account_id is not None
        and db.scalar(select(Account.id).where(Account.id == account_id, Account.org_id == org_id)) is None
    ):
        raise Invalid(f"account {account_id} does not exist", field="account_id")
    existing = db.scalar(
        select(ChannelAdd).where(
            ChannelAdd.code_id == code.id,
            ChannelAdd.customer_id == customer_id,
            ChannelAdd.account_id == account_id,
        )
    )
    if existing is not None:
        return existing
    add = ChannelAdd(
        org_id=org_id, code_id=code.id, customer_id=customer_id, account_id=account_id, added_at=at
    )
    db.add(add)
    db.flush()
    zone = org_zone(db, org_id)
    if account_id is not None:
        _settle_day(db, org_id, account_id, _day_of(at, zone))
    attribution.touch(db, org_id, customer_id, code, at)
    if account_id is not None:
        cap = _daily_cap_of(db, code, account_id, at)
        health.check_caps(db, org_id, account_id, at, daily_cap=cap, zone=zone)
    db.flush()
    return add


def _daily_cap_of(db: Session, code: ChannelCode, account_id: int, at: datetime) -> int | None:
    pool = db.get(RoutingPool, code.pool_id)
    created = db.scalar(select(Account.created_at).where(Account.id == account_id))
    if pool is None or created is None:
        return None
    return warmup_daily_cap(created, at, pool.warmup, pool.daily_cap)


def welcome_for(code: ChannelCode | None, default: str = "") -> str:
    """The welcome message for a customer added through `code`: the code's own, else the default."""
    return code.welcome_message if code is not None and code.welcome_message else default


def lead_code_provider(db: Session, org_id: int, lead: Any, comment: Any) -> tuple[str, str]:
    """Wired into lead replies by `siyu/subscriptions.py`: the newest active code of the comment's platform,
    with a place reserved on its pool; returns (state, QR URL)."""
    platform = str(getattr(comment, "platform", "") or getattr(lead, "platform", ""))
    code = db.scalar(
        select(ChannelCode)
        .where(
            ChannelCode.org_id == org_id,
            ChannelCode.channel == platform,
            ChannelCode.status == CodeStatus.active,
        )
        .order_by(ChannelCode.id.desc())
        .limit(1)
    )
    if code is None:
        raise Invalid(
            f"no active channel code for platform {platform!r}; create one first", field="code_state"
        )
    route_for_code(db, org_id, code)
    return code.state, code.qr_url


def lead_code_by_id(db: Session, org_id: int, code_id: int) -> tuple[str, str]:
    """Wired into lead replies by `siyu/subscriptions.py`: (state, QR URL) of the active code an operator chose
    to reply to a lead with."""
    code = get_code(db, org_id, code_id)
    if code.status is not CodeStatus.active:
        raise Conflict("the channel code is archived", field="code_id")
    if not code.qr_url:
        raise Invalid("the channel code has no link to send", field="code_id")
    return code.state, code.qr_url
