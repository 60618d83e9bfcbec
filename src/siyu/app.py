"""The ASGI application: REST API under /api/v1, the console at /, OpenAPI at /docs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from siyu.accounts.endpoints import departures_router
from siyu.accounts.endpoints import router as accounts_router
from siyu.analytics.endpoints import channel_reports_router
from siyu.analytics.endpoints import router as analytics_router
from siyu.audit.endpoints import router as audit_router
from siyu.campaigns.endpoints import router as campaigns_router
from siyu.channels.endpoints import router as channels_router
from siyu.commerce.endpoints import router as commerce_router
from siyu.customers.endpoints import router as customers_router
from siyu.kit.bodylimit import BodyLimit, BodyTooLarge, too_large
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.errors import DomainError
from siyu.kit.inputguard import InputGuard
from siyu.kit.ratelimit import attempt_counter
from siyu.kit.settings import Settings, get_settings
from siyu.leads.endpoints import MAX_IMPORT_BYTES, MAX_WEBHOOK_BYTES, warm_classifier
from siyu.leads.endpoints import hooks_router as lead_hooks_router
from siyu.leads.endpoints import router as leads_router
from siyu.privacy.endpoints import router as privacy_router
from siyu.tenancy.endpoints import router as tenancy_router
from siyu.tracking.endpoints import MAX_EVENTS_BODY
from siyu.tracking.endpoints import router as events_router
from siyu.web.pages import router as pages_router
from siyu.web.security import SecurityHeaders
from siyu.wecom.endpoints import MAX_BODY as MAX_WECOM_CALLBACK
from siyu.wecom.endpoints import router as wecom_router

STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"
# Body caps by path prefix, enforced while the body streams in (before a signature or token check reads
# it); everything else (CSV uploads, which spool to disk) gets DEFAULT_BODY_LIMIT.
BODY_LIMITS = (
    ("/hooks/wecom/", MAX_WECOM_CALLBACK),
    ("/hooks/douyin/", MAX_WEBHOOK_BYTES),
    ("/api/v1/events", MAX_EVENTS_BODY),
    ("/api/v1/comments/import", MAX_IMPORT_BYTES),
)
DEFAULT_BODY_LIMIT = 64 * 1024 * 1024


def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    body: dict[str, object] = {"detail": exc.message}
    if exc.field:
        body["field"] = exc.field
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _number_out_of_range(_request: Request, _exc: Exception) -> JSONResponse:
    # SQLite binds 64-bit integers only; a bigger id can name no row, so say so instead of failing.
    return JSONResponse(
        {"detail": "a number in the request is out of range: ids and counts fit in 64 bits"}, status_code=422
    )


def _body_too_large(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return too_large(exc.limit)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app around one engine (given, or from settings)."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings.resolved_database_url())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The intent classifier (scikit-learn, a model fitted or loaded) takes seconds to get ready: do it
        # beside the start-up, so Douyin's first comment webhook is answered within the platform's timeout.
        threading.Thread(
            target=warm_classifier, args=(settings,), name="warm-classifier", daemon=True
        ).start()
        yield

    app = FastAPI(
        title="siyu",
        version="0.1.0",
        description="Private-domain traffic operations: customers, accounts, events, orders.",
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc pages load their scripts from a CDN and stay blank offline;
        # /docs is served below from the vendored Swagger UI, and ReDoc has no vendored copy.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.login_attempts = attempt_counter(settings.redis_url, settings.login_window_seconds)
    app.state.mobile_lookups = attempt_counter(settings.redis_url, 3600)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(OverflowError, _number_out_of_range)
    app.add_exception_handler(BodyTooLarge, _body_too_large)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        """The interactive API reference, every asset served from /static/vendor."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui-favicon-32x32.png",
            # The online validator badge would send the spec's address to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    # Webhooks first: routes are matched in order, and platforms call these at the highest rates.
    routers = (
        wecom_router,
        lead_hooks_router,
        events_router,
        tenancy_router,
        accounts_router,
        customers_router,
        privacy_router,
        audit_router,
        commerce_router,
        analytics_router,
        channels_router,
        channel_reports_router,
        leads_router,
        campaigns_router,
        departures_router,
        pages_router,
    )
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeaders)
    # Inside the body cap (the last added runs first): the guard buffers what the cap let through.
    app.add_middleware(InputGuard, exempt=("/hooks/",))
    app.add_middleware(BodyLimit, limits=BODY_LIMITS, default=DEFAULT_BODY_LIMIT)
    return app
