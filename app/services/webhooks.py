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
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import random
import secrets
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session
from standardwebhooks.webhooks import Webhook

from app.core.clock import get_clock
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.errors import NotFound, Unprocessable
from app.core.pagination import PageParams, keyset, page_slice
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.outbox import OutboxEvent
from app.models.reference import Organisation
from app.models.webhook import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookAttemptPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookPublic,
    WebhookSubscription,
    WebhookUpdate,
)
from app.services import audit
from app.services.outbox import lock_listeners
from app.services.versioning import apply_changes, bump, check_if_match

log = logging.getLogger("kokoma.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
_MESSAGE_NAMESPACE = uuid.UUID("6f1c3f52-3f0e-4d55-9a53-7b3c6c1f2a10")
USER_AGENT = "kokoma-webhooks/1"


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def message_id(event_id: uuid.UUID, subscription_id: uuid.UUID) -> str:
    """The ``webhook-id``: the same for an event and a subscription, whatever happens."""
    return "msg_" + uuid.uuid5(_MESSAGE_NAMESPACE, f"{event_id}:{subscription_id}").hex


# --- target checks (SSRF) ----------------------------------------------------------------------


class TargetRefused(ValueError):
    pass


def _public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_target(
    url: str, *, allow_private: bool, unresolvable_ok: bool = False
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Refuse anything but http(s) and — unless allowed — hosts resolving to non-public addresses
    (loopback, private, link-local, shared, reserved). ``unresolvable_ok`` (creating a
    subscription): a name that does not resolve now is accepted — the check runs again before
    every delivery, where it then counts as a failed attempt.

    Returns the checked address to connect to (``None`` when private targets are allowed or the
    name did not resolve): a delivery connects to exactly that address, so a DNS answer that
    changes between the check and the connection (DNS rebinding) cannot redirect it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("must be an http or https URL")
    if not parts.hostname:
        raise TargetRefused("needs a host")
    if parts.username or parts.password:
        raise TargetRefused("must not contain credentials")
    if allow_private:
        return None
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            if unresolvable_ok:
                return None
            raise TargetRefused("host cannot be resolved") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or not all(_public_address(a) for a in addresses):
        raise TargetRefused(
            "resolves to a loopback, private or link-local address "
            "(allowed only with KOKOMA_WEBHOOKS_ALLOW_PRIVATE=true)"
        )
    return addresses[0]


def pinned_request(
    url: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL, extra headers and request extensions to reach ``url`` at the checked
    ``address``: the connection goes to the address, while ``Host`` and — for https — the TLS
    server name (SNI, and the certificate check) stay the URL's host."""
    target = httpx.URL(url)
    if address is None or target.host == str(address):
        return target, {}, {}
    host_header = target.host if target.port is None else f"{target.host}:{target.port}"
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return target.copy_with(host=str(address)), {"Host": host_header}, extensions


def _check_url_field(url: str) -> None:
    try:
        check_target(url, allow_private=get_settings().webhooks_allow_private,
                     unresolvable_ok=True)
    except TargetRefused as exc:
        raise Unprocessable(
            f"url {exc}.",
            type_=ProblemType.WEBHOOK_TARGET_REFUSED,
            errors=[{"loc": ["body", "url"], "msg": str(exc), "type": "target_refused"}],
        ) from None


# --- subscriptions (the API) ---------------------------------------------------------------------


def _public(subscription: WebhookSubscription) -> WebhookPublic:
    return WebhookPublic.model_validate(subscription)


class WebhookService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load(self, webhook_id: uuid.UUID, *, for_update: bool = False) -> WebhookSubscription:
        found = self.session.get(WebhookSubscription, webhook_id, with_for_update=for_update or None)
        if found is None:
            raise NotFound(f"No webhook {webhook_id}.")
        return found

    def create(self, body: WebhookCreate, principal: Principal) -> WebhookCreated:
        _check_url_field(body.url)
        if body.organisation_id is not None and self.session.get(
            Organisation, body.organisation_id
        ) is None:
            raise Unprocessable(
                f"Unknown organisation {body.organisation_id}.",
                errors=[{"loc": ["body", "organisation_id"], "msg": "unknown organisation",
                         "type": "unknown_reference"}],
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
        audit.record(self.session, principal, "create", "webhook", subscription.id,
                     [*body.model_fields_set, "secret"])
        return WebhookCreated.model_validate(
            {**_public(subscription).model_dump(), "secret": subscription.secret}
        )

    def page(self, params: PageParams) -> tuple[list[WebhookPublic], str | None]:
        stmt = keyset(
            select(WebhookSubscription),
            [WebhookSubscription.created_at, WebhookSubscription.id],
            params,
        )
        rows = self.session.scalars(stmt).all()
        items, cursor = page_slice(rows, params.limit, lambda s: [s.created_at, s.id])
        return [_public(s) for s in items], cursor

    def get(self, webhook_id: uuid.UUID) -> WebhookPublic:
        return _public(self.load(webhook_id))

    def update(
        self, webhook_id: uuid.UUID, body: WebhookUpdate, principal: Principal,
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
            _check_url_field(body.url or "")
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
        stmt = select(WebhookAttempt).where(WebhookAttempt.subscription_id == webhook_id)
        if event_id is not None:
            stmt = stmt.where(WebhookAttempt.event_id == event_id)
        stmt = keyset(stmt, [WebhookAttempt.started_at, WebhookAttempt.id], params,
                      descending=True)
        rows, cursor = page_slice(
            self.session.scalars(stmt).all(), params.limit, lambda a: [a.started_at, a.id]
        )
        return [
            WebhookAttemptPublic.model_validate(
                {**a.model_dump(), "webhook_id": a.message_id}
            )
            for a in rows
        ], cursor


# --- fan-out ----------------------------------------------------------------------------------


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def fan_out(session: Session, now: datetime, limit: int = 500) -> int:
    """Turn up to ``limit`` pending outbox events into deliveries; return how many events."""
    stmt = (
        select(OutboxEvent.id, OutboxEvent.event_type, OutboxEvent.organisation_id,
               OutboxEvent.created_at)
        .where(OutboxEvent.fanned_out_at.is_(None))  # type: ignore[union-attr]
        .order_by(OutboxEvent.created_at, OutboxEvent.id)
        .limit(limit)
    )
    if _is_pg(session):
        stmt = stmt.with_for_update(skip_locked=True)
    events = session.execute(stmt).all()
    if not events:
        return 0
    subscriptions = session.execute(
        select(WebhookSubscription.id, WebhookSubscription.events,
               WebhookSubscription.organisation_id, WebhookSubscription.created_at)
        .where(WebhookSubscription.active.is_(True))  # type: ignore[attr-defined]
    ).all()
    rows = [
        {
            "id": uuid.uuid4(),
            "subscription_id": sub.id,
            "event_id": event.id,
            "event_type": event.event_type,
            "message_id": message_id(event.id, sub.id),
            "status": DeliveryStatus.pending.value,
            "attempts": 0,
            "next_attempt_at": now,
            "locked_until": None,
            "lease_token": None,
            "created_at": now,
            "delivered_at": None,
        }
        for event in events
        for sub in subscriptions
        if event.event_type in sub.events
        and (sub.organisation_id is None or sub.organisation_id == event.organisation_id)
        and sub.created_at <= event.created_at  # a subscription gets what happens from then on
    ]
    if rows:
        insert = pg_insert if _is_pg(session) else sqlite_insert
        session.execute(
            insert(WebhookDelivery).on_conflict_do_nothing(
                index_elements=["subscription_id", "event_id"]
            ),
            rows,
        )
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_([e.id for e in events]))  # type: ignore[attr-defined]
        .values(fanned_out_at=now)
    )
    return len(events)


# --- claim, deliver, record -----------------------------------------------------------------------


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
        select(d.id)
        .join(s, s.id == d.subscription_id)
        .where(
            d.status == DeliveryStatus.pending,
            d.next_attempt_at <= now,
            or_(d.locked_until.is_(None), d.locked_until <= now),  # type: ignore[union-attr]
            s.active.is_(True),  # type: ignore[attr-defined]
        )
        .order_by(d.next_attempt_at, d.id)
        .limit(limit)
    )
    if _is_pg(session):
        stmt = stmt.with_for_update(of=d, skip_locked=True)  # type: ignore[arg-type]
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    token = uuid.uuid4()
    session.execute(
        update(d)
        .where(d.id.in_(ids))  # type: ignore[attr-defined]
        .values(locked_until=now + timedelta(seconds=lease), lease_token=token)
    )
    rows = session.execute(
        select(d.id, d.subscription_id, d.event_id, d.event_type, d.message_id, d.attempts,
               s.url, s.secret, OutboxEvent.payload, OutboxEvent.created_at)
        .join(s, s.id == d.subscription_id)
        .join(OutboxEvent, OutboxEvent.id == d.event_id)
        .where(d.id.in_(ids))  # type: ignore[attr-defined]
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
            url, content=claim.body.encode("utf-8"),
            headers={**signed_headers(claim, started), **host}, extensions=extensions,
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
    delay = min(settings.webhook_backoff_max_seconds,
                settings.webhook_backoff_seconds * 2 ** (attempt - 1))
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
        .where(d.id == claim.delivery_id, d.lease_token == claim.lease_token)
        .values(**values)
    )
    kept = result.rowcount == 1  # type: ignore[attr-defined]
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
        log.info("webhook delivery failed", extra={"delivery_id": str(claim.delivery_id),
                                                   "attempt": attempt, "error": outcome.error})
    return kept


def make_client(settings: Settings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        transport=transport,
    )


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
            with ThreadPoolExecutor(max_workers=min(settings.webhook_concurrency, len(claims)),
                                    thread_name_prefix="webhook") as pool:
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
        pending = select(WebhookDelivery.id).where(
            WebhookDelivery.event_id == OutboxEvent.id,
            WebhookDelivery.status == DeliveryStatus.pending.value,
        )
        stmt = (
            select(OutboxEvent.id)
            .where(
                OutboxEvent.fanned_out_at.is_not(None),  # type: ignore[union-attr]
                OutboxEvent.created_at < cutoff,
                ~pending.exists(),
            )
            .order_by(OutboxEvent.created_at)
            .limit(limit)
        )
        if _is_pg(session):
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(session.scalars(stmt))
        if ids:
            session.execute(
                delete(OutboxEvent).where(OutboxEvent.id.in_(ids))  # type: ignore[attr-defined]
            )
        return len(ids)

