"""REST endpoints: routing pools, channel codes (with QR images), routing, account health, alerts,
acquisition reports and customers' first/last touch. Reads for every role; writes for admins."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from siyu.channels import adds, attribution, health, service
from siyu.channels.carriers import code_creator
from siyu.channels.models import AccountAlert, ChannelCode, CodeStatus, CustomerTouch
from siyu.channels.qr import qr_image
from siyu.channels.schemas import (
    AlertOut,
    CodeIn,
    CodeOut,
    CodePatch,
    DailyAddsOut,
    HealthOut,
    PoolIn,
    PoolOut,
    PoolPatch,
    RouteIn,
    RouteOut,
    TouchOut,
)
from siyu.customers import access
from siyu.integrations.wecom.errors import WeComError
from siyu.kit.errors import Conflict
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession

router = APIRouter(prefix="/api/v1/channels", tags=["channels"])


# --- pools ----------------------------------------------------------------------------------------


@router.get("/pools", response_model=list[PoolOut])
def list_pools(db: DbSession, principal: CurrentPrincipal) -> list[PoolOut]:
    """The organization's routing pools with their members."""
    return [service.pool_out(db, p) for p in service.list_pools(db, principal.org_id)]


@router.post("/pools", response_model=PoolOut, status_code=201)
def create_pool(body: PoolIn, db: DbSession, principal: AdminPrincipal) -> PoolOut:
    """Create a routing pool (admins)."""
    return service.pool_out(db, service.create_pool(db, principal.org_id, body))


@router.get("/pools/{pool_id}", response_model=PoolOut)
def get_pool(pool_id: int, db: DbSession, principal: CurrentPrincipal) -> PoolOut:
    """One pool."""
    return service.pool_out(db, service.get_pool(db, principal.org_id, pool_id))


@router.patch("/pools/{pool_id}", response_model=PoolOut)
def update_pool(pool_id: int, body: PoolPatch, db: DbSession, principal: AdminPrincipal) -> PoolOut:
    """Change a pool's rule, caps, warm-up or members (admins)."""
    pool = service.update_pool(db, service.get_pool(db, principal.org_id, pool_id), body)
    return service.pool_out(db, pool)


@router.post("/pools/{pool_id}/route", response_model=RouteOut)
def route(pool_id: int, body: RouteIn, db: DbSession, principal: AdminPrincipal) -> RouteOut:
    """Choose and reserve the account for a new contact (409 when every account is full). Admins only:
    each call takes one of the day's slots with no contact behind it, so an operator could use them all up."""
    got = service.route_new_contact(db, principal.org_id, pool_id, region=body.region)
    return RouteOut(account_id=got.account_id, pool_id=got.pool_id, backup=got.backup)


# --- codes ----------------------------------------------------------------------------------------


@router.get("/codes", response_model=list[CodeOut])
def list_codes(
    db: DbSession, principal: CurrentPrincipal, status: CodeStatus | None = None
) -> list[ChannelCode]:
    """The organization's channel codes, newest first."""
    return service.list_codes(db, principal.org_id, status=status)


@router.post("/codes", response_model=CodeOut, status_code=201)
def create_code(body: CodeIn, request: Request, db: DbSession, principal: AdminPrincipal) -> ChannelCode:
    """Issue a channel code on its carrier for a pool (admins)."""
    creator = code_creator(request, db, principal.org_id, body.carrier)
    try:
        return service.create_code(db, principal.org_id, body, creator)
    except WeComError as exc:  # the API answered with an error: say so instead of a 500
        raise Conflict(f"WeCom refused the code: {exc}", field="carrier") from exc


@router.get("/codes/{code_id}", response_model=CodeOut)
def get_code(code_id: int, db: DbSession, principal: CurrentPrincipal) -> ChannelCode:
    """One channel code."""
    return service.get_code(db, principal.org_id, code_id)


class ScanIn(BaseModel):
    """A simulated scan of a sandbox code."""

    name: str = Field(default="", max_length=120, description="The scanning person's display name.")


class ScanOut(BaseModel):
    """Where the simulated scan landed."""

    customer_id: int
    account_id: int


@router.post("/codes/{code_id}/scan", response_model=ScanOut)
def scan_code(code_id: int, body: ScanIn, db: DbSession, principal: AdminPrincipal) -> ScanOut:
    """Demo and tests: a person scans a sandbox code and adds the routed account (admins)."""
    code = service.get_code(db, principal.org_id, code_id)
    done = adds.simulate_scan(db, principal.org_id, code, name=body.name)
    return ScanOut(customer_id=done.customer_id, account_id=done.account_id)


@router.patch("/codes/{code_id}", response_model=CodeOut)
def update_code(code_id: int, body: CodePatch, db: DbSession, principal: AdminPrincipal) -> ChannelCode:
    """Change a code's labels, pool, auto-tags, templates, cost or status (admins)."""
    return service.update_code(db, service.get_code(db, principal.org_id, code_id), body)


@router.get(
    "/codes/{code_id}/qr.{fmt}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}},
)
def code_qr(
    code_id: int,
    fmt: str,
    db: DbSession,
    principal: CurrentPrincipal,
    scale: Annotated[int, Query(ge=1, le=40)] = 10,
) -> Response:
    """The code's QR image for print, as PNG or SVG."""
    code = service.get_code(db, principal.org_id, code_id)
    body, media = qr_image(code.qr_url, fmt, scale=scale)
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="channel-code-{code.state}.{fmt}"'},
    )


# --- health and alerts ----------------------------------------------------------------------------


@router.get("/health", response_model=list[HealthOut])
def account_health(
    db: DbSession, principal: CurrentPrincipal, days: Annotated[int, Query(ge=1, le=90)] = 7
) -> list[HealthOut]:
    """Health of the caller's visible accounts (all for admins) over the last `days` days."""
    return health.account_health(
        db, principal.org_id, days=days, account_ids=health.visible_account_ids(db, principal)
    )


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(db: DbSession, principal: CurrentPrincipal, open_only: bool = True) -> list[AccountAlert]:
    """Alerts of the caller's visible accounts, newest first (open ones unless open_only=false)."""
    return health.list_alerts(
        db, principal.org_id, open_only=open_only, account_ids=health.visible_account_ids(db, principal)
    )


@router.post("/alerts/scan")
def scan_alerts(db: DbSession, principal: AdminPrincipal) -> dict[str, int]:
    """Sweep every account for cap, deletion and health alerts now (admins)."""
    return {"new_alerts": health.scan_alerts(db, principal.org_id)}


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut)
def resolve_alert(alert_id: int, db: DbSession, principal: AdminPrincipal) -> AccountAlert:
    """Mark an alert handled (admins)."""
    return health.resolve_alert(db, principal.org_id, alert_id)


# --- reports and attribution ----------------------------------------------------------------------


@router.get("/reports/daily", response_model=list[DailyAddsOut])
def daily_adds(
    date_from: date, date_to: date, db: DbSession, principal: CurrentPrincipal, code_id: int | None = None
) -> list[DailyAddsOut]:
    """Adds per code per local day over [date_from, date_to]."""
    return attribution.adds_per_day(db, principal.org_id, date_from, date_to, code_id)


@router.get("/customers/{customer_id}/touches", response_model=list[TouchOut])
def customer_touches(customer_id: int, db: DbSession, principal: CurrentPrincipal) -> list[CustomerTouch]:
    """A visible customer's first- and last-touch source."""
    customer = access.get_customer(db, principal, customer_id)
    return attribution.touches_of(db, principal.org_id, customer.id)
