"""WeCom HTTP surface: the callback endpoint ``/hooks/wecom/{org}``, the credentials API and the reconciliation
API (admins and owners: the last sync's report, start a sync).

Callback flow (answer fast, WeCom waits 5 s and retries 3 times): verify the signature and decrypt
(403 and nothing stored when that fails), insert into the inbox with the content-derived dedupe key
and COMMIT — through the inbox writer, which commits the callbacks of a burst together — and answer
200. Only committed rows are drained: the writer asks for a drain after its commit, never before. A
duplicate (the insert did nothing) is answered 200 and has no further effect. If the drain request
itself fails the row stays unprocessed and the periodic sweep picks it up.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from siyu.integrations.wecom import CallbackError, CallbackSignatureError
from siyu.kit.errors import DomainError, NotFound
from siyu.tenancy.deps import AdminPrincipal, DbSession
from siyu.wecom import callbacks, credentials, tasks_sync
from siyu.wecom.inbox_writer import InboxWriter
from siyu.wecom.models import WeComCredential
from siyu.wecom.schemas import ConnectionTest, CredentialsIn, CredentialsOut
from siyu.wecom.sync import last_run
from siyu.wecom.tasks import request_drain

log = logging.getLogger(__name__)

hooks_router = APIRouter(prefix="/hooks/wecom", tags=["wecom"])
api_router = APIRouter(prefix="/api/v1/wecom", tags=["wecom"])
sync_router = APIRouter(prefix="/api/v1/wecom", tags=["wecom-operations"])

Sig = Annotated[str, Query(max_length=128)]


def callback_path(slug: str) -> str:
    """The path WeCom must call for this organization (prefix it with the public base URL)."""
    return f"/hooks/wecom/{slug}"


def _secret_key(request: Request) -> str:
    return str(request.app.state.settings.resolved_secret_key())


@hooks_router.get("/{org}", response_class=PlainTextResponse)
def verify_url(
    request: Request,
    org: str,
    msg_signature: Sig,
    timestamp: Sig,
    nonce: Sig,
    echostr: Annotated[str, Query(max_length=4096)],
) -> Response:
    """URL verification: answer the decrypted echostr and nothing else (events are POSTed to the same path)."""
    with request.app.state.sessionmaker() as db:
        try:
            creds = callbacks.credentials_for_slug(db, org, _secret_key(request))
        except DomainError as exc:
            return PlainTextResponse(exc.message, status_code=exc.status_code)
    try:
        plaintext = callbacks.crypto_for(creds).verify_url(msg_signature, timestamp, nonce, echostr)
    except CallbackError as exc:
        return PlainTextResponse(str(exc), status_code=403)
    return PlainTextResponse(plaintext)


_SIGNATURE_PARAMS = ("msg_signature", "timestamp", "nonce")
#: WeCom's encrypted events are a few KB; anything near this is not WeCom (app.BODY_LIMITS enforces it
#: while the body streams in, before this endpoint reads it).
MAX_BODY = 1_000_000


async def receive_event(request: Request) -> Response:
    """POST /hooks/wecom/{org}: an encrypted event — verify, store once, answer 200 with an empty body.

    A plain Starlette endpoint rather than a FastAPI route: this is the hottest path of the app (WeCom
    pushes hundreds a second in bursts) and FastAPI's per-request validation cost more than the work.
    The checks it would do are here, with the same 422 shape as the rest of the API."""
    org = request.path_params["org"]
    params = request.query_params
    for name in _SIGNATURE_PARAMS:
        value = params.get(name)
        if not value or len(value) > 128:
            problem = "is required" if not value else "is longer than 128 characters"
            return JSONResponse(
                {"detail": f"query parameter {name} {problem}", "field": name}, status_code=422
            )
    body = await request.body()
    try:
        # Decryption is ~0.1 ms of CPU: cheaper here than a hop to the thread pool. Only a cache miss
        # (every CREDENTIALS_TTL seconds) reads the database, off the event loop.
        creds = _cached_credentials(request, org)
        if creds is None:
            creds = await run_in_threadpool(_load_credentials, request, org)
        event = callbacks.crypto_for(creds).decrypt_event(
            body, params["msg_signature"], params["timestamp"], params["nonce"]
        )
    except DomainError as exc:
        return PlainTextResponse(exc.message, status_code=exc.status_code)
    except CallbackSignatureError as exc:
        return PlainTextResponse(str(exc), status_code=403)
    except CallbackError as exc:
        # A wrong key or corp id is as untrusted as a wrong signature; a non-XML body is a bad request.
        status = 400 if "not WeCom XML" in str(exc) or "no <Encrypt>" in str(exc) else 403
        return PlainTextResponse(str(exc), status_code=status)
    # Committed (with others that arrived meanwhile) before this returns; the writer asks for a drain.
    await _inbox_writer(request).store(creds.org_id, event)
    return PlainTextResponse("")


# Starlette routes skip the router prefix: give the full path.
hooks_router.add_route(
    f"{hooks_router.prefix}/{{org}}", receive_event, methods=["POST"], include_in_schema=False
)


#: Seconds a decrypted credential set is reused by the callback endpoint (saves a query and three
#: decryptions per callback); a credentials update reaches callbacks within this time.
CREDENTIALS_TTL = 5.0


def _credentials_cache(request: Request) -> dict[str, tuple[float, callbacks.PlainCredentials]]:
    # The cache lives on the app (one per database), never module-wide: slugs repeat across databases.
    return request.app.state.__dict__.setdefault("_wecom_credentials", {})


def _cached_credentials(request: Request, org: str) -> callbacks.PlainCredentials | None:
    """The organization's decrypted credentials if read less than CREDENTIALS_TTL ago."""
    hit = _credentials_cache(request).get(org)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def _load_credentials(request: Request, org: str) -> callbacks.PlainCredentials:
    """Read and decrypt the credentials (404 for an unknown slug) and cache them."""
    with request.app.state.sessionmaker() as db:
        creds = callbacks.credentials_for_slug(db, org, _secret_key(request))
    _credentials_cache(request)[org] = (time.monotonic() + CREDENTIALS_TTL, creds)
    return creds


