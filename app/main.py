"""The ASGI application: routers, middleware, exception handlers."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.middleware.body_limit import BodyLimitMiddleware
from app.api.middleware.idempotency import IdempotencyMiddleware
from app.api.routers import admin, health, incidents, reference
from app.core.errors import install_error_handlers

API_PREFIX = "/api/v1"

DESCRIPTION = """\
**kokoma** — the REST backend for *Kommunales Konfliktmanagement*: incidents (conflicts) per
district, the roster of trained volunteer conflict managers, explainable dispatch, and the steering
group's recommendations to the city administration.

Authenticate with `Authorization: Bearer <key>`. Errors are RFC 9457 `application/problem+json`.
"""


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app() -> FastAPI:
    app = FastAPI(
        title="kokoma API",
        version="1.0.0",
        description=DESCRIPTION,
        generate_unique_id_function=_operation_id,
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    app.include_router(health.router)
    for module in (reference, incidents, admin):
        app.include_router(module.router, prefix=API_PREFIX)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(BodyLimitMiddleware)  # outermost: runs first
    return app


app = create_app()
