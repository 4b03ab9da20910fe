"""Offer expiry: offers not answered by ``expires_at`` expire and the next candidate is offered.

Safe with several workers (and with the API running): work is claimed per *incident*, the row
every change to an incident's assignments locks first. Each incident is handled in its own short
transaction that takes the incident row with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL —
an incident another worker (or an API request) holds is skipped and picked up on a later round —
and then re-reads the incident's due offers under that lock, so an offer expired by a worker that
committed meanwhile is not seen again. Locking the incident (not the assignment) first keeps the
lock order of the API (incident, then manager rows), so workers and requests cannot deadlock. On
SQLite write transactions are serialised (``BEGIN IMMEDIATE``), which gives the same guarantee.
"""

from __future__ import annotations

import logging
from datetime import datetime

from app.core.clock import get_clock
from app.core.db import session_scope
from app.repositories.dispatch import DispatchRepository
from app.services.dispatch.service import DispatchService

log = logging.getLogger("kokoma.dispatch.expiry")

BATCH_SIZE = 200


def expire_due_offers(now: datetime | None = None, *, batch_size: int = BATCH_SIZE) -> int:
    """Expire every offer due at ``now`` and re-offer its slot; the number of offers expired."""
    now = now or get_clock().now()
    expired = 0
    skipped: set[object] = set()
    while True:
        with session_scope(write=False) as session:
            due = [
                i
                for i in DispatchRepository(session).due_offer_incidents(
                    now, batch_size + len(skipped)
                )
                if i not in skipped
            ]
        if not due:
            return expired
        for incident_id in due:
            with session_scope() as session:
                repo = DispatchRepository(session)
                incident = repo.lock_incident_skip_locked(incident_id)
                if incident is None:  # another worker or a request holds it: next round
                    skipped.add(incident_id)
                    continue
                count = DispatchService(session).expire_offers_of(incident, now)
                if count == 0:
                    skipped.add(incident_id)
                expired += count
        if len(due) < batch_size:
            return expired


def run_expiry_once() -> int:
    """One expiry round at the clock's *now* (for the worker loop)."""
    count = expire_due_offers()
    if count:
        log.info("expired %d offer(s)", count)
    return count
