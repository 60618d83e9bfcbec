"""Lead intake and inbox API: the Douyin webhook, comment import, the inbox, replies, corrections, SLA."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from siyu.kit.bulk import ImportReport
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.errors import Invalid, NotFound
from siyu.kit.settings import Settings
from siyu.leads import intake, service
from siyu.leads.intent import (
    BASE_CLASSIFIER_FILE,
    LAYER_DIR,
    IntentClassifier,
    get_classifier,
    org_classifier,
)
from siyu.leads.models import DouyinApp
from siyu.leads.schemas import (
    CommentOut,
    CorrectionIn,
    DouyinAppIn,
    DouyinAppOut,
    LeadOut,
    ReplyIn,
    SlaOut,
    TemplateIn,
)
from siyu.leads.service import InboxRow
from siyu.leads.sla import sla_figures
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession
from siyu.tenancy.models import Organization

hooks_router = APIRouter(tags=["webhooks"])
router = APIRouter(prefix="/api/v1", tags=["leads"])

MAX_IMPORT_BYTES = 20 * 1024 * 1024
#: Douyin's webhook bodies are a few KB (app.BODY_LIMITS enforces both caps while the body streams in).
MAX_WEBHOOK_BYTES = 1_000_000
MAX_ID = 2**63 - 1
# Ids beyond BIGINT would overflow the driver: refuse them as bad input, not a server error.
LeadId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
CommentId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def classifier_for(settings: Settings, org_id: int | None = None) -> IntentClassifier:
    """The organization's classifier (its layer from `siyu leads retrain`, else the shared base), loaded
    from (or the base saved to) the data dir; without an organization, the shared base."""
    data = settings.ensure_data_dir()
    base = Path(data) / BASE_CLASSIFIER_FILE
    if org_id is None:
        return get_classifier(base)
    return org_classifier(org_id, base_cache=base, layer_dir=Path(data) / LAYER_DIR)


def warm_classifier(settings: Settings) -> None:
    """Load (or fit) the classifier and its tokenizer now, so the first webhook is answered in milliseconds."""
    classifier_for(settings).classify_many(["预热：这个怎么买"])


@hooks_router.post("/hooks/douyin/{org}", summary="Douyin open-platform webhook")
async def douyin_webhook(org: str, request: Request, db: DbSession) -> dict[str, object]:
    """Verify X-Douyin-Signature, answer verify_webhook, dedupe by Msg-Id and ingest comment events."""
    settings = _settings(request)
    body = await request.body()
    # Storing, classifying and committing are blocking: off the event loop, which serves every webhook.
    return await run_in_threadpool(
        intake.handle_douyin_webhook,
        db,
        org,
        body,
        request.headers.get("X-Douyin-Signature"),
        request.headers.get("Msg-Id"),
        settings.resolved_secret_key(),
        reply_seconds=settings.lead_reply_seconds,
        classifier=lambda org_id: classifier_for(settings, org_id),
    )


def lead_out(db: DbSession, row: InboxRow) -> LeadOut:
    """The API shape of a lead with its suggestion ({code} left for the reply to fill)."""
    return LeadOut.of(row, service.suggested_reply(db, row.lead.org_id, row.lead, row.comment), utcnow())


@router.get("/leads", response_model=list[LeadOut])
def list_leads(
    db: DbSession,
    principal: CurrentPrincipal,
    status: Literal["open", "replied", "dismissed", "all"] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> list[LeadOut]:
    """The inbox: open leads most urgent first; other statuses newest first (page with before_id)."""
    return [lead_out(db, row) for row in service.list_inbox(db, principal, status, limit, before_id)]


@router.get("/leads/sla", response_model=SlaOut)
def lead_sla(
    db: DbSession,
    principal: CurrentPrincipal,
    start: datetime | None = None,
    end: datetime | None = None,
    days: Annotated[int, Query(ge=1, le=366)] = 7,
) -> SlaOut:
    """Median time to reply, share replied within the deadline, and lead -> add -> first order conversion."""
    if (start is not None and start.tzinfo is None) or (end is not None and end.tzinfo is None):
        raise Invalid(
            "start and end need a UTC offset", field="start" if start and not start.tzinfo else "end"
        )
    stop = ensure_utc(end) if end else utcnow()
    begin = ensure_utc(start) if start else stop - timedelta(days=days)
    return SlaOut.of(sla_figures(db, principal.org_id, begin, stop), begin, stop)


@router.get("/leads/{lead_id}", response_model=LeadOut)
def get_lead(lead_id: LeadId, db: DbSession, principal: CurrentPrincipal) -> LeadOut:
    """One lead with its comment."""
    return lead_out(db, service.get_lead(db, principal, lead_id))


@router.post("/leads/{lead_id}/reply", response_model=LeadOut)
def reply(
    lead_id: LeadId, data: ReplyIn, request: Request, db: DbSession, principal: CurrentPrincipal
) -> LeadOut:
    """Reply on the platform with the channel code (once: a second reply is 409)."""
    replier = service.douyin_replier(db, principal.org_id, _settings(request).resolved_secret_key())
    try:
        row = service.reply_to_lead(
            db,
            principal,
            lead_id,
            replier=replier,
            text=data.text,
            code_url=data.code_url,
            code_state=data.code_state,
            code_id=data.code_id,
        )
    finally:
        close = getattr(replier, "close", None)
        if close is not None:
            close()
    return lead_out(db, row)


@router.post("/leads/{lead_id}/dismiss", response_model=LeadOut)
def dismiss(lead_id: LeadId, db: DbSession, principal: CurrentPrincipal) -> LeadOut:
    """Take an open lead off the queue without replying."""
    return lead_out(db, service.dismiss_lead(db, principal, lead_id))


@router.post("/comments/{comment_id}/intent", response_model=CommentOut)
def correct(
    comment_id: CommentId, data: CorrectionIn, request: Request, db: DbSession, principal: CurrentPrincipal
) -> CommentOut:
    """Store an operator's intent correction (used by `siyu leads retrain`)."""
    c = service.correct_intent(
        db, principal, comment_id, data.intent, reply_seconds=_settings(request).lead_reply_seconds
    )
    return CommentOut(
        id=c.id,
        platform=c.platform.value,
        external_id=c.external_id,
        item_id=c.item_id,
        item_title=c.item_title,
        commenter_id=c.commenter_id,
        commenter_name=c.commenter_name,
        content=c.content,
        commented_at=c.commented_at,
        received_at=c.received_at,
        intent=c.intent,
        confidence=c.confidence,
        matched_rule=c.matched_rule,
        corrected_intent=c.corrected_intent,
        customer_id=c.customer_id,
    )


