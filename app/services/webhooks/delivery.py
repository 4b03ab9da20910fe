"""Delivery: claim due deliveries under a lease, send them signed, record each attempt."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import or_, select, update
from sqlmodel import Session, col
from standardwebhooks.webhooks import Webhook

from app.core.clock import get_clock
from app.core.config import Settings
from app.core.db import affected_rows
from app.models.outbox import OutboxEvent
from app.models.webhook import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from app.services.webhooks.fan_out import is_postgresql
from app.services.webhooks.targets import TargetRefused, check_target, pinned_request

log = logging.getLogger("kokoma.webhooks")

USER_AGENT = "kokoma-webhooks/1"


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: uuid.UUID
    lease_token: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    message_id: str
    attempts: int
    url: str
    secret: str
    body: str


@dataclass(frozen=True, slots=True)
class Outcome:
    started_at: datetime
    finished_at: datetime
    status_code: int | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def lease_seconds(settings: Settings) -> float:
    return max(60.0, 4 * settings.webhook_timeout_seconds)


def render_body(event_type: str, created_at: datetime, payload: dict[str, Any]) -> str:
    return orjson.dumps(
        {
            "type": event_type,
            "timestamp": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "data": payload,
        }
    ).decode("utf-8")


def claim_due(session: Session, now: datetime, limit: int, lease: float) -> list[Claim]:
    """Lease up to ``limit`` due deliveries to this worker (the caller commits at once)."""
    d, s = WebhookDelivery, WebhookSubscription
    stmt = (
        select(col(d.id))
        .join(s, col(s.id) == col(d.subscription_id))
        .where(
            col(d.status) == DeliveryStatus.pending,
            col(d.next_attempt_at) <= now,
            or_(col(d.locked_until).is_(None), col(d.locked_until) <= now),
            col(s.active).is_(True),
        )
        .order_by(col(d.next_attempt_at), col(d.id))
        .limit(limit)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(of=d, skip_locked=True)  # type: ignore[arg-type]
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    token = uuid.uuid4()
    session.execute(
        update(d)
        .where(col(d.id).in_(ids))
        .values(locked_until=now + timedelta(seconds=lease), lease_token=token)
    )
    rows = session.execute(
        select(
            col(d.id),
            col(d.subscription_id),
            col(d.event_id),
            col(d.event_type),
            col(d.message_id),
            col(d.attempts),
            col(s.url),
            col(s.secret),
            col(OutboxEvent.payload),
            col(OutboxEvent.created_at),
        )
        .join(s, col(s.id) == col(d.subscription_id))
        .join(OutboxEvent, col(OutboxEvent.id) == col(d.event_id))
        .where(col(d.id).in_(ids))
    ).all()
    return [
        Claim(
            delivery_id=row.id,
            lease_token=token,
            subscription_id=row.subscription_id,
            event_id=row.event_id,
            event_type=row.event_type,
            message_id=row.message_id,
            attempts=row.attempts,
            url=row.url,
            secret=row.secret,
            body=render_body(row.event_type, row.created_at, row.payload),
        )
        for row in rows
    ]


def signed_headers(claim: Claim, at: datetime) -> dict[str, str]:
    signature = Webhook(claim.secret).sign(claim.message_id, at.astimezone(UTC), claim.body)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claim.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def send(claim: Claim, client: httpx.Client, settings: Settings) -> Outcome:
    """One HTTP attempt; never raises (the outcome carries the error)."""
    clock = get_clock()
    started = clock.now()
    status_code: int | None = None
    error: str | None = None
    try:
        address = check_target(claim.url, allow_private=settings.webhooks_allow_private)
        url, host, extensions = pinned_request(claim.url, address)
        response = client.post(
            url,
            content=claim.body.encode("utf-8"),
            headers={**signed_headers(claim, started), **host},
            extensions=extensions,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except TargetRefused as exc:
        error = f"target refused: {exc}"
    except httpx.TimeoutException:
        error = f"timeout after {settings.webhook_timeout_seconds:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return Outcome(started, clock.now(), status_code, error)


def backoff_seconds(attempt: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Delay after failed attempt ``attempt`` (1-based): exponential, capped, equal jitter."""
    delay = min(
        settings.webhook_backoff_max_seconds, settings.webhook_backoff_seconds * 2 ** (attempt - 1)
    )
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def record(session: Session, claim: Claim, outcome: Outcome, settings: Settings) -> bool:
    """Store the attempt and move the delivery on; ``False`` when the lease was lost meanwhile."""
    attempt = claim.attempts + 1
    now = outcome.finished_at
    values: dict[str, Any] = {"attempts": attempt, "locked_until": None, "lease_token": None}
    next_retry: datetime | None = None
    if outcome.succeeded:
        values.update(status=DeliveryStatus.delivered.value, delivered_at=now)
    elif attempt >= settings.webhook_max_attempts:
        values.update(status=DeliveryStatus.failed.value)
    else:
        next_retry = now + timedelta(seconds=backoff_seconds(attempt, settings))
        values.update(next_attempt_at=next_retry)
    d = WebhookDelivery
    result = session.execute(
        update(d)
        .where(col(d.id) == claim.delivery_id, col(d.lease_token) == claim.lease_token)
        .values(**values)
    )
    kept = affected_rows(result) == 1
    session.add(
        WebhookAttempt(
            delivery_id=claim.delivery_id,
            subscription_id=claim.subscription_id,
            event_id=claim.event_id,
            event_type=claim.event_type,
            message_id=claim.message_id,
            attempt=attempt,
            succeeded=outcome.succeeded,
            status_code=outcome.status_code,
            error=outcome.error if kept else f"{outcome.error or 'ok'} (lease expired meanwhile)",
            started_at=outcome.started_at,
            finished_at=outcome.finished_at,
            next_retry_at=next_retry if kept else None,
        )
    )
    if not outcome.succeeded:
        log.info(
            "webhook delivery failed",
            extra={
                "delivery_id": str(claim.delivery_id),
                "attempt": attempt,
                "error": outcome.error,
            },
        )
    return kept


def make_client(settings: Settings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        transport=transport,
    )
