"""REST endpoints of personal-data rights: export and erase a customer (admins), consent records,
retention settings (admins)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from siyu.customers import consent
from siyu.customers.models import ConsentRecord
from siyu.privacy import service
from siyu.privacy.schemas import ConsentIn, ConsentOut, EraseIn, ErasureOut, RetentionIn, RetentionOut
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession

router = APIRouter(prefix="/api/v1", tags=["privacy"])
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/customers/{customer_id}/export")
def export_customer(customer_id: Id, db: DbSession, principal: AdminPrincipal) -> Response:
    """Everything held on the customer, as a JSON file to hand to them (admins; audited)."""
    data = service.export_customer(db, principal, customer_id)
    body = json.dumps(data, ensure_ascii=False, indent=2)
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="customer-{data["profile"]["id"]}.json"'},
    )


@router.post("/customers/{customer_id}/erase", response_model=ErasureOut)
def erase_customer(customer_id: Id, body: EraseIn, db: DbSession, principal: AdminPrincipal) -> ErasureOut:
    """Erase the customer's personal data on request (admins; ``confirm`` repeats the id; audited)."""
    erasure, audit_id = service.erase_customer(db, principal, customer_id, body.confirm)
    return ErasureOut(
        customer_id=erasure.customer_id,
        merged_ids=erasure.merged_ids,
        counts=erasure.counts,
        audit_id=audit_id,
    )


@router.get("/customers/{customer_id}/consents", response_model=list[ConsentOut])
def list_consents(customer_id: Id, db: DbSession, principal: CurrentPrincipal) -> list[ConsentRecord]:
    """The customer's consent records, newest first."""
    return consent.list_consents(db, principal, customer_id)


@router.post("/customers/{customer_id}/consents", response_model=ConsentOut, status_code=201)
def add_consent(
    customer_id: Id, body: ConsentIn, db: DbSession, principal: CurrentPrincipal
) -> ConsentRecord:
    """Record a consent given or withdrawn; the customer's flag follows the latest record of the scope."""
    return consent.add_consent_as(
        db, principal, customer_id, body.scope, body.granted, body.source, at=body.at, note=body.note
    )


@router.get("/privacy/retention", response_model=RetentionOut)
def get_retention(request: Request, db: DbSession, principal: AdminPrincipal) -> RetentionOut:
    """How long raw webhook payloads and audit entries are kept (admins)."""
    r = service.get_retention(db, principal, request.app.state.settings)
    return RetentionOut(webhook_days=r.webhook_days, audit_days=r.audit_days)


@router.put("/privacy/retention", response_model=RetentionOut)
def put_retention(
    body: RetentionIn, request: Request, db: DbSession, principal: AdminPrincipal
) -> RetentionOut:
    """Change the retention days (admins; audited)."""
    r = service.set_retention(db, principal, request.app.state.settings, body.webhook_days, body.audit_days)
    return RetentionOut(webhook_days=r.webhook_days, audit_days=r.audit_days)
