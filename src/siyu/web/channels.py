"""Console page for acquisition: channel codes with their QR images, routing pools, account health,
open alerts, and a chart of new friends per code per day (drawn by the dashboard's ECharts script)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Response

from siyu.analytics import acquisition
from siyu.analytics import service as analytics
from siyu.analytics.roi import code_costs
from siyu.channels import attribution, health, service
from siyu.kit.clock import local, utcnow
from siyu.tenancy.deps import DbSession
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.templating import render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)
REPORT_DAYS = 30


@router.get("/channels")
def channels_page(db: DbSession, ctx: Console) -> Response:
    """Codes, pools, account health, alerts and the last 30 days' new friends per code."""
    assert ctx.principal is not None
    org_id = ctx.principal.org_id
    zone = ZoneInfo(ctx.timezone)
    today = local(utcnow(), zone).date()
    start = today - timedelta(days=REPORT_DAYS - 1)
    codes = service.list_codes(db, org_id)
    days = [start + timedelta(days=i) for i in range(REPORT_DAYS)]
    visible = health.visible_account_ids(db, ctx.principal)
    # Every new friend counts, as on the dashboard: those through one of the codes under its name, the rest
    # (added by search, a card, a group, a code made outside siyu) in one series of their own.
    # Counted on the analytics projection (a month of follows is 440,000 events at a million customers).
    bounds = [datetime.combine(d, time.min, zone) for d in [*days, today + timedelta(days=1)]]
    with analytics.projection_of_app(ctx.request.app.state).locked() as engine:
        per_day = acquisition.new_friends_per_day(engine, org_id, days, bounds, account_ids=visible)
    names = {c.state: c.name for c in codes}
    grouped: dict[str, list[int]] = {}
    for (state, day), n in per_day.items():
        grouped.setdefault(names.get(state, ""), [0] * REPORT_DAYS)[(day - start).days] += n
    without_code = ctx.gettext("Not through a channel code")
    order = sorted(grouped, key=lambda n: (n == "", n))
    chart = {
        "days": [d.isoformat() for d in days],
        "series": [{"name": name or without_code, "data": grouped[name]} for name in order],
        "totals": [sum(grouped[name][i] for name in order) for i in range(REPORT_DAYS)],
    }
    pools = [service.pool_out(db, p) for p in service.list_pools(db, org_id)]
    account_health = health.account_health(db, org_id, account_ids=visible)
    costs = code_costs(db, org_id, start, today)
    return render(
        ctx,
        "channels/index.html",
        active="channels",
        codes=codes,
        pools=pools,
        pool_names={p.id: p.name for p in pools},
        report={r.code_id: r for r in attribution.code_report(db, org_id, start, today, costs)},
        health=account_health,
        account_names={h.account_id: h.name for h in account_health},
        alerts=health.list_alerts(db, org_id, limit=50, account_ids=visible),
        chart=chart,
    )
