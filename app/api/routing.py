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
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request, Response
from fastapi._compat import ModelField, field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data
from pydantic import BaseModel, Json
from starlette._utils import get_route_path
from starlette.datastructures import QueryParams
from starlette.routing import Match
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


@dataclass(frozen=True, slots=True)
class _QueryValue:
    """A query parameter read as FastAPI reads it (``request_params_to_args``), with what FastAPI
    works out again on every request — its key in the URL, whether it repeats — worked out once."""

    name: str
    alias: str
    repeats: bool
    required: bool
    default: Any
    validate: Callable[..., tuple[Any, list[Any]]]

    @classmethod
    def of(cls, field: ModelField) -> _QueryValue | None:
        """``None`` for a parameter FastAPI reads another way: a pydantic model or ``Json``,
        alias choices, a default that is validated too."""
        info = field.field_info
        annotation = info.annotation
        models = [annotation, *typing.get_args(annotation)]
        if (
            info.validation_alias is not None
            or info.validate_default
            or any(type(item) is Json for item in info.metadata)
            or any(isinstance(t, type) and issubclass(t, BaseModel) for t in models)
        ):
            return None
        return cls(
            field.name,
            field.alias,
            field_annotation_is_sequence(annotation),
            info.is_required(),
            field.default,
            field.validate,
        )

    def read(self, query: QueryParams) -> tuple[Any, bool]:
        """The value, and whether it is there and valid (else FastAPI answers)."""
        raw = query.getlist(self.alias) if self.repeats else query.get(self.alias)
        if raw is None or (self.repeats and not raw):
            return (None, False) if self.required else (deepcopy(self.default), True)
        value, errors = self.validate(raw, {}, loc=("query", self.alias))
        return value, not errors


def _query_values(dependant: Dependant) -> list[_QueryValue] | None:
    """The dependant's query values when it takes nothing but the request, path and query
    values and dependencies (``None`` otherwise)."""
    if (
        dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    ):
        return None
    values = [_QueryValue.of(field) for field in dependant.query_params]
    return None if None in values else typing.cast(list[_QueryValue], values)


#: a dependency the direct call awaits: its parameter name (if the endpoint takes its value),
#: the callable, the name it takes the request by, and its query values
_Dependency = tuple[str | None, Callable[..., Awaitable[Any]], str | None, list[_QueryValue]]


def _simple_dependency(sub: Dependant) -> _Dependency | None:
    """A dependency FastAPI would only have to await with the request and query values (the
    role checks, the page and the list filters of :mod:`app.api.deps`) — else ``None``."""
    depend = sub.call
    if depend is None or not inspect.iscoroutinefunction(depend) or sub.dependencies:
        return None
    query = _query_values(sub)
    if query is None or sub.path_params:
        return None
    taken = len(query) + (sub.request_param_name is not None)
    if len(inspect.signature(depend).parameters) != taken:
        return None
    return sub.name, depend, sub.request_param_name, query


def _read_all(values: list[_QueryValue], query: QueryParams, into: dict[str, Any]) -> bool:
    for value in values:
        read, valid = value.read(query)
        if not valid:
            return False
        into[value.name] = read
    return True


