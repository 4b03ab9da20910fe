"""Request id, one JSON access-log line per request, and Prometheus request metrics.

- ``X-Request-ID``: taken from the request when it is sane (1–128 characters of
  ``A–Z a–z 0–9 . _ : -``), else generated (32 hex digits); echoed in the response and attached to
  every log record written while the request runs.
- Access log (logger ``kokoma.access``): ``method``, ``route`` (the route *template*, e.g.
  ``/api/v1/incidents/{incident_id}`` — never the raw path nor the query string, which may carry
  personal data), ``status``, ``duration_ms``, ``principal_id`` (the API key id, set by
  :func:`app.api.deps.get_principal`) and ``role``. Never keys, reporter or contact data.
- Metrics: :data:`app.core.metrics.REQUESTS` and :data:`app.core.metrics.LATENCY`.

A pure ASGI middleware (no ``BaseHTTPMiddleware``): it adds no task or thread hop per request.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logging import direct_json, request_id_var, write_json_line
from app.core.metrics import LATENCY, REQUESTS

HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"

access_log = logging.getLogger("kokoma.access")


#: Generated request ids: 64 random bits per process, then a counter — unique, 32 hex digits,
#: and about 20× cheaper than ``uuid4()`` (an ``os.urandom`` system call per request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


#: Metric children per label set: ``labels()`` takes a lock and builds a key on every call.
_COUNTERS: dict[tuple[str, str, int], Any] = {}
_HISTOGRAMS: dict[tuple[str, str], Any] = {}


def _count(method: str, route: str, status: int, elapsed: float) -> None:
    counter = _COUNTERS.get((method, route, status))
    if counter is None:
        counter = _COUNTERS[(method, route, status)] = REQUESTS.labels(method, route, str(status))
    histogram = _HISTOGRAMS.get((method, route))
    if histogram is None:
        histogram = _HISTOGRAMS[(method, route)] = LATENCY.labels(method, route)
    counter.inc()
    histogram.observe(elapsed)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return value.decode("ascii") if _SANE_ID.match(value) else None
    return None


class RouteTemplates:
    """Full route templates (``/api/v1/incidents/{incident_id}``) of an app, from its OpenAPI.

    A routed request is looked up by its route's name (the operationId); a request answered before
    routing (413, 429, an idempotent replay) is matched against the templates; anything else is
    ``<unmatched>`` — raw paths never become labels.
    """

    def __init__(self, app: Any) -> None:
        spec = app.openapi()
        self.by_name: dict[str, str] = {}
        patterns: list[tuple[int, str, re.Pattern[str]]] = []
        for path, item in spec.get("paths", {}).items():
            for operation in item.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    self.by_name[operation["operationId"]] = path
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
            patterns.append((path.count("{"), path, re.compile(f"^{regex}$")))
        self.patterns = [(pattern, path) for _, path, pattern in sorted(patterns)]

    def template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            name = getattr(route, "name", None)
            if name in self.by_name:
                return self.by_name[name]
            path = getattr(route, "path", None)
            if isinstance(path, str):
                return path
        for pattern, path in self.patterns:
            if pattern.match(scope["path"]):
                return path
        return UNMATCHED


_templates: dict[int, RouteTemplates] = {}


def route_templates(app: Any) -> RouteTemplates:
    """The app's route templates, built from its OpenAPI document on first use (the app's
    lifespan builds them at start-up: :func:`app.main.lifespan`)."""
    templates = _templates.get(id(app))
    if templates is None:
        templates = _templates[id(app)] = RouteTemplates(app)
    return templates


def _route_template(scope: Scope) -> str:
    app = scope.get("app")
    if app is None or not hasattr(app, "openapi"):
        return UNMATCHED
    return route_templates(app).template(scope)


def _status_of_exception(exc: BaseException) -> int:
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return 503 if isinstance(exc, OperationalError | PoolTimeout) else 500


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or new_request_id()
        token = request_id_var.set(request_id)
        header_value = request_id.encode("ascii")
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((HEADER, header_value))
                message["headers"] = headers
            await send(message)

        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            failure = exc
            status = _status_of_exception(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = _route_template(scope)
            _count(method, route, status, elapsed)
            _log_access(scope, method, route, status, elapsed, failure)
            request_id_var.reset(token)


def _log_access(
    scope: Scope,
    method: str,
    route: str,
    status: int,
    elapsed: float,
    failure: BaseException | None,
) -> None:
    direct = direct_json(access_log)
    if not direct and not access_log.isEnabledFor(logging.INFO):
        return
    state: dict[str, Any] = scope.get("state") or {}
    principal = state.get("principal")
    key_id = getattr(principal, "key_id", None)
    role = getattr(principal, "role", None)
    extra = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        "principal_id": str(key_id) if key_id is not None else None,
        "role": str(role) if role is not None else None,
    }
    if failure is not None:
        extra["error"] = type(failure).__name__
    if direct:
        write_json_line(access_log, f"{method} {route} {status}", extra)
    else:
        access_log.info("%s %s %s", method, route, status, extra=extra)


async def metrics_endpoint(_request: Request) -> Response:
    """Prometheus text exposition (collectors that query the database run off the event loop)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    body = await run_in_threadpool(generate_latest, REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
