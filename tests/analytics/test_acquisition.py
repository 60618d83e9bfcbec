"""The channels page's new friends per code and day on the projection equal the event log's reference
(``siyu.channels.attribution.new_friends_per_day``), at the days' edges and per account."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.analytics import acquisition
from siyu.analytics.projection import Projection
from siyu.channels import attribution
from siyu.customers import follows as follow_relations
from siyu.customers import profiles
from siyu.kit.clock import SHANGHAI


def test_projection_counts_equal_the_event_log(
    engine: Engine, db: Session, make_tenant, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    org = make_tenant().org_id
    other = make_tenant().org_id
    one, two = (
        accounts.create_account(
            db, org, AccountIn(kind=AccountKind.wecom_member, external_id=f"m{i}", name=f"m{i}")
        )
        for i in (1, 2)
    )
    first, last = date(2026, 3, 1), date(2026, 3, 5)
    midnight = datetime.combine(date(2026, 3, 3), time.min, SHANGHAI).astimezone(UTC)
    follows = [
        (one.id, "store-1", midnight - timedelta(microseconds=1)),  # the day before, by a microsecond
        (one.id, "store-1", midnight),
        (two.id, "store-1", midnight + timedelta(hours=5)),
        (two.id, None, midnight + timedelta(hours=6)),
        (one.id, "", midnight + timedelta(days=1)),
        (one.id, "web", datetime.combine(first, time.min, SHANGHAI)),  # the range's first instant
        (one.id, "web", datetime.combine(last + timedelta(days=1), time.min, SHANGHAI)),  # just after it
        (two.id, "web", datetime.combine(first, time.min, SHANGHAI) - timedelta(seconds=1)),  # just before
    ]
    for n, (account_id, state, at) in enumerate(follows):
        c = profiles.create_customer(db, org, {"name": f"客{n}"})
        follow_relations.follow(db, org, c.id, account_id, since=at, state=state)
    decoy = profiles.create_customer(db, other, {"name": "别家"})
    acct = accounts.create_account(
        db, other, AccountIn(kind=AccountKind.wecom_member, external_id="x", name="x")
    )
    follow_relations.follow(db, other, decoy.id, acct.id, since=midnight, state="store-1")
    db.commit()

    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    bounds = [datetime.combine(d, time.min, SHANGHAI) for d in [*days, last + timedelta(days=1)]]
    projection = Projection(engine, tmp_path / "p.duckdb", min_interval_seconds=0)
    with projection.locked() as duck:
        for ids in (None, [one.id], [two.id], []):
            want = attribution.new_friends_per_day(
                db, org, first, last, account_ids=None if ids is None else set(ids)
            )
            assert acquisition.new_friends_per_day(duck, org, days, bounds, account_ids=ids) == want
        everyone = acquisition.new_friends_per_day(duck, org, days, bounds)
    assert everyone[("store-1", date(2026, 3, 2))] == 1 and everyone[("store-1", date(2026, 3, 3))] == 2
    assert everyone[("", date(2026, 3, 3))] == 1 and everyone[("", date(2026, 3, 4))] == 1
    assert sum(everyone.values()) == 6
    projection.close()