def direct_call(route: APIRoute) -> DirectCall | None:
    """The route's endpoint called without FastAPI's dependency solving — or ``None`` when the
    route is not that simple.

    FastAPI solves a route's parameters generically on every request (≈ a third of the CPU of a
    ``GET /incidents/{id}`` on the loop read path and a quarter of a filtered list,
    bench/README.md). A read route that takes only the request, path and query values and
    dependencies that themselves take only the request and query values (the role checks, the
    page and the list filters of :mod:`app.api.deps`), and that is declared to return a
    ``Response`` (which FastAPI sends as it is, whatever the route's ``response_model``), needs
    none of that: each value is read as FastAPI reads it and validated by its own FastAPI field,
    the dependencies are awaited (once per call, as FastAPI caches them), the endpoint is called
    and its response returned as FastAPI would. A value that is missing or fails validation is
    left to FastAPI (the call answers ``None`` before any dependency ran: FastAPI then checks
    the caller first, as always), so every error is FastAPI's own
    (``tests/api/test_direct_routes.py`` compares both paths).
    """
    dependant = route.dependant
    endpoint = dependant.call
    if (
        endpoint is None
        or not inspect.iscoroutinefunction(endpoint)
        or not _returns_response(endpoint)
    ):
        return None
    own = _query_values(dependant)
    if own is None:
        return None
    paths = [(field.name, field.validate) for field in dependant.path_params]
    dependencies: list[_Dependency] = []
    for sub in dependant.dependencies:
        simple = _simple_dependency(sub)
        if simple is None:
            return None
        dependencies.append(simple)
    request_name = dependant.request_param_name

    async def call(request: Request) -> Response | None:
        values = request.scope["path_params"]
        kwargs: dict[str, Any] = {}
        for name, validate in paths:
            value, errors = validate(values[name])  # FastAPI's own validation of the field
            if errors:
                return None  # FastAPI's path: its error response
            kwargs[name] = value
        query = request.query_params
        if own and not _read_all(own, query, kwargs):
            return None
        arguments: list[tuple[str | None, Callable[..., Awaitable[Any]], dict[str, Any]]] = []
        for name, depend, request_param, wanted in dependencies:
            given: dict[str, Any] = {}
            if wanted and not _read_all(wanted, query, given):
                return None
            if request_param is not None:
                given[request_param] = request
            arguments.append((name, depend, given))
        solved: dict[Any, Any] = {}
        for name, depend, given in arguments:
            value = solved[depend] if depend in solved else await depend(**given)
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


def _head(path: str) -> tuple[str, ...]:
    """A path's first three segments (``/api/v1/incidents/…`` → ``("api", "v1", "incidents")``):
    a request can match a route only where the two agree, when the route's are all literal."""
    return tuple(path.split("/", 4)[1:4])


def _route_heads(prefix: str, routes: Sequence[Any]) -> frozenset[tuple[str, ...]] | None:
    """The heads of a router's routes; None when one of them could match several heads (a
    parameter among its first three segments, a route without a path, a router inside)."""
    heads = set()
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str) or hasattr(route, "original_router"):
            return None
        head = _head(prefix + path)
        if any("{" in segment for segment in head):
            return None
        heads.add(head)
    return frozenset(heads)


def decline_foreign_paths(app: Any) -> None:
    """Let each included router turn down a request none of its routes can match, unscanned.

    FastAPI matches a request against the app's routes in order; an included router answers
    by trying each of its routes (a path regex and bookkeeping in the scope, ≈ 1.5 µs each), so
    a route behind three routers of hot reads paid ≈ 50 µs before its endpoint ran
    (bench/README.md). Here each router learns the first three path segments its routes start
    with, and answers "no match" at once for a request that starts otherwise — what its scan
    would have answered. A router whose routes start with a parameter is scanned as before, so
    the answer of every request stays FastAPI's (``tests/test_routing_order.py`` resolves every
    documented path, redirects included, with and without this).
    """
    for included in app.router.routes:
        router = getattr(included, "original_router", None)
        prefix = getattr(getattr(included, "include_context", None), "prefix", None)
        if router is None or not isinstance(prefix, str):
            continue
        heads = _route_heads(prefix, router.routes)
        if heads is not None:
            included.matches = _declining(included.matches, heads)


def _declining(
    scan: Callable[[Scope], tuple[Match, Scope]], heads: frozenset[tuple[str, ...]]
) -> Callable[[Scope], tuple[Match, Scope]]:
    def matches(scope: Scope) -> tuple[Match, Scope]:
        if _head(get_route_path(scope)) not in heads:
            return Match.NONE, {}
        return scan(scope)

    return matches
