"""Typed dependency aliases: session, principal, role rules, pagination, clock, load-or-404."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlmodel import Session

from app.core.clock import Clock, get_clock
from app.core.config import Settings, get_settings
from app.core.db import new_session
from app.core.errors import Forbidden, PreconditionFailed, Unauthorized
from app.core.pagination import PageParams
from app.core.security import Action, Principal, allowed, key_cache, lookup_principal

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request: commit on success, roll back on any error."""
    session = new_session(write=request.method not in _READ_METHODS)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]

_BEARER_HEADERS = {"WWW-Authenticate": 'Bearer realm="kokoma"'}


def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> Principal:
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
        principal = lookup_principal(session.connection(), token)
        key_cache.put(digest, principal, settings.api_key_cache_seconds)
    if principal is None:
        raise Unauthorized("The API key is unknown or revoked.", headers=_BEARER_HEADERS)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(action: Action) -> Callable[[Principal], Principal]:
    """A dependency that lets a principal through only when its role may attempt ``action``."""

    def check(principal: PrincipalDep) -> Principal:
        if not allowed(principal, action):
            raise Forbidden(f"The role '{principal.role}' may not do this ({action}).")
        return principal

    check.__name__ = f"require_{action}"
    return check


def Allowed(action: Action) -> type[Principal]:
    """``principal: Allowed(Action.x)`` — the caller, checked against the role rules."""
    return Annotated[Principal, Depends(require(action))]  # type: ignore[return-value]


def get_page(
    settings: SettingsDep,
    limit: Annotated[int | None, Query(ge=1, description="Page size (default 50, max 500)")] = None,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="Opaque cursor from next_cursor")
    ] = None,
) -> PageParams:
    size = settings.page_size_default if limit is None else limit
    if size > settings.page_size_max:
        from app.core.errors import Unprocessable

        raise Unprocessable(
            f"limit may be at most {settings.page_size_max}.",
            errors=[{"loc": ["query", "limit"], "msg": "too large", "type": "less_than_equal"}],
        )
    return PageParams(limit=size, cursor=cursor)


PageDep = Annotated[PageParams, Depends(get_page)]


def get_if_match(
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
        raise PreconditionFailed("If-Match must be the ETag of a version, e.g. \"3\".")
    return int(value)


IfMatchDep = Annotated[int | None, Depends(get_if_match)]


def etag(version: int) -> str:
    return f'"{version}"'
