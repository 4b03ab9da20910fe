"""The ASGI application: routers, middleware, exception handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.docs import install_docs
from app.api.middleware.body_limit import BodyLimitMiddleware
from app.api.middleware.cors import CorsMiddleware
from app.api.middleware.idempotency import IdempotencyMiddleware
from app.api.middleware.observability import (
    ObservabilityMiddleware,
    metrics_endpoint,
    route_templates,
)
from app.api.middleware.rate_limit import RateLimitMiddleware
from app.api.openapi import install_openapi
from app.api.routers import (
    admin,
    dispatch,
    health,
    imports,
    incidents,
    managers,
    me,
    notifications,
    privacy,
    recommendations,
    reference,
    stats,
    webhooks,
)
from app.api.routing import decline_foreign_paths, match_hot_routers_first
from app.core.config import Settings, get_settings
from app.core.errors import install_error_handlers
from app.core.logging import configure_logging
from app.core.metrics import install_queue_depth_collector
from app.core.runtime import freeze_startup_objects, tune_runtime

API_PREFIX = "/api/v1"

DESCRIPTION = """\
**kokoma** — the REST backend for *Kommunales Konfliktmanagement*: incidents (conflicts) per
district, the roster of trained volunteer conflict managers, explainable dispatch, and the steering
group's recommendations to the city administration.

Authenticate with `Authorization: Bearer <key>` — an API key, or (when the city's identity
provider is configured) a person's OIDC access token. Errors are RFC 9457 `application/problem+json`.
Text anywhere in a request (body, path, query) may not contain NUL (`\\u0000`): PostgreSQL cannot
store it, so such a request is refused with 422.
"""


def _operation_id(route: APIRoute) -> str:
    return route.name


def _docs_oauth(settings: Settings) -> dict[str, Any] | None:
    """Swagger UI on ``/docs`` signs in at the provider: authorization code with PKCE."""
    if not (settings.oidc_issuer and settings.oidc_docs_client_id):
        return None
    return {
        "clientId": settings.oidc_docs_client_id,
        "usePkceWithAuthorizationCodeGrant": True,
        "scopes": "openid profile email",
    }


def _warm_up(app: FastAPI) -> None:
    """Build at start-up what the first requests would otherwise build while the ones behind
    them wait (a server answers nothing before its lifespan started): the OpenAPI document, from
    which the metrics and the access log take their route templates, and the language codes.
    Without it a server under load answered nothing for its first second (bench/README.md)."""
    from app.models.languages import iso639_1_codes

    route_templates(app)
    iso639_1_codes()
    freeze_startup_objects()  # kept for the process's lifetime, as the app itself


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the event-loop read path (``app.state.reads``, :mod:`app.core.reads`); on shutdown
    commit what the access-log writer still holds (:mod:`app.services.privacy.access_writer`),
    then close it."""
    from app.core.reads import open_reads
    from app.services.privacy.access_writer import close_writer

    _warm_up(app)
    # Test clients may run lifespans of one app inside each other: each restores the reader
    # it found, and closes only its own.
    previous = getattr(app.state, "reads", None)
    reads = app.state.reads = await open_reads(get_settings())
    try:
        yield
    finally:
        if getattr(app.state, "reads", None) is reads:
            app.state.reads = previous
        await close_writer(reads)
        await reads.close()


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="kokoma API",
        version="1.0.0",
        description=DESCRIPTION,
        generate_unique_id_function=_operation_id,
        openapi_url="/openapi.json",
        docs_url=None,  # served by app.api.docs with packaged assets (no CDN)
        redoc_url=None,
        swagger_ui_init_oauth=_docs_oauth(settings),
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_docs(app, settings)
    app.include_router(health.router)
    for module in (
        reference,
        incidents,
        managers,
        dispatch,
        recommendations,
        stats,
        imports,
        webhooks,
        admin,
        privacy,
        me,
        notifications,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    match_hot_routers_first(app, [incidents.router, managers.router, dispatch.router])
    decline_foreign_paths(app)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RateLimitMiddleware)
    if settings.cors_origin_list:
        # Outside the limits, so that a browser can read a 413/429 (and preflights are answered
        # before them); inside the request id, which it exposes.
        app.add_middleware(CorsMiddleware, origins=settings.cors_origin_list)
    app.add_middleware(ObservabilityMiddleware)  # outermost: runs first (request id, access log)
    install_openapi(app, settings.oidc_issuer)
    configure_logging(settings.log_level, settings.log_format)
    if settings.metrics_enabled:
        install_queue_depth_collector()
        app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    return app


app = create_app()
tune_runtime()  # after the app is built: see app.core.runtime
