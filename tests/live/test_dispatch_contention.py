"""Withdrawals that re-offer freed slots racing offers on the same managers, on a live server.

A withdrawal gives its manager's slot back and offers the freed slot to the next candidate, so it
touches two manager rows; an offer takes one. Run at once on overlapping managers, these would
deadlock on PostgreSQL if the manager rows were taken in whatever order the rules reach them;
:mod:`app.services.dispatch.slots` takes them in id order. A deadlock that still happens is rolled
back and run again by :class:`app.api.routing.UnitOfWorkRoute` (logged, invisible to clients);
this test counts those runs from the server log and prints them.

PostgreSQL: three worker processes. SQLite: one (its writers are serialised; the test still proves
no 5xx and capacity held under the same load).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models.assignment import Assignment
from app.models.manager import Manager
from tests.factories import make_dispatch_manager, make_key, make_triaged_incident, seed_reference
from tests.live.conftest import ServerProcess

PER_KIND = 200  # concurrent withdrawals, and as many concurrent offers
MANAGERS = 12
CAPACITY = 30  # 12 × 30 = 360 slots for up to 400 open assignments: some offers find none


@pytest.fixture
def server(migrated_database: str, is_postgres: bool) -> Iterator[ServerProcess]:
    process = ServerProcess(
        migrated_database, workers=3 if is_postgres else 1, env={"PYTHONUNBUFFERED": "1"}
    )
    try:
        yield process
    finally:
        process.stop()


def retries_logged(server: ServerProcess) -> Counter[str]:
    """Runs of a request again after a transient failure, per SQLSTATE, from the server log."""
    seen: Counter[str] = Counter()
    for line in Path(server.log.name).read_text(errors="replace").splitlines():
        if "transient database failure" not in line:
            continue
        try:
            seen[str(json.loads(line).get("sqlstate"))] += 1
        except ValueError:
            seen["unparsed"] += 1
    return seen


def race(calls: list[Callable[[httpx.Client], httpx.Response]]) -> list[httpx.Response]:
    """Every call at once, each in its own thread on its own connection."""
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | BaseException] = [RuntimeError("not run")] * len(calls)

    def run(index: int) -> None:
        try:
            with httpx.Client(timeout=120) as client:
                barrier.wait()
                results[index] = calls[index](client)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], failures[:3]
    return results  # type: ignore[return-value]


def test_withdrawals_and_offers_on_overlapping_managers(
    server: ServerProcess, is_postgres: bool
) -> None:
    seed_reference()
    staff = make_key("coordinator")
    managers = [make_dispatch_manager(max_open_assignments=CAPACITY) for _ in range(MANAGERS)]
    dispatched = [make_triaged_incident() for _ in range(PER_KIND)]
    with httpx.Client(base_url=server.url, headers=staff, timeout=60) as client:
        batch = client.post("/api/v1/dispatch/auto", json={})
        assert batch.status_code == 200, batch.text
    offers = [a["id"] for a in batch.json()["assignments"]]
    assert len(offers) == PER_KIND  # every incident got its lead, spread over all managers
    waiting = [make_triaged_incident() for _ in range(PER_KIND)]

    def withdraw(assignment_id: str) -> Callable[[httpx.Client], httpx.Response]:
        return lambda client: client.post(
            f"{server.url}/api/v1/assignments/{assignment_id}/withdraw",
            headers=staff,
            json={"reason": "reshuffle"},
        )

    def offer(incident_id: uuid.UUID) -> Callable[[httpx.Client], httpx.Response]:
        return lambda client: client.post(
            f"{server.url}/api/v1/assignments",
            headers=staff,
            json={"incident_id": str(incident_id)},
        )

    calls: list[Callable[[httpx.Client], httpx.Response]] = []
    for assignment_id, incident_id in zip(offers, waiting, strict=True):
        calls += [withdraw(assignment_id), offer(incident_id)]
    responses = race(calls)

    withdrawn = Counter(r.status_code for r in responses[0::2])
    offered = Counter(r.status_code for r in responses[1::2])
    retries = retries_logged(server)
    print(
        f"\nwithdraw {dict(withdrawn)}, offer {dict(offered)}, "
        f"runs again after a transient failure: {dict(retries)}"
    )
    assert all(r.status_code < 500 for r in responses), (withdrawn, offered, retries)
    assert withdrawn == {200: PER_KIND}
    assert set(offered) <= {201, 409}
    assert {r.json()["type"] for r in responses[1::2] if r.status_code == 409} <= {
        "/problems/no-candidate"
    }

    with session_scope(write=False) as session:
        open_rows = Counter(
            session.scalars(
                select(Assignment.manager_id).where(Assignment.status.in_(("offered", "accepted")))
            )
        )
        counts = {
            m.id: (m.open_assignments, m.max_open_assignments)
            for m in session.scalars(select(Manager).where(Manager.id.in_(managers)))
        }
        slots = Counter(
            session.execute(
                select(Assignment.incident_id, Assignment.role).where(
                    Assignment.status.in_(("offered", "accepted"))
                )
            ).all()
        )
        withdrawn_rows = session.scalar(
            select(func.count()).select_from(Assignment).where(Assignment.status == "withdrawn")
        )
    # capacity held: every counter equals its open rows and stays within the maximum
    assert {m: open_ for m, (open_, _) in counts.items()} == {
        m: open_rows.get(m, 0) for m in managers
    }
    assert all(open_ <= maximum for open_, maximum in counts.values())
    assert all(n == 1 for n in slots.values())  # never two open leads on one incident
    assert withdrawn_rows == PER_KIND
    # the open assignments are the new offers that succeeded plus the freed slots re-offered
    reoffered = sum(1 for incident, _role in slots if incident in set(dispatched))
    assert sum(open_rows.values()) == offered[201] + reoffered
