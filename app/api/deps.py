"""Typed dependency aliases: session, principal, role rules, pagination, clock, load-or-404."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from fastapi import Depends, Header, Query, Request, Response
from pydantic import BaseModel
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.core.clock import Clock, get_clock
from app.core.config import Settings, get_settings
from app.core.db import new_session
from app.core.errors import Forbidden, PreconditionFailed, Unauthorized
from app.core.oidc import Binding, looks_like_jwt, principal_from_claims
from app.core.pagination import PageParams
from app.core.reads import Reads
from app.core.security import Action, Principal, allowed, key_cache, lookup_principal
from app.models.system import Role

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
T = TypeVar("T")


_UNITS_OF_WORK: RunVar[anyio.Semaphore] = RunVar("kokoma_units_of_work")


def _units_of_work() -> anyio.Semaphore:
    try:
        return _UNITS_OF_WORK.get()
    except LookupError:
        settings = get_settings()
        pool = 15 if settings.is_sqlite else settings.db_pool_size + settings.db_max_overflow
        tokens = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        semaphore = anyio.Semaphore(max(1, min(pool, tokens - 8)))
        _UNITS_OF_WORK.set(semaphore)
        return semaphore


async def unit_of_work_slot() -> AsyncIterator[None]:
    """Admit at most (connection pool size) requests with an open session at once.

    A sync route needs a fresh worker thread for every step (each dependency, the endpoint, the
    response validation) while its transaction — and the row locks or, on SQLite, the write lock
    it took — stays open until the session dependency commits. Without this bound, a burst of
    more concurrent writers than threads (40) lets the waiting requests take every thread while
    the lock holder waits for one to validate its response: the API stalls until pool timeouts
    (503). Waiting here costs no thread.
    """
    async with _units_of_work():
        yield


def get_session(
    request: Request, _slot: Annotated[None, Depends(unit_of_work_slot, scope="function")]
) -> Iterator[Session]:
    """One unit of work per request: commit on success, roll back on any error.

    Declared with ``scope="function"`` (:data:`SessionDep`): the commit runs when the endpoint
    returns, *before* the response is sent — a 2xx is only ever sent for a committed change, and
    a commit that fails becomes a problem response (:mod:`app.core.db_errors`), with the whole
    request run again first when it was a deadlock (:mod:`app.api.routing`). With FastAPI's
    default ``"request"`` scope the commit would run after the client had its answer.
    """
    session = new_session(write=request.method not in _READ_METHODS)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def in_unit_of_work(work: Callable[[Session], T], *, write: bool = False) -> T:
    """Run ``work(session)`` as one unit of work in ONE worker-thread hop (commit on success).

    For hot ``async def`` read routes: a sync route with ``SessionDep`` takes four thread hops
    (session set-up, endpoint, response validation, commit), this takes one — measured in
    bench/README.md. Same admission bound as :func:`get_session`.
    """
    from app.core.db import session_scope

    def run() -> T:
        with session_scope(write=write) as session:
            return work(session)

    async with _units_of_work():
        return await run_in_threadpool(run)


def json_response(body: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """A validated response model serialised once, by pydantic: returned as the model, FastAPI
    would dump it, validate it again and serialise it again (≈ 0.9 ms for a page of 50; the
    bytes are the same — bench/README.md). The route's return annotation still documents the
    schema."""
    return Response(
        body.model_dump_json(by_alias=True), media_type="application/json", headers=headers
    )


def loop_reads(request: Request) -> Reads | None:
    """The app's event-loop reader (:mod:`app.core.reads`), ``None`` when it runs without its
    lifespan (then the unit-of-work path answers)."""
    return getattr(request.app.state, "reads", None)


async def _settings() -> Settings:
    # ``async``: FastAPI runs sync dependencies in the thread pool — a hop per dependency per
    # request, which measurably halves throughput (bench/README.md). Pure, non-blocking
    # dependencies here are therefore ``async def``.
    return get_settings()


SettingsDep = Annotated[Settings, Depends(_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]

_BEARER_HEADERS = {"WWW-Authenticate": 'Bearer realm="kokoma"'}


def _lookup_principal(token: str) -> Principal | None:
    from app.core.db import get_engine

    with get_engine().connect() as conn:
        return lookup_principal(conn, token)


async def get_principal(request: Request) -> Principal:
    """The caller's principal: a cached key costs no thread and no database round trip; a miss
    is one indexed read on a connection of its own (so auth needs no request session).

    With ``KOKOMA_OIDC_ISSUER`` set, a bearer token shaped like a JWT is an OIDC access token
    (``app.core.oidc``): verified on the event loop, its principal cached like a key's."""
    known = getattr(request.state, "principal", None)
    if known is not None:  # already established for this request
        return known
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "Send an API key as 'Authorization: Bearer <key>'.", headers=_BEARER_HEADERS
        )
    from app.core.security import hash_key

    digest = hash_key(token)
    hit, principal = key_cache.get(digest)
    if not hit:
        settings = get_settings()
        if settings.oidc_issuer and looks_like_jwt(token):
            principal = await _oidc_principal(token, digest, settings)
        else:
            principal = await run_in_threadpool(_lookup_principal, token)
            key_cache.put(digest, principal, settings.api_key_cache_seconds)
    if principal is None:
        raise Unauthorized("The API key is unknown or revoked.", headers=_BEARER_HEADERS)
    request.state.principal = principal
    return principal


