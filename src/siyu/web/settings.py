"""Console settings: everything a team sets itself up with, each page in its own module; this router
gathers them and ``/settings`` opens the first page the reader may use."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from siyu.web.auth import Console, ConsoleRoute
from siyu.web.settings_codes import router as codes_router
from siyu.web.settings_customers import router as customers_router
from siyu.web.settings_douyin import router as douyin_router
from siyu.web.settings_pools import router as pools_router
from siyu.web.settings_tags import router as tags_router
from siyu.web.settings_team import router as team_router

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)


@router.get("/settings")
def settings_home(ctx: Console) -> Response:
    """Admins land on the channel codes; others on what they may change (their API tokens)."""
    assert ctx.principal is not None
    target = "/settings/channel-codes" if ctx.principal.can_administer else "/settings/tokens"
    return RedirectResponse(target, status_code=303)


for _module_router in (codes_router, pools_router, team_router, tags_router, customers_router, douyin_router):
    router.include_router(_module_router)
