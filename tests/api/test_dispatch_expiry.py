"""Offer expiry (app.services.dispatch.expiry) and its place in the worker."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.core import clock as clock_module
from app.core.db import session_scope
from app.models.assignment import Assignment
from app.models.incident import Incident, IncidentEvent
from app.models.manager import Manager
from app.models.outbox import OutboxEvent
from app.services import worker
from app.services.dispatch.expiry import expire_due_offers
from tests.factories import make_dispatch_manager, make_key, make_triaged_incident, seed_reference

NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=48, minutes=1)


@pytest.fixture
def staff(fixed_clock: object) -> dict[str, str]:
    seed_reference()
    return make_key("coordinator")


def advance(to: datetime) -> None:
    clock_module.set_clock(clock_module.Clock(tz=clock_module.get_clock().tz, fixed_now=to))


def rows(incident_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    with session_scope(write=False) as session:
        return [
            (m, s)
            for m, s in session.execute(
                select(Assignment.manager_id, Assignment.status)
                .where(Assignment.incident_id == incident_id)
                .order_by(Assignment.created_at, Assignment.id)
            )
        ]


def assert_counters_consistent() -> None:
    with session_scope(write=False) as session:
        counted = Counter(
            session.scalars(
                select(Assignment.manager_id).where(Assignment.status.in_(("offered", "accepted")))
            )
        )
        for manager in session.scalars(select(Manager)):
            assert manager.open_assignments == counted.get(manager.id, 0)
            assert manager.open_assignments <= manager.max_open_assignments


class TestExpiry:
    def test_expires_and_offers_next(self, client, staff) -> None:
        incident = make_triaged_incident()
        first = make_dispatch_manager()
        second = make_dispatch_manager(home_district="gamma", districts=["alpha"])
        offered = client.post(
            "/api/v1/assignments",
            headers=staff,
            json={"incident_id": str(incident), "manager_id": str(first)},
        ).json()
        advance(NOW + timedelta(hours=47))
        assert expire_due_offers() == 0  # not due yet
        advance(LATER)
        assert expire_due_offers() == 1
        assert rows(incident) == [(first, "expired"), (second, "offered")]
        with session_scope(write=False) as session:
            types = list(
                session.scalars(
                    select(IncidentEvent.type).where(IncidentEvent.incident_id == incident)
                )
            )
            outbox = list(session.scalars(select(OutboxEvent.event_type)))
            expired = session.get(Assignment, uuid.UUID(offered["id"]))
            assert expired is not None and expired.ended_at == LATER
        assert types.count("assignment_expired") == 1
        assert "assignment.expired" in outbox
        response = client.post(f"/api/v1/assignments/{offered['id']}/accept", headers=staff)
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/offer-not-open"
        assert expire_due_offers() == 0  # the new offer expires two days later
        assert_counters_consistent()

    def test_nobody_left(self, client, staff) -> None:
        incident = make_triaged_incident(escalation_level=4)
        lead, co = make_dispatch_manager(), make_dispatch_manager()
        for manager in (lead, co):
            client.post(
                "/api/v1/assignments",
                headers=staff,
                json={"incident_id": str(incident), "manager_id": str(manager)},
            )
        advance(LATER)
        assert expire_due_offers() == 2
        assert sorted(s for _, s in rows(incident)) == ["expired", "expired"]
        with session_scope(write=False) as session:
            assert session.get(Incident, incident).status == "triaged"  # type: ignore[union-attr]
        assert_counters_consistent()

    def test_registered_in_the_worker(self, client, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        client.post(
            "/api/v1/assignments",
            headers=staff,
            json={"incident_id": str(incident), "manager_id": str(manager)},
        )
        advance(LATER)
        job = next(j for j in worker.JOBS if j.name == "offers.expire")
        assert worker.run_once([job]) == {"offers.expire": 1}
        assert rows(incident) == [(manager, "expired")]

    def test_two_workers_in_parallel(self, client, staff) -> None:
        incidents = [make_triaged_incident() for _ in range(8)]
        firsts = [make_dispatch_manager(max_open_assignments=1) for _ in incidents]
        for _ in incidents:  # the spare managers the freed slots go to
            make_dispatch_manager(max_open_assignments=1)
        for incident, manager in zip(incidents, firsts, strict=True):
            response = client.post(
                "/api/v1/assignments",
                headers=staff,
                json={"incident_id": str(incident), "manager_id": str(manager)},
            )
            assert response.status_code == 201
        advance(LATER)
        barrier = threading.Barrier(2)
        results: list[int] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                barrier.wait()
                results.append(expire_due_offers(LATER))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert sum(results) == len(incidents)
        for incident in incidents:
            statuses = [s for _, s in rows(incident)]
            assert statuses.count("expired") == 1
            assert statuses.count("offered") == 1  # the next candidate, exactly once
            with session_scope(write=False) as session:
                events = list(
                    session.scalars(
                        select(IncidentEvent.type).where(IncidentEvent.incident_id == incident)
                    )
                )
            assert events.count("assignment_expired") == 1
        offered_to = Counter(m for i in incidents for m, s in rows(i) if s == "offered")
        assert all(count == 1 for count in offered_to.values())
        assert_counters_consistent()