def _oidc_bound_principal(claims: dict[str, object], binding: Binding) -> Principal:
    from app.core.db import get_engine

    with get_engine().connect() as conn:
        return principal_from_claims(claims, binding, conn)


async def _oidc_principal(token: str, digest: str, settings: Settings) -> Principal:
    """Verify an access token; look up the partner's organisation or the manager (a thread hop
    only for those two roles); cache the principal until the token expires at the latest."""
    from app.core.oidc import binding_from_claims, token_cache_seconds, verify_token

    claims = await verify_token(token, settings)
    binding = binding_from_claims(claims, settings)
    if binding.role in (Role.partner, Role.manager):
        principal = await run_in_threadpool(_oidc_bound_principal, claims, binding)
    else:
        principal = principal_from_claims(claims, binding, None)
    key_cache.put(digest, principal, token_cache_seconds(claims, settings))
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(action: Action) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that lets a principal through only when its role may attempt ``action``."""

    async def check(request: Request) -> Principal:
        # get_principal called, not depended on: one dependency FastAPI solves per request
        # instead of two (a route that also takes PrincipalDep finds it cached on the request).
        principal = await get_principal(request)
        if not allowed(principal, action):
            raise Forbidden(f"The role '{principal.role}' may not do this ({action}).")
        return principal

    check.__name__ = f"require_{action}"
    return check


#: The caller, let through only when its role may attempt the action (``core.security.RULES``):
#: ``principal: AllowedIncidentsRead``. One alias per :class:`Action`.
AllowedReferenceRead = Annotated[Principal, Depends(require(Action.reference_read))]
AllowedReferenceWrite = Annotated[Principal, Depends(require(Action.reference_write))]
AllowedIncidentsRead = Annotated[Principal, Depends(require(Action.incidents_read))]
AllowedIncidentsCreate = Annotated[Principal, Depends(require(Action.incidents_create))]
AllowedIncidentsUpdate = Annotated[Principal, Depends(require(Action.incidents_update))]
AllowedIncidentsStatus = Annotated[Principal, Depends(require(Action.incidents_status))]
AllowedIncidentsNotes = Annotated[Principal, Depends(require(Action.incidents_notes))]
AllowedManagersRead = Annotated[Principal, Depends(require(Action.managers_read))]
AllowedManagersWrite = Annotated[Principal, Depends(require(Action.managers_write))]
AllowedManagersSelf = Annotated[Principal, Depends(require(Action.managers_self))]
AllowedDispatch = Annotated[Principal, Depends(require(Action.dispatch))]
AllowedAssignmentsRead = Annotated[Principal, Depends(require(Action.assignments_read))]
AllowedAssignmentsAnswer = Annotated[Principal, Depends(require(Action.assignments_answer))]
AllowedRecommendationsRead = Annotated[Principal, Depends(require(Action.recommendations_read))]
AllowedRecommendationsWrite = Annotated[Principal, Depends(require(Action.recommendations_write))]
AllowedStatsRead = Annotated[Principal, Depends(require(Action.stats_read))]
AllowedImports = Annotated[Principal, Depends(require(Action.imports))]
AllowedWebhooks = Annotated[Principal, Depends(require(Action.webhooks))]
AllowedNotificationsRead = Annotated[Principal, Depends(require(Action.notifications_read))]
AllowedApiKeys = Annotated[Principal, Depends(require(Action.api_keys))]
AllowedAudit = Annotated[Principal, Depends(require(Action.audit))]
AllowedReporterErase = Annotated[Principal, Depends(require(Action.reporter_erase))]
AllowedDataProtection = Annotated[Principal, Depends(require(Action.data_protection))]


#: The largest page the schema allows; ``KOKOMA_PAGE_SIZE_MAX`` may lower it (then a larger
#: ``limit`` is a 422 as well).
_PAGE_SIZE_MAX: int = Settings.model_fields["page_size_max"].default


async def get_page(
    limit: Annotated[
        int | None,
        Query(ge=1, le=_PAGE_SIZE_MAX, description="Page size (default 50, max 500)"),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="Opaque cursor from next_cursor")
    ] = None,
) -> PageParams:
    settings = get_settings()
    size = settings.page_size_default if limit is None else limit
    if size > settings.page_size_max:
        from app.core.errors import Unprocessable

        raise Unprocessable(
            f"limit may be at most {settings.page_size_max}.",
            errors=[{"loc": ["query", "limit"], "msg": "too large", "type": "less_than_equal"}],
        )
    return PageParams(limit=size, cursor=cursor)


PageDep = Annotated[PageParams, Depends(get_page)]


async def get_if_match(
    if_match: Annotated[str | None, Header(description="ETag of the version you edit")] = None,
) -> int | None:
    """The version named by ``If-Match`` (``"3"``, ``W/"3"``), ``None`` when absent."""
    if if_match is None:
        return None
    value = if_match.strip()
    if value == "*":
        return None
    value = value.removeprefix("W/").strip('"')
    if not value.isdigit():
        raise PreconditionFailed('If-Match must be the ETag of a version, e.g. "3".')
    return int(value)


IfMatchDep = Annotated[int | None, Depends(get_if_match)]


def etag(version: int) -> str:
    return f'"{version}"'
