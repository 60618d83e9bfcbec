"""WeCom HTTP surface: the callback endpoint ``/hooks/wecom/{org}`` and the credentials API.

Callback flow (answer fast, WeCom waits 5 s and retries 3 times): verify the signature and decrypt
(403 and nothing stored when that fails), insert into the inbox with the content-derived dedupe key,
COMMIT, and only then enqueue ``process_wecom_inbox`` — a task must never see an uncommitted row. The
handler therefore opens its own session and commits explicitly instead of using ``DbSession``, which
commits only after the handler returns. A duplicate (the insert did nothing) is answered 200 and not
enqueued. If the enqueue itself fails the row stays unprocessed and the periodic sweep picks it up.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from siyu.integrations.wecom import CallbackError, CallbackSignatureError
from siyu.kit.deps import AdminPrincipal, DbSession
from siyu.kit.errors import DomainError, NotFound
from siyu.wecom import callbacks, credentials
from siyu.wecom.models import WeComCredential
from siyu.wecom.schemas import ConnectionTest, CredentialsIn, CredentialsOut
from siyu.wecom.tasks import process_wecom_inbox

log = logging.getLogger(__name__)

hooks_router = APIRouter(prefix="/hooks/wecom", tags=["wecom"])
api_router = APIRouter(prefix="/api/v1/wecom", tags=["wecom"])

Sig = Annotated[str, Query(max_length=128)]


def callback_path(slug: str) -> str:
    """The path WeCom must call for this organization (prefix it with the public base URL)."""
    return f"/hooks/wecom/{slug}"


def _secret_key(request: Request) -> str:
    return str(request.app.state.settings.resolved_secret_key())


@hooks_router.get("/{org}", response_class=PlainTextResponse)
def verify_url(request: Request, org: str, msg_signature: Sig, timestamp: Sig, nonce: Sig,
               echostr: Annotated[str, Query(max_length=4096)]) -> Response:
    """URL verification: answer the decrypted echostr and nothing else."""
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


@hooks_router.post("/{org}", response_class=PlainTextResponse)
async def receive_event(request: Request, org: str, msg_signature: Sig, timestamp: Sig, nonce: Sig) -> Response:
    """An encrypted event: verify, store once, enqueue after commit, answer 200 with an empty body."""
    body = await request.body()
    if len(body) > 1_000_000:
        return PlainTextResponse("callback body too large", status_code=413)
    # Database work and the enqueue block: run them off the event loop.
    status, text = await run_in_threadpool(_store, request, org, body, msg_signature, timestamp, nonce)
    return PlainTextResponse(text, status_code=status)


#: Seconds a decrypted credential set is reused by the callback endpoint (saves a query and three
#: decryptions per callback); a credentials update reaches callbacks within this time.
CREDENTIALS_TTL = 5.0


def _cached_credentials(request: Request, org: str) -> callbacks.PlainCredentials:
    # The cache lives on the app (one per database), never module-wide: slugs repeat across databases.
    cache: dict[str, tuple[float, callbacks.PlainCredentials]] = request.app.state.__dict__.setdefault(
        "_wecom_credentials", {}
    )
    hit = cache.get(org)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    # A session only on a miss: the hit path needs no database read at all.
    with request.app.state.sessionmaker() as db:
        creds = callbacks.credentials_for_slug(db, org, _secret_key(request))
    cache[org] = (now + CREDENTIALS_TTL, creds)
    return creds


def _write_lock(request: Request) -> AbstractContextManager[object]:
    """One writer at a time on SQLite: threads contending for its write lock fall into SQLite's busy
    handler, which sleeps in growing steps and wrecks latency; a Python lock hands over at once."""
    state = request.app.state
    if state.engine.dialect.name != "sqlite":
        return nullcontext()
    lock = state.__dict__.get("_wecom_write_lock")
    if lock is None:
        lock = state.__dict__.setdefault("_wecom_write_lock", threading.Lock())
    return lock  # type: ignore[no-any-return]


#: The SQLite task queue has the same busy-handler problem; Redis pushes are cheap to serialize too.
_ENQUEUE_LOCK = threading.Lock()


def _store(request: Request, org: str, body: bytes, msg_signature: str, timestamp: str,
           nonce: str) -> tuple[int, str]:
    try:
        creds = _cached_credentials(request, org)
        event = callbacks.crypto_for(creds).decrypt_event(body, msg_signature, timestamp, nonce)
    except DomainError as exc:
        return exc.status_code, exc.message
    except CallbackSignatureError as exc:
        return 403, str(exc)
    except CallbackError as exc:
        # A wrong key or corp id is as untrusted as a wrong signature; a non-XML body is a bad request.
        return (400 if "not WeCom XML" in str(exc) or "no <Encrypt>" in str(exc) else 403), str(exc)
    # One Core transaction on the engine (no ORM session: nothing here needs identity tracking); it
    # commits when the block exits, so the row is durable before the enqueue below.
    with _write_lock(request), request.app.state.engine.begin() as conn:
        inbox_id = callbacks.store_event(conn, creds.org_id, event)
    if inbox_id is not None:  # new, and committed: now it may be enqueued
        try:
            if process_wecom_inbox.huey.immediate:
                process_wecom_inbox(inbox_id)  # inline processing (tests, the bench baseline)
            else:
                with _ENQUEUE_LOCK:
                    process_wecom_inbox(inbox_id)
        except Exception:  # the row is stored; the periodic sweep will process it
            log.exception("could not enqueue WeCom inbox row %s", inbox_id)
    return 200, ""


def _out(row: WeComCredential, slug: str) -> CredentialsOut:
    return CredentialsOut(
        corp_id=row.corp_id, base_url=row.base_url, welcome_text=row.welcome_text,
        has_secret=bool(row.secret_enc), has_token=bool(row.token_enc), has_encoding_aes_key=bool(row.aes_key_enc),
        callback_path=callback_path(slug), last_test_at=row.last_test_at, last_test_ok=row.last_test_ok,
        last_test_message=row.last_test_message, updated_at=row.updated_at,
    )


def _slug(db: DbSession, org_id: int) -> str:
    from siyu.identity.models import Organization

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
def put_credentials(body: CredentialsIn, request: Request, db: DbSession, principal: AdminPrincipal) -> CredentialsOut:
    """Store the credentials (encrypted); omitted secrets keep their stored values."""
    row = credentials.save_credentials(db, principal.org_id, body, _secret_key(request))
    return _out(row, _slug(db, principal.org_id))


@api_router.post("/credentials/test", response_model=ConnectionTest)
def test_credentials(request: Request, db: DbSession, principal: AdminPrincipal) -> ConnectionTest:
    """Call gettoken with the stored credentials and explain the result in words."""
    return credentials.check_connection(db, principal.org_id, _secret_key(request))


router = APIRouter()
router.include_router(hooks_router)
router.include_router(api_router)
