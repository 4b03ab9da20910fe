"""Capacity and slots under concurrent requests: a live uvicorn server on 127.0.0.1, many client
threads, each request on its own HTTP connection and its own database session/connection.

Runs on SQLite (writers serialised by ``BEGIN IMMEDIATE``) and PostgreSQL (row locks and atomic
conditional UPDATEs across connections)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from app.core.db import session_scope
from app.models.assignment import Assignment
from app.models.incident import IncidentEvent
from app.models.manager import Manager
from tests.factories import make_dispatch_manager, make_key, make_triaged_incident, seed_reference

WORKERS = 50


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    from app.main import app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", limit_concurrency=200
    )
    live = uvicorn.Server(config)
    thread = threading.Thread(target=live.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not live.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    live.should_exit = True
    thread.join(10)


@pytest.fixture
def staff(fixed_clock: object) -> dict[str, str]:
    seed_reference()
    return make_key("coordinator")


def race(calls: list[Callable[[httpx.Client], httpx.Response]]) -> list[httpx.Response]:
    """Run every call at once, each in its own thread with its own connection."""
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | BaseException] = [RuntimeError("not run")] * len(calls)

    def run(index: int) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                barrier.wait()
                results[index] = calls[index](client)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    return results  # type: ignore[return-value]


def post(
    url: str, headers: dict[str, str], json: Any = None
) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post(url, headers=headers, json=json)


def codes(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


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
        slots = Counter(
            session.execute(
                select(Assignment.incident_id, Assignment.role).where(
                    Assignment.status.in_(("offered", "accepted"))
                )
            ).all()
        )
        assert all(n == 1 for n in slots.values())


def statuses(incident_id: uuid.UUID) -> list[tuple[uuid.UUID, str, str]]:
    with session_scope(write=False) as session:
        return [
            tuple(r)
            for r in session.execute(  # type: ignore[misc]
                select(Assignment.manager_id, Assignment.role, Assignment.status)
                .where(Assignment.incident_id == incident_id)
                .order_by(Assignment.created_at, Assignment.id)
            )
        ]


def event_count(incident_id: uuid.UUID, type_: str) -> int:
    with session_scope(write=False) as session:
        return len(
            session.scalars(
                select(IncidentEvent.id).where(
                    IncidentEvent.incident_id == incident_id, IncidentEvent.type == type_
                )
            ).all()
        )


class TestConcurrentOffers:
    def test_one_manager_capacity_one(self, server, staff) -> None:
        manager = make_dispatch_manager(max_open_assignments=1)
        incidents = [make_triaged_incident() for _ in range(WORKERS)]
        responses = race(
            [
                post(
                    f"{server}/api/v1/assignments",
                    staff,
                    {"incident_id": str(i), "manager_id": str(manager)},
                )
                for i in incidents
            ]
        )
        assert codes(responses) == {201: 1, 409: WORKERS - 1}, codes(responses)
        assert {r.json()["type"] for r in responses if r.status_code == 409} == {
            "/problems/at-capacity"
        }
        with session_scope(write=False) as session:
            assert session.get(Manager, manager).open_assignments == 1  # type: ignore[union-attr]
        assert_counters_consistent()

    def test_many_coordinators_race_for_one_co_slot(self, server, staff) -> None:
        incident = make_triaged_incident(escalation_level=4)
        lead = make_dispatch_manager()
        managers = [make_dispatch_manager() for _ in range(WORKERS)]
        with httpx.Client() as client:
            assert (
                client.post(
                    f"{server}/api/v1/assignments",
                    headers=staff,
                    json={"incident_id": str(incident), "manager_id": str(lead)},
                ).status_code
                == 201
            )
        responses = race(
            [
                post(
                    f"{server}/api/v1/assignments",
                    staff,
                    {"incident_id": str(incident), "manager_id": str(m), "role": "co"},
                )
                for m in managers
            ]
        )
        assert codes(responses) == {201: 1, 409: WORKERS - 1}, codes(responses)
        assert {r.json()["type"] for r in responses if r.status_code == 409} == {
            "/problems/slot-taken"
        }
        assert sorted(role for _, role, _ in statuses(incident)) == ["co", "lead"]
        assert_counters_consistent()

    def test_two_incidents_race_for_one_managers_co_slot(self, server, staff) -> None:
        manager = make_dispatch_manager(max_open_assignments=1)
        incidents = [make_triaged_incident(escalation_level=5) for _ in range(2)]
        with httpx.Client() as client:
            for incident in incidents:
                assert (
                    client.post(
                        f"{server}/api/v1/assignments",
                        headers=staff,
                        json={
                            "incident_id": str(incident),
                            "manager_id": str(make_dispatch_manager()),
                        },
                    ).status_code
                    == 201
                )
        responses = race(
            [
                post(
                    f"{server}/api/v1/assignments",
                    staff,
                    {
                        "incident_id": str(incidents[n % 2]),
                        "manager_id": str(manager),
                        "role": "co",
                    },
                )
                for n in range(WORKERS)
            ]
        )
        assert codes(responses) == {201: 1, 409: WORKERS - 1}, codes(responses)
        assert_counters_consistent()

    def test_auto_pick_never_overbooks(self, server, staff) -> None:
        managers = [make_dispatch_manager(max_open_assignments=1) for _ in range(5)]
        incidents = [make_triaged_incident() for _ in range(20)]
        responses = race(
            [
                post(f"{server}/api/v1/assignments", staff, {"incident_id": str(i)})
                for i in incidents
            ]
        )
        assert codes(responses) == {201: 5, 409: 15}, codes(responses)
        assert {r.json()["manager_id"] for r in responses if r.status_code == 201} == {
            str(m) for m in managers
        }
        assert_counters_consistent()


class TestConcurrentAnswers:
    def _offer(
        self, server: str, staff: dict[str, str], incident: uuid.UUID, manager: uuid.UUID
    ) -> str:
        with httpx.Client() as client:
            response = client.post(
                f"{server}/api/v1/assignments",
                headers=staff,
                json={"incident_id": str(incident), "manager_id": str(manager)},
            )
        assert response.status_code == 201
        return str(response.json()["id"])

    def test_accept_against_decline(self, server, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        make_dispatch_manager(home_district="gamma", districts=["alpha"])  # the next candidate
        offer = self._offer(server, staff, incident, manager)
        own = make_key("manager", manager_id=manager)
        calls = [
            post(f"{server}/api/v1/assignments/{offer}/accept", own)
            if n % 2 == 0
            else post(f"{server}/api/v1/assignments/{offer}/decline", own, {"reason": "no"})
            for n in range(WORKERS)
        ]
        responses = race(calls)
        accepts = codes(responses[0::2])
        declines = codes(responses[1::2])
        half = WORKERS // 2
        assert (accepts, declines) in (({200: half}, {409: half}), ({409: half}, {200: half}))
        final = statuses(incident)
        if accepts == {200: half}:
            assert final == [(manager, "lead", "accepted")]
        else:
            assert sorted(s for _, _, s in final) == ["declined", "offered"]  # re-offered once
        assert (
            event_count(incident, "assignment_accepted")
            + event_count(incident, "assignment_declined")
            == 1
        )
        assert_counters_consistent()

    def test_accept_against_withdraw(self, server, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        spare = make_dispatch_manager(home_district="gamma", districts=["alpha"])
        offer = self._offer(server, staff, incident, manager)
        own = make_key("manager", manager_id=manager)
        calls = [
            post(f"{server}/api/v1/assignments/{offer}/accept", own)
            if n % 2 == 0
            else post(f"{server}/api/v1/assignments/{offer}/withdraw", staff, {"reason": "x"})
            for n in range(WORKERS)
        ]
        responses = race(calls)
        assert set(codes(responses[1::2])) == {200}  # withdraw wins, whether before or after
        accepted = codes(responses[0::2]).get(200, 0)
        assert set(codes(responses[0::2])) <= {200, 409}
        assert event_count(incident, "assignment_withdrawn") == 1
        assert event_count(incident, "assignment_accepted") == (1 if accepted else 0)
        # exactly one re-offer of the freed slot, to the spare manager
        assert sorted(statuses(incident)) == sorted(
            [(manager, "lead", "withdrawn"), (spare, "lead", "offered")]
        )
        assert_counters_consistent()

    def test_concurrent_withdraws_of_an_accepted_assignment(self, server, staff) -> None:
        incident = make_triaged_incident()
        manager = make_dispatch_manager()
        spare = make_dispatch_manager(home_district="gamma", districts=["alpha"])
        offer = self._offer(server, staff, incident, manager)
        with httpx.Client() as client:
            assert (
                client.post(
                    f"{server}/api/v1/assignments/{offer}/accept", headers=staff
                ).status_code
                == 200
            )
        responses = race(
            [
                post(f"{server}/api/v1/assignments/{offer}/withdraw", staff, {})
                for _ in range(WORKERS)
            ]
        )
        assert codes(responses) == {200: WORKERS}
        assert len({r.json()["version"] for r in responses}) == 1  # the same result every time
        assert sorted(statuses(incident)) == sorted(
            [(manager, "lead", "withdrawn"), (spare, "lead", "offered")]
        )
        assert event_count(incident, "assignment_withdrawn") == 1
        assert_counters_consistent()
