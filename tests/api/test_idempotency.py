"""``Idempotency-Key`` on POST: a repeat returns the first response and creates nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models.incident import Incident, IncidentNote
from app.models.system import ApiKey, IdempotencyRecord
from tests.factories import incident_body, make_incident, make_key, seed_reference, table_counts

URL = "/api/v1/incidents"


def count(model: Any) -> int:
    with session_scope(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def admin() -> dict[str, str]:
    seed_reference()
    return make_key("admin")


class TestIdempotencyKey:
    def test_repeat_returns_the_first_response_and_creates_nothing(self, client, admin) -> None:
        headers = {**admin, "Idempotency-Key": "create-1"}
        first = client.post(URL, json=incident_body(), headers=headers)
        assert first.status_code == 201, first.text
        after_first = table_counts()
        second = client.post(URL, json=incident_body(), headers=headers)
        assert second.status_code == 201
        assert second.json() == first.json()
        assert second.json()["id"] == first.json()["id"]
        assert second.headers["location"] == first.headers["location"]
        assert second.headers["etag"] == first.headers["etag"]
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert table_counts() == after_first
        assert count(Incident) == 1

    def test_same_key_different_body(self, client, admin) -> None:
        headers = {**admin, "Idempotency-Key": "create-2"}
        assert client.post(URL, json=incident_body(), headers=headers).status_code == 201
        before = table_counts()
        response = client.post(URL, json=incident_body(title="Something else"), headers=headers)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/idempotency-key-reused"
        assert table_counts() == before

    def test_same_key_other_endpoint(self, client, admin) -> None:
        incident = make_incident()
        headers = {**admin, "Idempotency-Key": "k"}
        assert client.post(URL, json=incident_body(), headers=headers).status_code == 201
        response = client.post(f"{URL}/{incident.id}/notes", json={"text": "x"}, headers=headers)
        assert response.status_code == 422
        assert count(IncidentNote) == 0

    def test_keys_are_scoped_to_the_api_key(self, client, admin) -> None:
        other = make_key("coordinator")
        first = client.post(URL, json=incident_body(), headers={**admin, "Idempotency-Key": "same"})
        second = client.post(
            URL,
            json=incident_body(title="Other caller"),
            headers={**other, "Idempotency-Key": "same"},
        )
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["id"] != second.json()["id"]
        assert count(Incident) == 2
        assert count(IdempotencyRecord) == 2

    def test_without_key_every_post_creates(self, client, admin) -> None:
        for _ in range(2):
            assert client.post(URL, json=incident_body(), headers=admin).status_code == 201
        assert count(Incident) == 2
        assert count(IdempotencyRecord) == 0

    def test_refused_request_is_replayed_too(self, client, admin) -> None:
        headers = {**admin, "Idempotency-Key": "bad-1"}
        body = incident_body(district="atlantis")
        first = client.post(URL, json=body, headers=headers)
        second = client.post(URL, json=body, headers=headers)
        assert first.status_code == second.status_code == 422
        assert second.json() == first.json()
        assert count(Incident) == 0

    def test_status_change_is_not_repeated(self, client, admin) -> None:
        incident = make_incident()
        headers = {**admin, "Idempotency-Key": "triage-1"}
        url = f"{URL}/{incident.id}/status"
        first = client.post(url, json={"status": "triaged"}, headers=headers)
        second = client.post(url, json={"status": "triaged"}, headers=headers)
        assert first.status_code == second.status_code == 200
        assert second.json()["version"] == first.json()["version"] == 2
        events = client.get(f"{URL}/{incident.id}/events", headers=admin).json()["items"]
        assert [e["type"] for e in events].count("status_changed") == 1

    def test_api_key_creation_shows_the_same_secret_once_stored(self, client, admin) -> None:
        headers = {**admin, "Idempotency-Key": "key-1"}
        first = client.post(
            "/api/v1/api-keys", json={"name": "n", "role": "viewer"}, headers=headers
        )
        second = client.post(
            "/api/v1/api-keys", json={"name": "n", "role": "viewer"}, headers=headers
        )
        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        assert count(ApiKey) == 2  # the admin's and this one

    @pytest.mark.parametrize("key", ["", "x" * 201])
    def test_invalid_key(self, client, admin, key) -> None:
        before = table_counts()
        response = client.post(URL, json=incident_body(), headers={**admin, "Idempotency-Key": key})
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/invalid-idempotency-key"
        assert table_counts() == before

    def test_expired_record_lets_the_request_run_again(self, client, admin) -> None:
        from datetime import timedelta

        headers = {**admin, "Idempotency-Key": "old"}
        first = client.post(URL, json=incident_body(), headers=headers).json()
        with session_scope() as session:
            for record in session.scalars(select(IdempotencyRecord)):
                record.expires_at = record.created_at - timedelta(seconds=1)
        second = client.post(URL, json=incident_body(), headers=headers).json()
        assert first["id"] != second["id"]
        assert count(Incident) == 2


class TestConcurrentIdempotency:
    @pytest.mark.parametrize("round_", range(2))
    def test_distinct_keys_in_parallel(self, client, admin, round_) -> None:
        """16 parallel POSTs with keys: the middleware's own database work must not block the
        event loop while request transactions hold the database (that stalled every request
        for the busy timeout and then failed them with 503 on SQLite)."""
        results: list[Any] = []
        barrier = threading.Barrier(16)

        def create(i: int) -> None:
            barrier.wait()
            results.append(
                client.post(
                    URL,
                    json=incident_body(title=f"p{i}"),
                    headers={**admin, "Idempotency-Key": f"p-{i}"},
                )
            )

        threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert [r.status_code for r in results] == [201] * 16, [r.text for r in results]
        assert count(Incident) == 16
        assert count(IdempotencyRecord) == 16

    def test_same_key_in_parallel_creates_once(self, client, admin) -> None:
        results: list[Any] = []
        barrier = threading.Barrier(6)

        def create() -> None:
            barrier.wait()
            results.append(
                client.post(URL, json=incident_body(), headers={**admin, "Idempotency-Key": "race"})
            )

        threads = [threading.Thread(target=create) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert count(Incident) == 1
        statuses = sorted(r.status_code for r in results)
        assert set(statuses) <= {201, 409}, [r.text for r in results]
        ids = {r.json()["id"] for r in results if r.status_code == 201}
        assert len(ids) == 1
        for response in results:
            if response.status_code == 409:
                assert response.json()["type"] == "/problems/idempotency-in-progress"