def _inbox_writer(request: Request) -> InboxWriter:
    """The app's inbox writer (one per app, so one writer thread per database)."""
    state = request.app.state.__dict__
    writer = state.get("_wecom_inbox_writer")
    if writer is None:
        writer = state.setdefault("_wecom_inbox_writer", InboxWriter(request.app.state.engine, request_drain))
    return writer


def _out(row: WeComCredential, slug: str) -> CredentialsOut:
    return CredentialsOut(
        corp_id=row.corp_id,
        base_url=row.base_url,
        welcome_text=row.welcome_text,
        agent_id=row.agent_id,
        has_secret=bool(row.secret_enc),
        has_token=bool(row.token_enc),
        has_encoding_aes_key=bool(row.aes_key_enc),
        callback_path=callback_path(slug),
        last_test_at=row.last_test_at,
        last_test_ok=row.last_test_ok,
        last_test_message=row.last_test_message,
        updated_at=row.updated_at,
    )


def _slug(db: DbSession, org_id: int) -> str:
    from siyu.tenancy.models import Organization

    org = db.get(Organization, org_id)
    assert org is not None
    return org.slug


@api_router.get("/credentials", response_model=CredentialsOut)
def get_credentials(db: DbSession, principal: AdminPrincipal) -> CredentialsOut:
    """The organization's WeCom settings; secrets are reported as set or not, never returned."""
    row = credentials.get_credentials(db, principal.org_id)
    if row is None:
        raise NotFound("WeCom is not configured for this organization", field="wecom")
    return _out(row, _slug(db, principal.org_id))


@api_router.put("/credentials", response_model=CredentialsOut)
def put_credentials(
    body: CredentialsIn, request: Request, db: DbSession, principal: AdminPrincipal
) -> CredentialsOut:
    """Store the credentials (encrypted); omitted secrets keep their stored values."""
    row = credentials.save_credentials(
        db,
        principal.org_id,
        body,
        _secret_key(request),
        actor=principal,
        allowed_hosts=request.app.state.settings.allowed_wecom_hosts(),
    )
    return _out(row, _slug(db, principal.org_id))


@api_router.post("/credentials/test", response_model=ConnectionTest)
def test_credentials(request: Request, db: DbSession, principal: AdminPrincipal) -> ConnectionTest:
    """Call gettoken with the stored credentials and explain the result in words."""
    return credentials.check_connection(db, principal.org_id, _secret_key(request))


class SyncRunOut(BaseModel):
    """The last reconciliation: status, times, error and the report."""

    model_config = ConfigDict(from_attributes=True)

    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str
    report: dict[str, Any]


@sync_router.get("/sync/last", response_model=SyncRunOut)
def get_last_sync(db: DbSession, principal: AdminPrincipal) -> Any:
    """The organization's last reconciliation with WeCom and what it changed."""
    run = last_run(db, principal.org_id)
    if run is None:
        raise NotFound("no WeCom sync has run yet for this organization", field="sync")
    return run


@sync_router.post("/sync", status_code=202)
def start_sync(request: Request, db: DbSession, principal: AdminPrincipal) -> dict[str, Any]:
    """Enqueue a full reconciliation (runs inline when the worker is in immediate mode)."""
    tasks_sync.start_sync(db, principal.org_id, str(request.app.state.settings.resolved_secret_key()))
    return {"enqueued": True}


router = APIRouter()
router.include_router(hooks_router)
router.include_router(api_router)
router.include_router(sync_router)
