"""Channel reports, day loads and alerts count calendar days of the organization's time zone: an organization
in Los Angeles sees two adds eight hours apart on two days, where Shanghai sees one."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.analytics.roi import code_costs
from siyu.channels import attribution, health, service
from siyu.channels.models import AccountAlert, AccountDayLoad, AlertKind, ChannelCode
from siyu.channels.schemas import CodeIn, MemberIn, PoolIn
from siyu.customers import follows
from siyu.customers.models import Customer
from siyu.integrations.sandbox.channel_codes import SandboxChannelCodes
from siyu.kit.errors import Conflict
from siyu.tenancy import service as identity

# 2026-11-24 02:00 UTC is the 24th at 10:00 in Shanghai but the 23rd at 18:00 in Los Angeles (UTC-8);
# 10:00 UTC is the 24th in both (18:00 and 02:00).
EVENING_LA = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
NIGHT_LA = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
NOV_23, NOV_24 = date(2026, 11, 23), date(2026, 11, 24)


@pytest.fixture(autouse=True)
def _fresh_routers() -> None:
    service.forget_routers()


def _org(db: Session, make_tenant, zone: str | None, daily_cap: int = 1) -> tuple[int, Account, ChannelCode]:  # type: ignore[no-untyped-def]
    """An organization (in ``zone`` if given) with one account in a pool of that daily cap, and a code."""
    org_id = make_tenant().org_id
    if zone:
        identity.set_org_timezone(db, org_id, zone)
    acct = Account(
        org_id=org_id,
        kind=AccountKind.wecom_member,
        external_id="a",
        name="a",
        soft_cap=100,
        hard_cap=200,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    db.add(acct)
    db.flush()
    pool = service.create_pool(
        db, org_id, PoolIn(name="p", members=[MemberIn(account_id=acct.id)], daily_cap=daily_cap, warmup=[])
    )
    code = service.create_code(
        db, org_id, CodeIn(name="Live", state="live", channel="live", pool_id=pool.id), SandboxChannelCodes()
    )
    return org_id, acct, code


def _add(db: Session, org_id: int, acct: Account, code: ChannelCode, at: datetime, name: str) -> int:
    """Route a new contact through the code, follow and book the add, as a scan does."""
    assignment = service.route_for_code(db, org_id, code, now=at)
    assert assignment.account_id == acct.id
    c = Customer(org_id=org_id, name=name)
    db.add(c)
    db.flush()
    follows.follow_relation(db, org_id, c, acct.id, None, since=at, state=code.state)
    service.record_add(db, org_id, code, c.id, acct.id, at)
    return c.id


def test_reports_bucket_adds_by_the_organizations_day(db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    org_id, acct, code = _org(db, make_tenant, "America/Los_Angeles")
    _add(db, org_id, acct, code, EVENING_LA, "evening")
    _add(db, org_id, acct, code, NIGHT_LA, "night")

    daily = attribution.adds_per_day(db, org_id, NOV_23, NOV_24)
    assert [(d.day, d.adds) for d in daily] == [(NOV_23, 1), (NOV_24, 1)]
    assert [(d.day, d.adds) for d in attribution.adds_per_day(db, org_id, NOV_24, NOV_24)] == [(NOV_24, 1)]
    assert attribution.new_friends_per_day(db, org_id, NOV_23, NOV_24) == {
        ("live", NOV_23): 1,
        ("live", NOV_24): 1,
    }
    costs = code_costs(db, org_id, NOV_24, NOV_24)
    [row] = attribution.code_report(db, org_id, NOV_24, NOV_24, costs)
    assert row.adds == 1

    # The same two adds in an organization on Shanghai time (the default) fall on one day.
    sh_org, sh_acct, sh_code = _org(db, make_tenant, None, daily_cap=10)
    _add(db, sh_org, sh_acct, sh_code, EVENING_LA, "evening")
    _add(db, sh_org, sh_acct, sh_code, NIGHT_LA, "night")
    assert [(d.day, d.adds) for d in attribution.adds_per_day(db, sh_org, NOV_23, NOV_24)] == [(NOV_24, 2)]
    assert attribution.new_friends_per_day(db, sh_org, NOV_23, NOV_24) == {("live", NOV_24): 2}


def test_day_loads_caps_and_alerts_follow_the_organizations_day(db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    org_id, acct, code = _org(db, make_tenant, "America/Los_Angeles")
    _add(db, org_id, acct, code, EVENING_LA, "evening")
    # The daily cap of 1 is spent for the 23rd in Los Angeles; eight hours later it is the 24th there.
    _add(db, org_id, acct, code, NIGHT_LA, "night")
    loads = db.execute(
        select(AccountDayLoad.day, AccountDayLoad.adds, AccountDayLoad.pending)
        .where(AccountDayLoad.account_id == acct.id)
        .order_by(AccountDayLoad.day)
    ).all()
    assert [tuple(r) for r in loads] == [(NOV_23, 1, 0), (NOV_24, 1, 0)]
    [h] = health.account_health(db, org_id, now=NIGHT_LA)
    assert (h.adds_today, h.adds) == (1, 2)
    near_daily = db.scalars(
        select(AccountAlert.day)
        .where(AccountAlert.account_id == acct.id, AccountAlert.kind == AlertKind.near_daily_cap.value)
        .order_by(AccountAlert.day)
    ).all()
    assert near_daily == [NOV_23, NOV_24]

    # Staff deleting a customer at each time: one alert per account, kind and Los Angeles day, so two.
    for at, name in ((EVENING_LA, "evening"), (NIGHT_LA, "night")):
        customer = db.scalar(select(Customer).where(Customer.org_id == org_id, Customer.name == name))
        assert customer is not None
        follows.unfollow_customer(db, org_id, customer, acct.id, by="staff", at=at)
        health.note_deletion(db, org_id, acct.id, by="staff", at=at)
    staff = db.scalars(
        select(AccountAlert.day)
        .where(AccountAlert.account_id == acct.id, AccountAlert.kind == AlertKind.deleted_by_staff.value)
        .order_by(AccountAlert.day)
    ).all()
    assert staff == [NOV_23, NOV_24]


def test_shanghai_organization_keeps_one_day_and_its_cap(db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    org_id, acct, code = _org(db, make_tenant, None)
    _add(db, org_id, acct, code, EVENING_LA, "evening")
    # Both times are the 24th in Shanghai: the daily cap of 1 is spent.
    with pytest.raises(Conflict):
        service.route_for_code(db, org_id, code, now=NIGHT_LA)
    [h] = health.account_health(db, org_id, now=NIGHT_LA)
    assert h.adds_today == 1
    assert db.scalars(select(AccountDayLoad.day).where(AccountDayLoad.account_id == acct.id)).all() == [
        NOV_24
    ]
