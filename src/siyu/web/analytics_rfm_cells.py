"""Console page: the buyers in one cell of the RFM grid (recency score x frequency score), each linking to
their customer page. The grid's cells link here; saving a cell as a segment waits for segments, which
siyu does not have yet (the page says so)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from siyu.analytics import service
from siyu.kit.clock import utcnow
from siyu.tenancy.deps import DbSession
from siyu.web import queries
from siyu.web.analytics_pages import _base, _org
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.templating import render

router = APIRouter(prefix="/analytics", include_in_schema=False, route_class=ConsoleRoute)
SHOWN = 200


@router.get("/rfm/customers")
def rfm_cell_page(
    db: DbSession,
    ctx: Console,
    r: Annotated[int, Query(ge=1, le=5)],
    f: Annotated[int, Query(ge=1, le=5)],
) -> Response:
    """The buyers scored ``r`` for recency and ``f`` for frequency, biggest spenders first."""
    org = _org(ctx)
    proj = service.projection_of_app(ctx.request.app.state)
    with proj.locked() as eng:
        as_of = utcnow()
        buyers = service.rfm_cell(eng, org, r, f, as_of=as_of, buyers=proj.buyers_sql(org, as_of))
    shown = buyers[:SHOWN]
    return render(
        ctx,
        "analytics/rfm_cell.html",
        **_base(ctx, "rfm"),
        r=r,
        f=f,
        total=len(buyers),
        buyers=shown,
        names=queries.customer_names(db, org, [b.customer_id for b in shown]),
    )
