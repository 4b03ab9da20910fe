"""Webhook subscriptions, fan-out from the outbox and signed delivery (Standard Webhooks).

Flow (``kokoma worker``, :mod:`app.services.worker`):

1. **Fan-out** — outbox events not yet fanned out become one :class:`WebhookDelivery` per matching
   active subscription (event type subscribed; an organisation-scoped subscription only for events
   of that organisation; only events that happened once the subscription existed — no backlog of
   earlier events, as for an import, which asks whether anybody listens: outbox.listening). ``(subscription, event)`` is unique and the insert skips existing pairs,
   so a repeated fan-out (crash between insert and marking) duplicates nothing.
2. **Claim** — due deliveries are claimed in a short transaction: ``SELECT … FOR UPDATE SKIP
   LOCKED`` on PostgreSQL (SQLite serialises writers with ``BEGIN IMMEDIATE``), then a lease
   (``locked_until`` + ``lease_token``). A worker that dies mid-delivery loses nothing: its lease
   runs out and another worker delivers again — with the same ``webhook-id`` (at least once).
3. **Deliver** — POST of ``{"type", "timestamp", "data"}`` signed per the Standard Webhooks spec
   (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>``) with the
   ``standardwebhooks`` reference implementation; no redirects, a timeout on every request, and the
   target re-checked against private addresses right before sending.
4. **Record** — every attempt is stored; success (2xx) ends the delivery, a failure schedules the
   next try after ``base · 2^(n-1)`` seconds (capped, "equal jitter": half fixed, half random) until
   ``KOKOMA_WEBHOOK_MAX_ATTEMPTS``, then the delivery is ``failed``. The update is guarded by the
   lease token, so a worker whose lease ran out cannot overwrite another's result.

Payloads are the outbox payloads: never reporter or manager contact data.

Modules: ``targets`` (address checks against SSRF and DNS rebinding), ``subscriptions`` (the
API), ``fan_out`` (outbox events → deliveries), ``delivery`` (claim, sign, send, record). The
worker jobs — :func:`fan_out_pending`, :func:`deliver_due`, :func:`prune_outbox` — are here.
"""

from __future__ import annotations

import socket  # noqa: F401  (re-exported: tests resolve names through webhooks.socket)
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from sqlalchemy import delete, select
from sqlmodel import col

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.db import session_scope
from app.models.outbox import OutboxEvent
from app.models.webhook import DeliveryStatus, WebhookDelivery
from app.services.webhooks.delivery import (
    USER_AGENT,
    Claim,
    Outcome,
    backoff_seconds,
    claim_due,
    lease_seconds,
    make_client,
    record,
    render_body,
    send,
    signed_headers,
)
from app.services.webhooks.fan_out import fan_out, is_postgresql, message_id
from app.services.webhooks.subscriptions import SECRET_PREFIX, WebhookService, generate_secret
from app.services.webhooks.targets import TargetRefused, check_target, pinned_request

__all__ = [
    "SECRET_PREFIX",
    "USER_AGENT",
    "Claim",
    "Outcome",
    "TargetRefused",
    "WebhookService",
    "backoff_seconds",
    "check_target",
    "claim_due",
    "deliver_due",
    "fan_out",
    "fan_out_pending",
    "generate_secret",
    "lease_seconds",
    "make_client",
    "message_id",
    "pinned_request",
    "prune_outbox",
    "record",
    "render_body",
    "send",
    "signed_headers",
]


def deliver_due(
    *,
    limit: int | None = None,
    client: httpx.Client | None = None,
    on_claimed: Callable[[Sequence[Claim]], None] | None = None,
) -> int:
    """Claim due deliveries, send them in parallel, record each; return how many were sent."""
    settings = get_settings()
    limit = limit or settings.webhook_concurrency * 4
    with session_scope() as session:
        claims = claim_due(session, get_clock().now(), limit, lease_seconds(settings))
    if not claims:
        return 0
    if on_claimed is not None:
        on_claimed(claims)  # tests: simulate a crash between claim and delivery
    own_client = client is None
    http = client or make_client(settings)
    try:

        def one(claim: Claim) -> None:
            outcome = send(claim, http, settings)
            with session_scope() as session:
                record(session, claim, outcome, settings)

        if len(claims) == 1 or settings.webhook_concurrency == 1:
            for claim in claims:
                one(claim)
        else:
            with ThreadPoolExecutor(
                max_workers=min(settings.webhook_concurrency, len(claims)),
                thread_name_prefix="webhook",
            ) as pool:
                list(pool.map(one, claims))
    finally:
        if own_client:
            http.close()
    return len(claims)


def fan_out_pending(limit: int = 500) -> int:
    """One fan-out round in its own transaction (a worker job)."""
    with session_scope() as session:
        return fan_out(session, get_clock().now(), limit)


def prune_outbox(limit: int = 1000) -> int:
    """Delete up to ``limit`` outbox events older than ``KOKOMA_OUTBOX_RETENTION_DAYS`` that are
    fanned out and have no pending delivery — with their deliveries and recorded attempts
    (cascade). A worker job: the outbox and the delivery log do not grow for ever. Returns how
    many events were deleted."""
    settings = get_settings()
    cutoff = get_clock().now() - timedelta(days=settings.outbox_retention_days)
    with session_scope() as session:
        pending = select(col(WebhookDelivery.id)).where(
            col(WebhookDelivery.event_id) == col(OutboxEvent.id),
            col(WebhookDelivery.status) == DeliveryStatus.pending.value,
        )
        stmt = (
            select(col(OutboxEvent.id))
            .where(
                col(OutboxEvent.fanned_out_at).is_not(None),
                col(OutboxEvent.created_at) < cutoff,
                ~pending.exists(),
            )
            .order_by(col(OutboxEvent.created_at))
            .limit(limit)
        )
        if is_postgresql(session):
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(session.scalars(stmt))
        if ids:
            session.execute(delete(OutboxEvent).where(col(OutboxEvent.id).in_(ids)))
        return len(ids)
