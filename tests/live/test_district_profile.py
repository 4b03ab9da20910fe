"""District profiles over real HTTP, many at once, on one uvicorn worker and (PostgreSQL) three.

A profile reads its statements in one round trip (on SQLite one after the other on the event
loop's read-only connection; the roster only when its version changed) and its month windows in
one more, every window given as one JSON parameter. Seen from a socket:
every answer, whichever worker gave it, is the unit-of-work path's answer byte for
byte (three years of months, an incident in each month's window), and an incident created over
HTTP is in the very next profile read, from any worker — no reader connection answers from an
older snapshot.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.api.test_stats import generate_roster
from tests.factories import incident_body, make_incident, seed_reference
from tests.live.conftest import WORKER_COUNTS, LiveServer

API = "/api/v1"
BERLIN = ZoneInfo("Europe/Berlin")  # KOKOMA_TIMEZONE
PROFILE = f"{API}/districts/beta/profile"
MONTHS = f"{API}/stats/incidents?group_by=month&district=beta"
THREADS = 6
READS = 8  # per client thread


def _unit_of_work_answers(headers: dict[str, str]) -> dict[str, bytes]:
    """The answers of an app run without its lifespan: the unit-of-work path, in-process."""
    client = TestClient(create_app())  # not entered: no lifespan, no loop-side readers
    answers = {}
    for path in (PROFILE, MONTHS):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        answers[path] = response.content
    return answers


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_profiles_at_once_answer_as_the_unit_of_work_path(
    live_server: LiveServer, admin_key: dict[str, str], workers: int
) -> None:
    seed_reference()
    rng = random.Random(workers)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    times = [start + timedelta(days=n * 12 + rng.uniform(0, 2)) for n in range(90)]
    # half an hour into each Berlin month: in the UTC month before (the month windows' rows)
    times += [
        datetime(2024 + m // 12, m % 12 + 1, 1, 0, 30, tzinfo=BERLIN).astimezone(UTC)
        for m in range(36)
    ]
    for at in times:
        make_incident(district="beta", reported_at=at.isoformat())
    # three years of months, each with a row in its window
    assert len({at.strftime("%Y-%m") for at in times}) > 36
    generate_roster(rng, 20)
    expected = _unit_of_work_answers(admin_key)
    url = live_server(workers=workers)

    def reader(n: int) -> list[str]:
        problems = []
        with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
            for i in range(READS):
                path = PROFILE if (n + i) % 3 else MONTHS
                response = client.get(path)
                if (response.status_code, response.content) != (200, expected[path]):
                    problems.append(f"{path}: {response.status_code} {response.text[:200]}")
        return problems

    with ThreadPoolExecutor(THREADS) as pool:
        problems = [p for found in pool.map(reader, range(THREADS)) for p in found]
    assert problems == []

    # a write over HTTP, then profiles from every worker: each already counts it
    with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
        total = client.get(PROFILE).json()["incidents"]["total"]
        created = client.post(f"{API}/incidents", json=incident_body(district="beta"))
        assert created.status_code == 201, created.text
        totals = {client.get(PROFILE).json()["incidents"]["total"] for _ in range(4 * workers)}
    assert totals == {total + 1}

    # every worker keeps beta's roster now; a manager added over HTTP is in the very next
    # profile from each of them (the roster's version changed: app/models/roster.py)
    def youth_work(body: dict[str, Any]) -> int:
        coverage = {c["competence"]: c["count"] for c in body["coverage"]}
        return int(coverage.get("youth_work", 0))

    with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
        before = {youth_work(client.get(PROFILE).json()) for _ in range(4 * workers)}
        assert len(before) == 1
        added = client.post(
            f"{API}/managers",
            json={
                "display_name": "Live Roster",
                "email": "live-roster@example.org",
                "status": "active",
                "home_district": "beta",
                "competences": [{"code": "youth_work", "certified_on": "2020-01-01"}],
            },
        )
        assert added.status_code == 201, added.text
        after = {youth_work(client.get(PROFILE).json()) for _ in range(4 * workers)}
    assert after == {before.pop() + 1}
