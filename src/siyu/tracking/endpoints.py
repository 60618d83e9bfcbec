"""REST endpoints of the event log: append one, append a batch, list with filters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime

from siyu.events.models import Event
from siyu.kit.pagination import Page
from siyu.tenancy.deps import CurrentPrincipal, DbSession
from siyu.tracking import service
from siyu.tracking.schemas import MAX_BATCH, EventIn, EventOut, IngestResult

router = APIRouter(prefix="/api/v1", tags=["events"])
#: A full batch of 1,000 events with generous properties is well under this (app.BODY_LIMITS enforces it).
MAX_EVENTS_BODY = 8 * 1024 * 1024


async def _raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]

# The batch body is parsed by Pydantic straight from bytes (one Rust pass, errors named events[i].field);
# this documents its shape in the OpenAPI schema.
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                            "items": {"$ref": "#/components/schemas/EventIn"},
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/events",
    response_model=EventOut,
    status_code=201,
    responses={200: {"model": EventOut, "description": "The key was used before: the stored event."}},
)
def post_event(body: EventIn, response: Response, db: DbSession, principal: CurrentPrincipal) -> Event:
    """Append one event (201); a repeated idempotency key stores nothing and answers 200 with the stored event."""
    event, created = service.ingest_one(db, principal, body)
    if not created:
        response.status_code = 200
    return event


@router.post("/events/batch", response_model=IngestResult, openapi_extra=_BATCH_BODY)
def post_events_batch(body: RawBody, db: DbSession, principal: CurrentPrincipal) -> IngestResult:
    """Append 1..1,000 events in one transaction; any bad item fails the whole batch with 422 naming it."""
    batch = service.parse_batch(body)
    return service.ingest(db, principal, batch.events)


@router.get("/events", response_model=Page[EventOut])
def get_events(
    db: DbSession,
    principal: CurrentPrincipal,
    customer_id: int | None = Query(default=None, ge=1),
    type: str | None = Query(default=None, max_length=60),
    since: AwareDatetime | None = Query(default=None, description="occurred_at >= since"),
    until: AwareDatetime | None = Query(default=None, description="occurred_at < until"),
    cursor: int | None = Query(default=None, ge=1),
    limit: int = Query(default=100, ge=1, le=1000),
) -> Page[EventOut]:
    """Events newest first, filtered by customer, type and occurred_at range; page with ``cursor``."""
    rows, next_cursor = service.list_events(
        db,
        principal,
        customer_id=customer_id,
        type=type,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return Page[EventOut](items=[EventOut.model_validate(r) for r in rows], next_cursor=next_cursor)
