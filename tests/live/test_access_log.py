"""Reporter reads leave their access entries before the answer, seen from a socket.

Staff reads that return reporter data — an incident by id, a filtered list page — are answered
by the event-loop read path: its route called directly, its entries handed to the group-commit
writer (one statement per batch on PostgreSQL, an ``executemany`` on SQLite). Many such reads at
once, over real HTTP and on one and three uvicorn workers: the moment a client holds an answer,
the database already holds one entry per incident whose reporter that answer shows, naming the
caller's key — none missing, none for an incident shown without a reporter.
"""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from app.core.db import session_scope
from app.models.system import AuditEvent
from tests.factories import make_incident, make_organisation, seed_reference
from tests.live.conftest import WORKER_COUNTS, LiveServer

API = "/api/v1"
READS = 12  # per client thread
THREADS = 6


def _entries(incident_ids: set[str], subject: str) -> Counter[str]:
    """Access entries of ``subject`` per incident (committed ones: another connection)."""
    with session_scope(write=False) as session:
        rows = session.exec(
            select(AuditEvent.resource_id).where(
                AuditEvent.kind == "access",
                AuditEvent.resource == "incident",
                col(AuditEvent.resource_id).in_(incident_ids),
                AuditEvent.principal_subject == subject,
            )
        ).all()
    return Counter(rows)


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_reporter_reads_are_logged_before_the_answer(
    live_server: LiveServer, admin_key: dict[str, str], workers: int
) -> None:
    seed_reference()
    ours = str(make_organisation(f"Partner {uuid.uuid4().hex[:6]}"))  # the list's filter
    with_reporter = [
        str(
            make_incident(
                organisation_id=ours, reporter={"name": f"R {n}", "contact": "r@x.org"}
            ).id
        )
        for n in range(4)
    ]
    without = str(make_incident(organisation_id=ours, reporter=None).id)
    url = live_server(workers=workers)
    subject = httpx.get(f"{url}{API}/me", headers=admin_key, timeout=30).json()["subject"]

    def reader(n: int) -> list[str]:
        """Each answer's reporter-bearing incidents, checked against the log on arrival."""
        problems: list[str] = []
        with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
            for i in range(READS):
                if (n + i) % 2:
                    target = with_reporter[(n + i) % len(with_reporter)]
                    response = client.get(f"{API}/incidents/{target}")
                    items: list[dict[str, Any]] = [response.json()]
                else:
                    response = client.get(
                        f"{API}/incidents",
                        params={"organisation_id": ours, "status": ["reported", "triaged"]},
                    )
                    items = response.json()["items"]
                if response.status_code != 200:
                    problems.append(f"{response.status_code}: {response.text}")
                    continue
                shown = {item["id"] for item in items if item["reporter"] is not None}
                logged = _entries(shown, subject)
                problems += [f"no entry for {i} on arrival" for i in shown if not logged[i]]
        return problems

    with ThreadPoolExecutor(THREADS) as pool:
        problems = [p for found in pool.map(reader, range(THREADS)) for p in found]
    assert problems == []

    # every answer showed the four reporters once per read of them: the entries add up
    reads_of = Counter[str]()
    for n in range(THREADS):
        for i in range(READS):
            if (n + i) % 2:
                reads_of[with_reporter[(n + i) % len(with_reporter)]] += 1
            else:
                reads_of.update(with_reporter)
    assert _entries(set(with_reporter), subject) == reads_of
    assert _entries({without}, subject) == Counter()
