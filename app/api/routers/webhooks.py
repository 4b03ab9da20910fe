"""Webhook subscriptions and their delivery attempts (admins only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.api.deps import (
    AllowedWebhooks,
    IfMatchDep,
    PageDep,
    SessionDep,
    etag,
)
from app.api.openapi import sends
from app.api.problems import problems
from app.api.routing import UnitOfWorkRoute
from app.models.common import Page
from app.models.webhook import (
    WebhookAttemptPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)
from app.services.webhooks.subscriptions import WebhookService

router = APIRouter(prefix="/webhooks", tags=["webhooks"], route_class=UnitOfWorkRoute)
WebhookAdmin = AllowedWebhooks


@router.post(
    "",
    status_code=201,
    summary="Subscribe a URL to events (the signing secret is shown in this response only)",
    responses=problems(403),
)
@sends("ETag", "Location", status=201)
def webhooks_create(
    session: SessionDep, principal: WebhookAdmin, body: WebhookCreate, response: Response
) -> WebhookCreated:
    created = WebhookService(session).create(body, principal)
    response.headers["ETag"] = etag(created.version)
    response.headers["Location"] = f"/api/v1/webhooks/{created.id}"
    return created


@router.get(
    "", summary="List webhook subscriptions (never the secrets)", responses=problems(400, 403)
)
def webhooks_list(session: SessionDep, _: WebhookAdmin, page: PageDep) -> Page[WebhookPublic]:
    items, cursor = WebhookService(session).page(page)
    return Page(items=items, next_cursor=cursor)


@router.get("/{webhook_id}", summary="Get a webhook subscription", responses=problems(403, 404))
@sends("ETag")
def webhooks_get(
    session: SessionDep, _: WebhookAdmin, webhook_id: uuid.UUID, response: Response
) -> WebhookPublic:
    found = WebhookService(session).get(webhook_id)
    response.headers["ETag"] = etag(found.version)
    return found


@router.patch(
    "/{webhook_id}",
    summary="Change a subscription's url, events or active flag",
    responses=problems(403, 404, 412),
)
@sends("ETag")
def webhooks_update(
    session: SessionDep,
    principal: WebhookAdmin,
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    if_match: IfMatchDep,
    response: Response,
) -> WebhookPublic:
    updated = WebhookService(session).update(webhook_id, body, principal, if_match)
    response.headers["ETag"] = etag(updated.version)
    return updated


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Delete a subscription (pending deliveries are dropped)",
    responses=problems(403, 404),
)
def webhooks_delete(
    session: SessionDep, principal: WebhookAdmin, webhook_id: uuid.UUID
) -> Response:
    WebhookService(session).delete(webhook_id, principal)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    summary="Delivery attempts of a subscription, newest first",
    responses=problems(400, 403, 404),
)
def webhooks_deliveries(
    session: SessionDep,
    _: WebhookAdmin,
    webhook_id: uuid.UUID,
    page: PageDep,
    event_id: uuid.UUID | None = None,
) -> Page[WebhookAttemptPublic]:
    items, cursor = WebhookService(session).attempts(webhook_id, page, event_id)
    return Page(items=items, next_cursor=cursor)
