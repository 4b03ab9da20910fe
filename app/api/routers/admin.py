"""Administration: API keys and the audit trail (admins only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlmodel import col

from app.api.deps import (
    AllowedApiKeys,
    AllowedAudit,
    PageDep,
    SessionDep,
)
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.core.pagination import keyset, page_slice
from app.models.common import Page, UTCTimestamp
from app.models.system import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    AuditEvent,
    AuditEventPublic,
    AuditKind,
)
from app.services.api_keys import ApiKeyService

router = APIRouter(route_class=UnitOfWorkRoute)
KeyAdmin = AllowedApiKeys
Auditor = AllowedAudit


@router.post(
    "/api-keys",
    status_code=201,
    tags=["admin"],
    summary="Create an API key (the key is shown in this response only)",
    responses=problems(403),
)
def api_keys_create(session: SessionDep, principal: KeyAdmin, body: ApiKeyCreate) -> ApiKeyCreated:
    return ApiKeyService(session).create(body, principal)


@router.get(
    "/api-keys",
    tags=["admin"],
    summary="List API keys (never the keys)",
    responses=problems(400, 403),
)
def api_keys_list(session: SessionDep, _: KeyAdmin, page: PageDep) -> Page[ApiKeyPublic]:
    items, cursor = ApiKeyService(session).page(page)
    return Page(items=items, next_cursor=cursor)


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    tags=["admin"],
    summary="Revoke an API key",
    responses=problems(403, 404),
)
def api_keys_revoke(session: SessionDep, principal: KeyAdmin, key_id: uuid.UUID) -> Response:
    ApiKeyService(session).revoke(key_id, principal)
    return Response(status_code=204)


@router.get("/audit", tags=["admin"], summary="Read the audit trail", responses=problems(400, 403))
def audit_list(
    session: SessionDep,
    _: Auditor,
    page: PageDep,
    kind: AuditKind | None = None,
    resource: Annotated[str | None, Query(max_length=64)] = None,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    principal_id: uuid.UUID | None = None,
    principal_subject: Annotated[
        str | None,
        Query(max_length=300, description="api_key:<id>, oidc:<sub> (a person) or system"),
    ] = None,
    after: UTCTimestamp | None = None,
) -> Page[AuditEventPublic]:
    stmt = select(AuditEvent)
    if kind is not None:
        stmt = stmt.where(col(AuditEvent.kind) == kind)
    if resource:
        stmt = stmt.where(col(AuditEvent.resource) == resource)
    if resource_id:
        stmt = stmt.where(col(AuditEvent.resource_id) == resource_id)
    if principal_id:
        stmt = stmt.where(col(AuditEvent.principal_id) == principal_id)
    if principal_subject:
        stmt = stmt.where(col(AuditEvent.principal_subject) == principal_subject)
    if after is not None:
        stmt = stmt.where(col(AuditEvent.at) > after)
    rows = session.scalars(
        keyset(stmt, [col(AuditEvent.at), col(AuditEvent.id)], page, descending=True)
    )
    items, cursor = page_slice(rows.all(), page.limit, lambda e: [e.at, e.id])
    return Page(items=[AuditEventPublic.model_validate(e) for e in items], next_cursor=cursor)
