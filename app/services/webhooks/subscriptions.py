"""Webhook subscriptions: the API (create with a secret shown once, list, read, update, delete,
attempts)."""

from __future__ import annotations

import base64
import secrets
import uuid

from sqlalchemy import select
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.core.errors import NotFound, Unprocessable
from app.core.pagination import PageParams, keyset, page_slice
from app.core.security import Principal
from app.models.reference import Organisation
from app.models.webhook import (
    WebhookAttempt,
    WebhookAttemptPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookSubscription,
    WebhookUpdate,
)
from app.services import audit
from app.services.outbox import lock_listeners
from app.services.versioning import apply_changes, bump, check_if_match
from app.services.webhooks.targets import check_url_field

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _public(subscription: WebhookSubscription) -> WebhookPublic:
    return WebhookPublic.model_validate(subscription)


class WebhookService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load(self, webhook_id: uuid.UUID, *, for_update: bool = False) -> WebhookSubscription:
        found = self.session.get(
            WebhookSubscription, webhook_id, with_for_update=for_update or None
        )
        if found is None:
            raise NotFound(f"No webhook {webhook_id}.")
        return found

    def create(self, body: WebhookCreate, principal: Principal) -> WebhookCreated:
        check_url_field(body.url)
        if (
            body.organisation_id is not None
            and self.session.get(Organisation, body.organisation_id) is None
        ):
            raise Unprocessable(
                f"Unknown organisation {body.organisation_id}.",
                errors=[
                    {
                        "loc": ["body", "organisation_id"],
                        "msg": "unknown organisation",
                        "type": "unknown_reference",
                    }
                ],
            )
        now = get_clock().now()
        lock_listeners(self.session)
        subscription = WebhookSubscription(
            url=body.url,
            events=list(body.events),
            organisation_id=body.organisation_id,
            secret=generate_secret(),
            created_at=now,
            updated_at=now,
        )
        self.session.add(subscription)
        self.session.flush()
        audit.record(
            self.session,
            principal,
            "create",
            "webhook",
            subscription.id,
            [*body.model_fields_set, "secret"],
        )
        return WebhookCreated.model_validate(
            {**_public(subscription).model_dump(), "secret": subscription.secret}
        )

    def page(self, params: PageParams) -> tuple[list[WebhookPublic], str | None]:
        stmt = keyset(
            select(WebhookSubscription),
            [col(WebhookSubscription.created_at), col(WebhookSubscription.id)],
            params,
        )
        rows = self.session.scalars(stmt).all()
        items, cursor = page_slice(rows, params.limit, lambda s: [s.created_at, s.id])
        return [_public(s) for s in items], cursor

    def get(self, webhook_id: uuid.UUID) -> WebhookPublic:
        return _public(self.load(webhook_id))

    def update(
        self,
        webhook_id: uuid.UUID,
        body: WebhookUpdate,
        principal: Principal,
        if_match: int | None,
    ) -> WebhookPublic:
        subscription = self.load(webhook_id, for_update=True)
        check_if_match(subscription, if_match)
        fields = body.model_fields_set
        for name in fields:
            if getattr(body, name) is None:
                raise Unprocessable(
                    f"{name} cannot be null.",
                    errors=[{"loc": ["body", name], "msg": "may not be null", "type": "none"}],
                )
        if "url" in fields and body.url != subscription.url:
            check_url_field(body.url or "")
        if {"events", "active"} & fields:
            lock_listeners(self.session)
        changed = apply_changes(subscription, body.model_dump(include=fields))
        if changed:
            bump(self.session, subscription)
            audit.record(self.session, principal, "update", "webhook", subscription.id, changed)
        self.session.flush()
        return _public(subscription)

    def delete(self, webhook_id: uuid.UUID, principal: Principal) -> None:
        subscription = self.load(webhook_id, for_update=True)
        self.session.delete(subscription)
        audit.record(self.session, principal, "delete", "webhook", webhook_id)
        self.session.flush()

    def attempts(
        self, webhook_id: uuid.UUID, params: PageParams, event_id: uuid.UUID | None = None
    ) -> tuple[list[WebhookAttemptPublic], str | None]:
        self.load(webhook_id)
        stmt = select(WebhookAttempt).where(col(WebhookAttempt.subscription_id) == webhook_id)
        if event_id is not None:
            stmt = stmt.where(col(WebhookAttempt.event_id) == event_id)
        stmt = keyset(
            stmt, [col(WebhookAttempt.started_at), col(WebhookAttempt.id)], params, descending=True
        )
        rows, cursor = page_slice(
            self.session.scalars(stmt).all(), params.limit, lambda a: [a.started_at, a.id]
        )
        return [
            WebhookAttemptPublic.model_validate({**a.model_dump(), "webhook_id": a.message_id})
            for a in rows
        ], cursor
