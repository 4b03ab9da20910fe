"""The route class of every API router: a unit of work that collided is run again.

A deadlock (SQLSTATE 40P01) or a serialization failure (40001) rolls the transaction back whole,
so the request can simply run again from the start. :class:`UnitOfWorkRoute` does that up to
``KOKOMA_DB_RETRY_ATTEMPTS`` times with jittered exponential backoff; only then does the client
see a 503 with ``Retry-After`` (:mod:`app.core.db_errors`). Because the request session commits
before the response is sent (``Depends(get_session, scope="function")``), a commit that fails
lands here as well, never after a 2xx.

A request whose body was streamed into the route (imports) cannot be replayed and is not retried.
"""

from __future__ import annotations

import inspect
import logging
import random
import typing
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
from fastapi import Request, Response
from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data
from starlette.types import Scope

from app.core.config import get_settings
from app.core.db_errors import is_transient, sqlstate

log = logging.getLogger("kokoma.db")


def _replayable(request: Request) -> bool:
    # Starlette caches a body read with ``body()``/``json()``; a consumed stream is gone.
    return not getattr(request, "_stream_consumed", False) or hasattr(request, "_body")


def backoff_seconds(attempt: int, base: float) -> float:
    """Full jitter: uniform in [0, base · 2^attempt]."""
    return random.uniform(0, base * (2**attempt))


async def _run_once(
    handler: Callable[[Request], Awaitable[Response]], request: Request
) -> Response:
    """One run of the route with its own stack of function-scoped dependencies.

    FastAPI opens that stack (where :func:`app.api.deps.get_session` commits or rolls back and
    closes) *around* the route handler, so without this every failed run's transaction would stay
    open — holding its row locks and its admission slot — until the last run had returned, and
    the run again would wait for the locks of the run it replaces. Here each run's session
    commits, or rolls back and closes, as the run ends: before the next run starts, and still
    before the response is sent. A commit that fails is raised here, so it is retried too.
    """
    scope = request.scope
    outer = scope.get("fastapi_function_astack")
    async with AsyncExitStack() as function_stack:
        scope["fastapi_function_astack"] = function_stack
        try:
            return await handler(request)
        finally:
            scope["fastapi_function_astack"] = outer


def reject_nul_parameters(scope: Scope) -> None:
    """Path and query values with NUL characters → 422 (PostgreSQL cannot even compare them).

    Checked here, before the route's dependencies, for every API route (request bodies are
    covered by :class:`app.models.common.RequestModel`): a plain check of the raw values costs
    less than a dependency FastAPI solves on every request.
    """
    query: bytes = scope.get("query_string", b"")
    path_params: dict[str, Any] = scope.get("path_params", {})
    if (
        b"%00" not in query
        and b"\x00" not in query
        and not any(isinstance(value, str) and "\x00" in value for value in path_params.values())
    ):
        return
    from urllib.parse import parse_qsl

    from app.core.errors import Unprocessable

    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    for where, items in (("path", list(path_params.items())), ("query", pairs)):
        for name, value in items:
            if isinstance(value, str) and "\x00" in value:
                raise Unprocessable(
                    "Parameters may not contain NUL characters.",
                    errors=[
                        {
                            "loc": [where, name],
                            "msg": "contains a NUL character",
                            "type": "string_nul",
                        }
                    ],
                )


DirectCall = Callable[[Request], Awaitable[Response | None]]


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    # (the route's response_model only documents such an endpoint: FastAPI sends the Response)
    try:
        returns = typing.get_type_hints(endpoint).get("return")
    except Exception:  # a hint that does not resolve: leave the route to FastAPI
        return False
    return isinstance(returns, type) and issubclass(returns, Response)


