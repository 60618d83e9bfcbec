"""Console page for acquisition: channel codes with their QR images, routing pools, account health,
open alerts, and a chart of adds per code per day (drawn by the dashboard's ECharts script)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response

from siyu.analytics.roi import code_costs
from siyu.channels import attribution, health, service
from siyu.kit.clock import SHANGHAI, local, utcnow
from siyu.tenancy.deps import DbSession
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.templating import render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)
REPORT_DAYS = 30


@router.get("/channels")
def channels_page(db: DbSession, ctx: Console) -> Response:
    """Codes, pools, account health, alerts and the last 30 days' adds per code."""
    assert ctx.principal is not None
    org_id = ctx.principal.org_id
    today = local(utcnow(), SHANGHAI).date()
    start = today - timedelta(days=REPORT_DAYS - 1)
    codes = service.list_codes(db, org_id)
    days = [start + timedelta(days=i) for i in range(REPORT_DAYS)]
    per_day = {(r.code_id, r.day): r.adds for r in attribution.adds_per_day(db, org_id, start, today)}
    series = [{"name": c.name, "data": [per_day.get((c.id, d), 0) for d in days]} for c in codes]
    chart = {
        "days": [d.isoformat() for d in days],
        "series": series,
        "totals": [sum(per_day.get((c.id, d), 0) for c in codes) for d in days],
    }
    pools = [service.pool_out(db, p) for p in service.list_pools(db, org_id)]
    costs = code_costs(db, org_id, start, today)
    visible = health.visible_account_ids(db, ctx.principal)
    return render(
        ctx,
        "channels/index.html",
        active="channels",
        codes=codes,
        pools=pools,
        report={r.code_id: r for r in attribution.code_report(db, org_id, start, today, costs)},
        health=health.account_health(db, org_id, account_ids=visible),
        alerts=health.list_alerts(db, org_id, limit=50, account_ids=visible),
        chart=chart,
    )
