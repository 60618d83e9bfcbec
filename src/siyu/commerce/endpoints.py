"""REST endpoints for orders, and the CSV import endpoints (customers and orders)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from pydantic import AwareDatetime

from siyu.analytics import service as analytics
from siyu.commerce import service
from siyu.commerce.importers import import_orders_csv
from siyu.commerce.schemas import OrderIn, OrderOut
from siyu.customers.importer import import_customers_csv
from siyu.kit.bulk import ImportReport
from siyu.kit.pagination import Page
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession

router = APIRouter(prefix="/api/v1", tags=["commerce"])


@router.post(
    "/orders",
    response_model=OrderOut,
    status_code=201,
    responses={200: {"model": OrderOut, "description": "Already stored for this platform and order id."}},
)
def post_order(body: OrderIn, response: Response, db: DbSession, principal: CurrentPrincipal) -> OrderOut:
    """Store a paid order (201); the same platform + external_id again answers 200 with the stored order."""
    order, created = service.create_order(db, principal, body)
    if not created:
        response.status_code = 200
    return service.with_items(db, [order])[0]


@router.get("/orders", response_model=Page[OrderOut])
def get_orders(
    db: DbSession,
    principal: CurrentPrincipal,
    customer_id: int | None = Query(default=None, ge=1),
    platform: str | None = Query(default=None, max_length=30),
    since: AwareDatetime | None = Query(default=None, description="paid_at >= since"),
    until: AwareDatetime | None = Query(default=None, description="paid_at < until"),
    cursor: int | None = Query(default=None, ge=1),
    limit: int = Query(default=100, ge=1, le=1000),
) -> Page[OrderOut]:
    """Orders newest first, filtered by customer, platform and paid_at range; page with ``cursor``."""
    rows, next_cursor = service.list_orders(
        db,
        principal,
        customer_id=customer_id,
        platform=platform,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return Page[OrderOut](items=service.with_items(db, rows), next_cursor=next_cursor)


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: int, db: DbSession, principal: CurrentPrincipal) -> OrderOut:
    """One order with its lines."""
    return service.with_items(db, [service.get_order(db, principal, order_id)])[0]


# Imports write in chunks, one transaction each, through the app's session factory rather than the
# request's transaction: a 100,000-row file must not be one giant transaction.


@router.post("/imports/customers", response_model=ImportReport)
def import_customers(
    request: Request,
    principal: AdminPrincipal,
    file: UploadFile = File(description="CSV, UTF-8 or GBK; see siyu.customers.importer for the columns."),
    strict: bool = Form(default=False, description="Store nothing if any row is bad."),
) -> ImportReport:
    """Import customers from a CSV upload (admins); answers the report with each bad row and why."""
    report = import_customers_csv(request.app.state.sessionmaker, principal.org_id, file.file, strict=strict)
    analytics.after_bulk_write(request.app.state.engine, principal.org_id, report.created + report.updated)
    return report


@router.post("/imports/orders", response_model=ImportReport)
def import_orders(
    request: Request,
    principal: AdminPrincipal,
    file: UploadFile = File(description="CSV, UTF-8 or GBK; see siyu.commerce.importers for the formats."),
    format: Literal["generic", "taobao"] = Form(default="generic"),
    strict: bool = Form(default=False, description="Store nothing if any row is bad."),
) -> ImportReport:
    """Import orders from a generic or Taobao CSV upload (admins); idempotent, bad rows reported."""
    report = import_orders_csv(
        request.app.state.sessionmaker, principal.org_id, file.file, format, strict=strict
    )
    analytics.after_bulk_write(request.app.state.engine, principal.org_id, report.created + report.updated)
    return report