def direct_call(route: APIRoute) -> DirectCall | None:
    """The route's endpoint called without FastAPI's dependency solving — or ``None`` when the
    route is not that simple.

    FastAPI solves a route's parameters generically on every request (≈ a third of the CPU of a
    ``GET /incidents/{id}`` on the loop read path, bench/README.md). A read route that takes only
    the request, path values, and dependencies that themselves take only the request (the role
    checks of :mod:`app.api.deps`), and that is declared to return a ``Response`` (which FastAPI
    sends as it is, whatever the route's ``response_model``), needs none of that: each path
    value is validated by its own FastAPI field, the dependencies are awaited (once per call,
    as FastAPI caches them), the endpoint is called and its response returned as FastAPI
    would. A path value that fails validation is left to FastAPI (the call answers ``None``
    before any dependency ran: FastAPI then checks the caller first, as always), so every error
    is FastAPI's own (``tests/api/test_direct_routes.py`` compares both paths).
    """
    dependant = route.dependant
    endpoint = dependant.call
    if (
        endpoint is None
        or not inspect.iscoroutinefunction(endpoint)
        or not _returns_response(endpoint)
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    ):
        return None
    fields = [(field.name, field.validate) for field in dependant.path_params]
    calls: list[tuple[str | None, Callable[[Request], Awaitable[Any]]]] = []
    for sub in dependant.dependencies:
        depend = sub.call
        simple = (
            depend is not None
            and inspect.iscoroutinefunction(depend)
            and sub.request_param_name is not None
            and not sub.dependencies
            and not (sub.path_params or sub.query_params or sub.header_params)
            and not (sub.cookie_params or sub.body_params or sub.response_param_name)
            and len(inspect.signature(depend).parameters) == 1
        )
        if depend is None or not simple:
            return None
        calls.append((sub.name, depend))
    request_name = dependant.request_param_name

    async def call(request: Request) -> Response | None:
        values = request.scope["path_params"]
        kwargs: dict[str, Any] = {}
        for name, validate in fields:
            value, errors = validate(values[name])  # FastAPI's own validation of the field
            if errors:
                return None  # FastAPI's path: its error response
            kwargs[name] = value
        solved: dict[Any, Any] = {}
        for name, depend in calls:
            value = solved[depend] if depend in solved else await depend(request)
            solved[depend] = value
            if name is not None:
                kwargs[name] = value
        if request_name is not None:
            kwargs[request_name] = request
        response = await endpoint(**kwargs)
        if not isinstance(response, Response):
            raise TypeError(f"{route.name} returned {type(response).__name__}, not a Response")
        return response

    return call


class UnitOfWorkRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        #: the endpoint called directly when the route allows it (:func:`direct_call`)
        self.direct: DirectCall | None = direct_call(self)

        async def run(request: Request) -> Response:
            direct = self.direct
            if (
                direct is not None
                # FastAPI's path when dependencies are overridden, or FastAPI's telemetry
                # (OpenTelemetry) records this request
                and not getattr(request.scope.get("app"), "dependency_overrides", None)
                and get_telemetry_data() is None
            ):
                response = await direct(request)
                if response is not None:
                    return response
            return await handler(request)

        async def run_with_retries(request: Request) -> Response:
            reject_nul_parameters(request.scope)
            settings = get_settings()
            attempt = 0
            while True:
                try:
                    return await _run_once(run, request)
                except Exception as exc:
                    if (
                        not is_transient(exc)
                        or attempt + 1 >= settings.db_retry_attempts
                        or not _replayable(request)
                    ):
                        raise
                    log.warning(
                        "transient database failure, running the request again",
                        extra={"sqlstate": sqlstate(exc), "attempt": attempt + 1},
                    )
                    await anyio.sleep(backoff_seconds(attempt, settings.db_retry_backoff_seconds))
                    attempt += 1

        return run_with_retries


def match_hot_routers_first(app: Any, hot: Sequence[Any]) -> None:
    """Let the routers read most (``hot``, in this order) be matched first.

    FastAPI tries the app's routes in order, and each included router it passes costs a scan of
    that router's routes — ≈ 30 µs of a ``GET /incidents/{id}`` when the incidents router came
    after the reference data (bench/README.md). The API's paths do not overlap across routers, so
    the order changes no answer (``tests/test_routing_order.py`` resolves every documented path
    both ways); the OpenAPI document keeps the declaration order (``app.state.documented_routes``).
    Routes FastAPI does not keep as included routers are left where they are.
    """
    routes = app.router.routes
    app.state.documented_routes = list(routes)
    front = [
        route
        for router in hot
        for route in routes
        if getattr(route, "original_router", None) is router
    ]
    routes[:] = front + [route for route in routes if route not in front]
