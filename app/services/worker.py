"""``kokoma worker``: a loop over periodic jobs (webhook fan-out and delivery, e-mail, …).

A job is one function doing one round of work in its own transaction(s) and returning how many
items it handled. A job that handled something runs again at once (to drain a backlog); one that
found nothing waits its interval. Every job is safe with several workers running at the same time
(row locks with SKIP LOCKED on PostgreSQL, leases, idempotent writes) — run as many as needed.

To add a job (e.g. offer expiry), write ``def expire_offers() -> int`` and append
``PeriodicJob("offers.expire", expire_offers, interval_seconds=…)`` to :data:`JOBS`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.services.dispatch.expiry import run_expiry_once
from app.services.notifications.sending import deliver_mail
from app.services.notifications.timers import (
    collect_digests,
    queue_reminders,
    queue_triage_overdue,
)
from app.services.privacy.retention import run_retention_once
from app.services.stats import compact_tally
from app.services.webhooks import deliver_due, fan_out_pending, prune_outbox

log = logging.getLogger("kokoma.worker")


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    run: Callable[[], int]
    interval_seconds: float = 1.0


#: The jobs ``kokoma worker`` runs, in this order each round.
JOBS: list[PeriodicJob] = [
    PeriodicJob("webhooks.fan_out", lambda: fan_out_pending(), interval_seconds=1.0),
    PeriodicJob("webhooks.deliver", lambda: deliver_due(), interval_seconds=1.0),
    PeriodicJob("offers.expire", lambda: run_expiry_once(), interval_seconds=15.0),
    PeriodicJob("mail.reminders", lambda: queue_reminders(), interval_seconds=60.0),
    PeriodicJob("mail.triage", lambda: queue_triage_overdue(), interval_seconds=60.0),
    PeriodicJob("mail.digest", lambda: collect_digests(), interval_seconds=30.0),
    PeriodicJob("mail.send", lambda: deliver_mail(), interval_seconds=1.0),
    PeriodicJob("privacy.retention", lambda: run_retention_once(), interval_seconds=3600.0),
    PeriodicJob("outbox.prune", lambda: prune_outbox(), interval_seconds=3600.0),
    PeriodicJob("stats.compact_tally", lambda: compact_tally(), interval_seconds=60.0),
]


def run_job(job: PeriodicJob) -> int:
    """Run one round of ``job``; an exception is logged and counts as no work (the loop goes on)."""
    try:
        return job.run()
    except Exception:
        log.exception("worker job failed", extra={"job": job.name})
        return 0


def run_once(jobs: Sequence[PeriodicJob] | None = None) -> dict[str, int]:
    """Every job once, in order (``kokoma worker --once``, tests)."""
    return {job.name: run_job(job) for job in (JOBS if jobs is None else jobs)}


def run_forever(
    jobs: Sequence[PeriodicJob] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the jobs until ``stop`` is set (SIGTERM/SIGINT in the CLI); finishes the current round."""
    jobs = list(JOBS if jobs is None else jobs)
    stop = stop or threading.Event()
    due = dict.fromkeys((job.name for job in jobs), 0.0)
    log.info("worker started", extra={"jobs": [job.name for job in jobs]})
    while not stop.is_set():
        for job in jobs:
            if stop.is_set():
                break
            if due[job.name] <= time.monotonic():
                handled = run_job(job)
                due[job.name] = time.monotonic() + (0.0 if handled else job.interval_seconds)
        wait = min(due.values()) - time.monotonic() if due else 1.0
        if wait > 0:
            stop.wait(wait)
    log.info("worker stopped")
