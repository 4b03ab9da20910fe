"""Prometheus metrics, served at ``/metrics`` (when ``KOKOMA_METRICS_ENABLED``).

- ``kokoma_http_requests_total{method, route, status}`` and
  ``kokoma_http_request_duration_seconds{method, route}`` — by route *template*
  (``/api/v1/incidents/{incident_id}``), never the raw path, so the label set stays small;
  requests that match no route are counted under ``route="<unmatched>"``.
- ``kokoma_dispatch_offers_total{outcome}`` — dispatch increments :data:`OFFERS` with
  ``offered``, ``accepted``, ``declined``, ``expired``, ``withdrawn``, ``completed``.
- ``kokoma_worker_queue_depth{queue}`` — measured at scrape time: ``outbox`` (events not yet fanned
  out), ``offers_due`` (offers past ``expires_at``), ``webhook_deliveries`` (deliveries due, when
  webhooks are installed), ``mail`` (e-mail notifications due); plus ``kokoma_database_up`` (0
  when the query failed).

Metrics are per process: run one scrape target per uvicorn worker (or one worker per container).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("kokoma.metrics")

REQUESTS = Counter(
    "kokoma_http_requests",
    "HTTP requests by route template, method and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "kokoma_http_request_duration_seconds",
    "HTTP request latency by route template and method.",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
#: Dispatch offers by outcome: ``OFFERS.labels(outcome="accepted").inc()``.
OFFERS = Counter(
    "kokoma_dispatch_offers",
    "Dispatch offers by outcome (offered, accepted, declined, expired, withdrawn, completed).",
    ["outcome"],
)

OFFER_OUTCOMES = ("offered", "accepted", "declined", "expired", "withdrawn", "completed")
for _outcome in OFFER_OUTCOMES:  # export zeros, so rates work from the first scrape
    OFFERS.labels(outcome=_outcome)


def record_offer(outcome: str) -> None:
    """Count one offer outcome (never raises: metrics must not break dispatch)."""
    try:
        OFFERS.labels(outcome=str(outcome)).inc()
    except Exception:  # pragma: no cover - defensive
        log.debug("could not count offer outcome", exc_info=True)


class QueueDepthCollector(Collector):
    """Counts the worker's due work at scrape time (one small indexed query per queue)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "kokoma_worker_queue_depth", "Work due for `kokoma worker`, by queue.", labels=["queue"]
        )
        up = GaugeMetricFamily("kokoma_database_up", "1 when the database answered the scrape.")
        try:
            for queue, count in queue_depths().items():
                depth.add_metric([queue], count)
            up.add_metric([], 1)
        except Exception as exc:
            log.warning("queue depth unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
        yield depth
        yield up

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def queue_depths() -> dict[str, int]:
    from sqlalchemy import func, select
    from sqlmodel import col

    from app.core.clock import get_clock
    from app.core.db import get_engine
    from app.models.assignment import Assignment, AssignmentStatus
    from app.models.base import metadata
    from app.models.outbox import OutboxEvent

    now = get_clock().now()
    result: dict[str, int] = {}
    with get_engine().connect() as conn:
        result["outbox"] = (
            conn.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(col(OutboxEvent.fanned_out_at).is_(None))
            )
            or 0
        )
        result["offers_due"] = (
            conn.scalar(
                select(func.count())
                .select_from(Assignment)
                .where(
                    col(Assignment.status) == AssignmentStatus.offered,
                    col(Assignment.expires_at) <= now,
                )
            )
            or 0
        )
        mail = metadata.tables.get("notification")
        if mail is not None:
            result["mail"] = (
                conn.scalar(
                    select(func.count())
                    .select_from(mail)
                    .where(
                        mail.c.status == "pending",
                        mail.c.next_attempt_at <= now,
                        mail.c.digest_id.is_(None),
                    )
                )
                or 0
            )
        deliveries = metadata.tables.get("webhook_delivery")
        if deliveries is not None and "status" in deliveries.c:
            result["webhook_deliveries"] = (
                conn.scalar(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.status == "pending")
                )
                or 0
            )
    return result


_collector: QueueDepthCollector | None = None


def install_queue_depth_collector() -> None:
    """Register the scrape-time collector once per process."""
    global _collector
    if _collector is None:
        _collector = QueueDepthCollector()
        REGISTRY.register(_collector)


# --- offer outcomes, counted when the transaction that made them commits -----------------------
_PENDING_OFFERS = "kokoma_pending_offer_outcomes"


def count_offer(session: object, outcome: str) -> None:
    """Count an offer outcome once ``session`` commits (a rolled-back outcome never counts)."""
    info = getattr(session, "info", None)
    if info is None:
        record_offer(outcome)
        return
    info.setdefault(_PENDING_OFFERS, []).append(str(outcome))


def _install_session_hooks() -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    def committed(session: Session) -> None:
        for outcome in session.info.pop(_PENDING_OFFERS, ()):
            record_offer(outcome)

    def rolled_back(session: Session, _previous: object) -> None:
        session.info.pop(_PENDING_OFFERS, None)

    if not event.contains(Session, "after_commit", committed):
        event.listen(Session, "after_commit", committed)
        event.listen(Session, "after_soft_rollback", rolled_back)


_install_session_hooks()
