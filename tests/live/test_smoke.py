"""The live-server fixture itself: a real process answers, a created incident is readable at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.factories import incident_body, seed_reference
from tests.live.conftest import LiveServer

CLIENTS, TRIES = 8, 25


@pytest.mark.parametrize("workers", [1, 3])
def test_created_incident_is_readable_at_once(
    live_server: LiveServer, admin_key: dict[str, str], is_postgres: bool, workers: int
) -> None:
    if workers > 1 and not is_postgres:
        workers = 1  # several processes on one SQLite file: covered, but proven on PostgreSQL
    seed_reference()
    url = live_server(workers=workers)

    def client_run(_: int) -> list[str]:
        misses = []
        with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
            for _ in range(TRIES):
                created = client.post("/api/v1/incidents", json=incident_body())
                assert created.status_code == 201, created.text
                read = client.get(f"/api/v1/incidents/{created.json()['id']}")
                if read.status_code != 200:
                    misses.append(f"{read.status_code} {created.json()['reference']}")
        return misses

    with ThreadPoolExecutor(CLIENTS) as pool:
        misses = [m for found in pool.map(client_run, range(CLIENTS)) for m in found]
    assert misses == [], f"{len(misses)} of {CLIENTS * TRIES} reads after 201 missed: {misses[:5]}"
