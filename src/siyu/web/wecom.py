"""Console page: WeCom settings — enter credentials, test the connection, copy the callback URL; once
credentials are stored, the status of the last reconciliation ("Sync now" starts one), of the
callback inbox, and of write-back (the switch, the outbox's health, a button to retry failed writes).

Every visible string lives in the templates (``web/templates/wecom/settings.html`` and ``_status.html``)
so the catalogs cover it; the test-connection message is the adapter's plain-language explanation of
WeCom's errcode. The status section polls ``/wecom/status`` while a reconciliation runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Response
from pydantic import ValidationError

from siyu.events import outbox
from siyu.integrations.wecom.fake_server import connection_values
from siyu.kit.clock import utcnow
from siyu.kit.errors import DomainError, Forbidden, NotFound
from siyu.tenancy.deps import DbSession
from siyu.tenancy.models import Organization
from siyu.web import labels
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.i18n import N_
from siyu.web.templating import PageContext, render
from siyu.wecom import credentials, tasks_sync, writeback
from siyu.wecom.endpoints import callback_path
from siyu.wecom.inbox_health import inbox_health
from siyu.wecom.schemas import ConnectionTest, CredentialsIn
from siyu.wecom.sync import is_running, last_run

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)


def _admin(ctx: PageContext) -> int:
    assert ctx.principal is not None
    if not ctx.principal.can_administer:
        raise Forbidden("only owners and admins manage WeCom settings")
    return ctx.principal.org_id


def _duration(seconds: float) -> str:
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


#: What is wrong with a field the form was saved with, in the reader's words (field -> message).
FIELD_PROBLEMS = {
    "corp_id": N_(
        "Enter the CorpID from My Company > Company Info in the WeCom admin console: "
        "4 to 64 letters, digits, - or _."
    ),
    "secret": N_("The Secret is at most 128 characters: copy it again from the WeCom admin console."),
    "token": N_("The Token is at most 64 characters: copy it again from the callback settings."),
    "encoding_aes_key": N_(
        "The EncodingAESKey is the 43 letters and digits WeCom generates in the callback settings: "
        "copy it again."
    ),
    "base_url": N_("The API base URL must be a web address, such as https://qyapi.weixin.qq.com."),
    "welcome_text": N_("The welcome message is at most 4,000 characters."),
    "agent_id": N_("The AgentId is the digits shown on the app's page in the WeCom admin console."),
}
#: A field the form was saved without, though it is needed (field -> message).
FIELD_MISSING = {
    "corp_id": N_("Enter the CorpID."),
    "secret": N_("Enter the Secret: it is needed the first time WeCom is connected."),
    "token": N_("Enter the Token: it is needed the first time WeCom is connected."),
    "encoding_aes_key": N_("Enter the EncodingAESKey: it is needed the first time WeCom is connected."),
}
CHECK_THE_FORM = N_("Check the form.")
#: Stored secrets the server can no longer decrypt (its secret key changed).
UNREADABLE = N_(
    "The stored WeCom credentials can no longer be read (the server's secret key changed): enter them again."
)


def _field_error(ctx: PageContext, field: str, form: dict[str, str]) -> str:
    """What is wrong with one field of the saved form, in words: missing when it was left empty."""
    if not form.get(field) and field in FIELD_MISSING:
        return ctx.gettext(FIELD_MISSING[field])
    return ctx.gettext(FIELD_PROBLEMS.get(field, CHECK_THE_FORM))


def _connection_words(ctx: PageContext, test: ConnectionTest) -> str:
    """The test's outcome in the reader's words (the adapter's explanation is English, for logs)."""
    if test.ok:
        return ctx.gettext("WeCom issued an access token.")
    code = "" if test.errcode is None else str(test.errcode)
    if labels.is_known("wecom_connection_error", code):
        return ctx.label("wecom_connection_error", code)
    return ctx.gettext("WeCom answered with error code %(code)s.") % {"code": code}


#: How long the section waits (polling) for a worker to start a sync requested with "Sync now".
AWAIT_WORKER = timedelta(minutes=2)


def _status(db: DbSession, org_id: int, requested: datetime | None = None) -> dict[str, Any]:
    run = last_run(db, org_id)
    report: dict[str, Any] = run.report if run is not None else {}
    duration = None
    if run is not None and run.finished_at is not None:
        duration = _duration((run.finished_at - run.started_at) / timedelta(seconds=1))
    # A sync requested here but not started yet (the worker has not taken the task): keep polling for a
    # while, so the page shows it once it runs, instead of the previous run with nothing moving.
    awaiting = (
        requested is not None
        and (run is None or run.started_at < requested)
        and utcnow() - requested < AWAIT_WORKER
    )
    return {
        "run": run,
        "running": is_running(run),
        "report": report,
        "duration": duration,
        "inbox": inbox_health(db, org_id),
        "awaiting": awaiting,
        "requested": int(requested.timestamp()) if awaiting and requested is not None else None,
    }


def _writeback(db: DbSession, ctx: PageContext, org_id: int) -> dict[str, Any]:
    """Write-back's health, its latest errors in the reader's words (the stored text when the errcode is
    not one the console explains)."""
    health = outbox.health(db, org_id, writeback.HANDLER)
    errors = []
    for queued_at, event_type, text in health.recent_errors:
        code = writeback.errcode_of(text)
        known = labels.is_known("wecom_writeback_error", code)
        words = ctx.label("wecom_writeback_error", code) if known else text
        errors.append({"at": queued_at, "event": event_type, "errcode": code, "words": words})
    return {"writeback": health, "writeback_errors": errors}


def _page(
    db: DbSession,
    ctx: PageContext,
    *,
    error: str | None = None,
    error_field: str | None = None,
    form: dict[str, str] | None = None,
    test: ConnectionTest | None = None,
    saved: bool = False,
    sync_started: bool = False,
    sync_unconfigured: bool = False,
    requested: datetime | None = None,
    retried: int | None = None,
    status_code: int = 200,
) -> Response:
    org_id = _admin(ctx)
    org = db.get(Organization, org_id)
    assert org is not None
    row = credentials.get_credentials(db, org_id)
    base = str(ctx.request.base_url).rstrip("/")
    fake_url = ctx.request.app.state.settings.wecom_fake_url
    status = {**_status(db, org_id, requested), **_writeback(db, ctx, org_id)} if row is not None else {}
    return render(
        ctx,
        "wecom/settings.html",
        status_code=status_code,
        active="wecom",
        row=row,
        callback_url=base + callback_path(org.slug),
        sidebar_url=f"{base}/sidebar/{org.slug}/",
        error=error,
        error_field=error_field,
        form=form,
        test=test,
        test_words=_connection_words(ctx, test) if test is not None else "",
        saved=saved,
        sync_started=sync_started,
        sync_unconfigured=sync_unconfigured,
        retried=retried,
        fake_url=fake_url,
        fake=connection_values(fake_url) if fake_url else None,
        **status,
    )


@router.get("/wecom/settings")
def settings_page(db: DbSession, ctx: Console) -> Response:
    """The WeCom settings form."""
    return _page(db, ctx)


@router.post("/wecom/settings")
def save_settings(
    db: DbSession,
    ctx: Console,
    corp_id: Annotated[str, Form()] = "",
    secret: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
    encoding_aes_key: Annotated[str, Form()] = "",
    base_url: Annotated[str, Form()] = "",
    welcome_text: Annotated[str, Form()] = "",
    agent_id: Annotated[str, Form()] = "",
) -> Response:
    """Store the credentials; empty secret fields keep the stored values. A refused form comes back with
    what was typed, and the reason in words."""
    org_id = _admin(ctx)
    form = {
        "corp_id": corp_id,
        "secret": secret,
        "token": token,
        "encoding_aes_key": encoding_aes_key,
        "base_url": base_url,
        "welcome_text": welcome_text,
        "agent_id": agent_id,
    }
    try:
        data = CredentialsIn(
            corp_id=corp_id,
            secret=secret or None,
            token=token or None,
            encoding_aes_key=encoding_aes_key or None,
            base_url=base_url or None,
            welcome_text=welcome_text,
            agent_id=agent_id,
        )
        settings = ctx.request.app.state.settings
        credentials.save_credentials(
            db,
            org_id,
            data,
            settings.resolved_secret_key(),
            actor=ctx.principal,
            allowed_hosts=settings.allowed_wecom_hosts(),
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "corp_id"
        return _refused(db, ctx, field, form, 422)
    except DomainError as exc:
        db.rollback()
        return _refused(db, ctx, exc.field or "corp_id", form, exc.status_code)
    return _page(db, ctx, saved=True)


def _refused(db: DbSession, ctx: PageContext, field: str, form: dict[str, str], status_code: int) -> Response:
    return _page(
        db, ctx, error=_field_error(ctx, field, form), error_field=field, form=form, status_code=status_code
    )


def _stored_error(ctx: PageContext, exc: DomainError) -> str:
    """A failure to use the stored credentials, in words."""
    if exc.field in ("secret", "token", "encoding_aes_key"):
        return ctx.gettext(UNREADABLE)
    if exc.field == "sync":
        return ctx.gettext("A sync with WeCom is already running: its progress is shown below.")
    return ctx.gettext("WeCom is not configured yet: save the credentials first.")


@router.post("/wecom/settings/test")
def test_settings(db: DbSession, ctx: Console) -> Response:
    """Call gettoken with the stored credentials and show the outcome in words."""
    org_id = _admin(ctx)
    try:
        result = credentials.check_connection(
            db, org_id, ctx.request.app.state.settings.resolved_secret_key()
        )
    except DomainError as exc:
        return _page(
            db, ctx, error=_stored_error(ctx, exc), error_field=exc.field, status_code=exc.status_code
        )
    return _page(db, ctx, test=result)


@router.get("/wecom/status")
def status_fragment(
    db: DbSession,
    ctx: Console,
    requested: Annotated[
        int | None, Query(ge=0, description="when Sync now was pressed (Unix seconds)")
    ] = None,
) -> Response:
    """The status section alone (last reconciliation, callback inbox), polled while a sync runs or is awaited."""
    org_id = _admin(ctx)
    if credentials.get_credentials(db, org_id) is None:
        raise NotFound("WeCom is not configured for this organization", field="wecom")
    when = datetime.fromtimestamp(requested, UTC) if requested is not None else None
    return render(ctx, "wecom/_status.html", **_status(db, org_id, when))


@router.post("/wecom/sync")
def sync_now(db: DbSession, ctx: Console) -> Response:
    """Start a reconciliation with WeCom (inline in immediate mode) and show the page with its status."""
    org_id = _admin(ctx)
    requested = utcnow().replace(microsecond=0)  # before the run can start (it starts inline in tests)
    try:
        tasks_sync.start_sync(db, org_id, ctx.request.app.state.settings.resolved_secret_key())
    except NotFound as exc:
        return _page(db, ctx, error_field=exc.field, sync_unconfigured=True, status_code=exc.status_code)
    except DomainError as exc:
        db.rollback()
        return _page(
            db, ctx, error=_stored_error(ctx, exc), error_field=exc.field, status_code=exc.status_code
        )
    return _page(db, ctx, sync_started=True, requested=requested)


@router.post("/wecom/writeback")
def save_writeback(db: DbSession, ctx: Console, enabled: Annotated[str, Form()] = "") -> Response:
    """Turn write-back of tags and remarks to WeCom on (checkbox ticked) or off."""
    credentials.set_writeback(db, _admin(ctx), enabled == "on")
    return _page(db, ctx, saved=True)


@router.post("/wecom/writeback/retry")
def retry_writeback(db: DbSession, ctx: Console) -> Response:
    """Queue the failed write-backs again (after the cause was fixed); the worker drains them after commit."""
    org_id = _admin(ctx)
    retried = outbox.retry_failed(db, org_id, writeback.HANDLER)
    db.flush()
    return _page(db, ctx, retried=retried)