@router.post("/comments/import", response_model=ImportReport)
async def import_comments(
    request: Request,
    db: DbSession,
    principal: CurrentPrincipal,
    platform: Annotated[str, Query(description="xiaohongshu, kuaishou, live or douyin")],
    format: Annotated[Literal["csv", "json"] | None, Query(description="Default: from Content-Type.")] = None,
) -> ImportReport:
    """Import a comment export (CSV or JSON body); bad rows are reported by row number, good ones stored."""
    body = await request.body()
    if not body:
        raise Invalid("the request body is empty: send the CSV or JSON file", field="file")
    fmt = format or ("json" if "json" in request.headers.get("content-type", "") else "csv")
    settings = _settings(request)
    # Parsing and classifying a 20 MB file takes seconds: on the loop it stalled every other request
    # (/healthz waited 15.6 s, WeCom callbacks have 5).
    return await run_in_threadpool(
        intake.import_comments,
        db,
        principal.org_id,
        platform,
        body,
        fmt,
        reply_seconds=settings.lead_reply_seconds,
        classifier=lambda org_id: classifier_for(settings, org_id),
    )


@router.get("/leads-config/douyin", response_model=DouyinAppOut)
def get_douyin_app(request: Request, db: DbSession, principal: AdminPrincipal) -> DouyinAppOut:
    """The organization's Douyin app (secrets are not returned)."""
    app = service.douyin_app(db, principal.org_id)
    if app is None:
        raise NotFound("no Douyin app configured")
    return _app_out(db, app)


@router.put("/leads-config/douyin", response_model=DouyinAppOut)
def put_douyin_app(
    data: DouyinAppIn, request: Request, db: DbSession, principal: AdminPrincipal
) -> DouyinAppOut:
    """Configure the Douyin app (client secret and access token are stored encrypted)."""
    app = service.configure_douyin(
        db, principal.org_id, _settings(request).resolved_secret_key(), actor=principal, **data.model_dump()
    )
    return _app_out(db, app)


def _app_out(db: DbSession, app: DouyinApp) -> DouyinAppOut:
    org = db.get(Organization, app.org_id)
    return DouyinAppOut(
        client_key=app.client_key,
        account_open_id=app.account_open_id,
        has_access_token=bool(app.access_token_enc),
        api_base_url=app.api_base_url,
        webhook_path=f"/hooks/douyin/{org.slug if org else ''}",
    )


@router.get("/leads-config/templates", response_model=dict[str, str])
def get_templates(db: DbSession, principal: CurrentPrincipal) -> dict[str, str]:
    """Reply templates per intent."""
    return service.reply_templates(db, principal.org_id)


@router.put("/leads-config/templates", response_model=dict[str, str])
def put_template(data: TemplateIn, db: DbSession, principal: AdminPrincipal) -> dict[str, str]:
    """Set one intent's reply template."""
    service.set_reply_template(db, principal.org_id, data.intent, data.body)
    return service.reply_templates(db, principal.org_id)
