"""Request ids, JSON access logs (no personal data), Prometheus metrics, readiness."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.logging import JsonFormatter
from app.core.metrics import OFFERS, record_offer
from app.core.security import hash_key
from app.models.outbox import OutboxEvent
from app.models.system import ApiKey
from tests.factories import incident_body, make_incident, make_key, make_manager, seed_reference

API = "/api/v1/incidents"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _key_id(headers: dict[str, str]) -> str:
    digest = hash_key(headers["Authorization"].split()[1])
    with session_scope(write=False) as session:
        return str(session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest)))


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "kokoma.access"
    ]


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="kokoma.access")
    yield caplog


class TestRequestId:
    def test_a_sane_id_is_echoed(self, client: Any) -> None:
        response = client.get("/healthz", headers={"X-Request-ID": "abc-123.req:7"})
        assert response.headers["X-Request-ID"] == "abc-123.req:7"

    @pytest.mark.parametrize(
        "incoming", [b"", b"x" * 129, b"bad id with spaces", b"drop;table", "ümlaut".encode()]
    )
    def test_an_insane_id_is_replaced(self, client: Any, incoming: bytes) -> None:
        response = client.get("/healthz", headers={"X-Request-ID": incoming})
        assert HEX32.match(response.headers["X-Request-ID"])

    def test_generated_when_absent_and_unique(self, client: Any) -> None:
        first = client.get("/healthz").headers["X-Request-ID"]
        second = client.get("/healthz").headers["X-Request-ID"]
        assert HEX32.match(first) and HEX32.match(second) and first != second

    def test_problem_responses_carry_it_too(self, client: Any) -> None:
        response = client.get(API, headers={"X-Request-ID": "trace-401"})
        assert response.status_code == 401
        assert response.headers["X-Request-ID"] == "trace-401"
        missing = client.get("/nowhere", headers={"X-Request-ID": "trace-404"})
        assert missing.status_code == 404
        assert missing.headers["X-Request-ID"] == "trace-404"


class TestAccessLog:
    def test_one_json_line_per_request_with_template_status_and_principal(
        self, client: Any, access_log: pytest.LogCaptureFixture
    ) -> None:
        seed_reference()
        admin = make_key("admin")
        incident = make_incident()
        access_log.clear()
        response = client.get(f"{API}/{incident.id}", headers={**admin, "X-Request-ID": "req-42"})
        assert response.status_code == 200
        [line] = _access_lines(access_log)
        assert line["request_id"] == "req-42"
        assert line["method"] == "GET"
        assert line["route"] == "/api/v1/incidents/{incident_id}"
        assert line["status"] == 200
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["principal_id"] == _key_id(admin)
        assert line["role"] == "admin"
        assert line["logger"] == "kokoma.access" and line["level"] == "info"

    def test_no_keys_reporter_data_or_query_strings(
        self, client: Any, access_log: pytest.LogCaptureFixture
    ) -> None:
        seed_reference()
        admin = make_key("admin")
        key = admin["Authorization"].split()[1]
        body = incident_body(
            reporter={"name": "Erika Geheim", "contact": "erika.geheim@example.org"}
        )
        created = client.post(API, json=body, headers=admin)
        assert created.status_code == 201
        client.get(API, params={"q": "Erika Geheim"}, headers=admin)
        client.get(f"{API}/{created.json()['id']}", headers={"Authorization": "Bearer wrong"})
        lines = _access_lines(access_log)
        assert [line["route"] for line in lines] == [
            "/api/v1/incidents",
            "/api/v1/incidents",
            "/api/v1/incidents/{incident_id}",
        ]
        assert [line["status"] for line in lines] == [201, 200, 401]
        text = "\n".join(json.dumps(line) for line in lines)
        for secret in (key, "Erika", "Geheim", "erika.geheim@example.org", "wrong", "q="):
            assert secret not in text
        assert created.json()["id"] not in text  # raw paths never, only the template

    def test_unmatched_routes_and_early_refusals_use_a_bounded_label(
        self, client: Any, access_log: pytest.LogCaptureFixture
    ) -> None:
        client.get("/no/such/route/1234")
        oversized = b"{" + b" " * (get_settings().max_body_bytes + 10) + b"}"
        client.post(API, content=oversized, headers={"Content-Type": "application/json"})
        lines = _access_lines(access_log)
        assert [(line["route"], line["status"]) for line in lines] == [
            ("<unmatched>", 404),
            ("/api/v1/incidents", 413),
        ]


def _scrape(client: Any) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or (not line.startswith(name + "{") and line.split(" ")[0] != name):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


class TestDirectAccessLine:
    """In production (root's only handler: kokoma's JSON handler on stdout) the access line is
    written directly, batched per loop iteration — the same line the logging path writes."""

    @pytest.fixture
    def production_logging(self) -> Iterator[None]:
        from app.core.logging import configure_logging

        root = logging.getLogger()
        saved, level = list(root.handlers), root.level
        configure_logging("INFO", "json")
        try:
            yield
        finally:
            root.handlers, root.level = saved, level

    @staticmethod
    def only_kokoma_handler() -> None:
        """Drop the capture handlers pytest adds to the root logger for the test's call."""
        root = logging.getLogger()
        root.handlers = [h for h in root.handlers if type(h).__name__ == "_KokomaHandler"]

    def test_same_line_as_the_logging_path(
        self, client: Any, production_logging: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from app.api.middleware.observability import access_log as logger
        from app.core.logging import direct_json

        seed_reference()
        admin = make_key("admin")
        incident = make_incident()
        self.only_kokoma_handler()
        assert direct_json(logger)
        capsys.readouterr()
        for request_id in ("direct-1", "direct-2"):
            response = client.get(
                f"{API}/{incident.id}", headers={**admin, "X-Request-ID": request_id}
            )
            assert response.status_code == 200
        client.get("/healthz")  # a later request: the loop has flushed the earlier lines
        direct = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
        direct = [line for line in direct if line.get("logger") == "kokoma.access"]
        assert [line["request_id"] for line in direct[:2]] == ["direct-1", "direct-2"]

        logger.addFilter(lambda record: True)  # anything configured: the logging path
        try:
            assert not direct_json(logger)
            client.get(f"{API}/{incident.id}", headers={**admin, "X-Request-ID": "direct-1"})
        finally:
            logger.filters.clear()
        [logged] = [
            json.loads(line)
            for line in capsys.readouterr().out.splitlines()
            if line and json.loads(line).get("logger") == "kokoma.access"
        ]
        first = direct[0]
        assert list(first) == list(logged)  # same keys, same order
        for key in ("ts", "duration_ms"):
            first.pop(key), logged.pop(key)
        assert first == logged


class TestMetrics:
    def test_request_counter_and_histogram_by_template(self, client: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        incident = make_incident()
        labels = {"method": "GET", "route": "/api/v1/incidents/{incident_id}", "status": "200"}
        before = _sample(_scrape(client), "kokoma_http_requests_total", **labels) or 0.0
        for _ in range(3):
            assert client.get(f"{API}/{incident.id}", headers=admin).status_code == 200
        text = _scrape(client)
        assert _sample(text, "kokoma_http_requests_total", **labels) == before + 3
        count = _sample(
            text,
            "kokoma_http_request_duration_seconds_count",
            method="GET",
            route="/api/v1/incidents/{incident_id}",
        )
        assert count is not None and count >= 3
        assert str(incident.id) not in text

    def test_offer_outcomes_are_exported(self, client: Any) -> None:
        before = OFFERS.labels(outcome="declined")._value.get()
        record_offer("declined")
        text = _scrape(client)
        assert _sample(text, "kokoma_dispatch_offers_total", outcome="declined") == before + 1
        for outcome in ("offered", "accepted", "expired", "withdrawn", "completed"):
            assert _sample(text, "kokoma_dispatch_offers_total", outcome=outcome) is not None

    def test_dispatch_counts_offers_by_outcome_on_commit(self, client: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        manager = make_manager()
        incident = make_incident(required_competences=[], escalation_level=2)
        triaged = client.post(
            f"{API}/{incident.id}/status", json={"status": "triaged"}, headers=admin
        )
        assert triaged.status_code == 200, triaged.text
        before = {o: OFFERS.labels(outcome=o)._value.get() for o in ("offered", "declined")}
        offer = client.post(
            "/api/v1/assignments",
            headers=admin,
            json={"incident_id": str(incident.id), "manager_id": str(manager)},
        )
        assert offer.status_code == 201, offer.text
        declined = client.post(
            f"/api/v1/assignments/{offer.json()['id']}/decline",
            json={"reason": "on holiday"},
            headers=admin,
        )
        assert declined.status_code == 200, declined.text
        text = _scrape(client)
        assert _sample(text, "kokoma_dispatch_offers_total", outcome="offered") == (
            before["offered"] + 1
        )
        assert _sample(text, "kokoma_dispatch_offers_total", outcome="declined") == (
            before["declined"] + 1
        )

    def test_a_rolled_back_outcome_is_not_counted(self) -> None:
        from app.core.db import new_session
        from app.core.metrics import count_offer

        before = OFFERS.labels(outcome="withdrawn")._value.get()
        session = new_session(write=False)
        session.execute(select(func.count()).select_from(OutboxEvent))  # a transaction is open
        count_offer(session, "withdrawn")
        session.rollback()
        session.commit()
        session.close()
        assert OFFERS.labels(outcome="withdrawn")._value.get() == before

    def test_worker_queue_depth_counts_the_pending_outbox(self, client: Any) -> None:
        seed_reference()
        make_incident()
        make_incident()
        with session_scope(write=False) as session:
            pending = session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.fanned_out_at.is_(None))  # type: ignore[union-attr]
            )
        assert pending is not None and pending >= 2
        text = _scrape(client)
        assert _sample(text, "kokoma_worker_queue_depth", queue="outbox") == pending
        assert _sample(text, "kokoma_worker_queue_depth", queue="offers_due") == 0
        assert _sample(text, "kokoma_database_up") == 1

    def test_metrics_are_not_in_the_api_document(self, client: Any) -> None:
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]

    def test_metrics_can_be_turned_off(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from fastapi.testclient import TestClient

        from app.main import create_app

        monkeypatch.setenv("KOKOMA_METRICS_ENABLED", "false")
        get_settings.cache_clear()
        try:
            with TestClient(create_app()) as other:
                assert other.get("/metrics").status_code == 404
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()


class TestReadiness:
    def test_ready_when_migrated(self, client: Any) -> None:
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"

    def test_healthz_needs_no_database(self, client: Any) -> None:
        assert client.get("/healthz").json() == {"status": "ok", "detail": None}


def test_start_up_builds_what_the_first_requests_would_wait_for() -> None:
    """The route templates (from the whole OpenAPI document) and the language codes are built
    by the lifespan, before the server answers anything — not by the first request while the
    ones behind it wait."""
    from fastapi.testclient import TestClient

    from app.api.middleware import observability
    from app.main import create_app
    from app.models.languages import iso639_1_codes

    app = create_app()
    iso639_1_codes.cache_clear()
    assert id(app) not in observability._templates
    with TestClient(app):
        assert id(app) in observability._templates
        assert iso639_1_codes.cache_info().currsize == 1
    observability._templates.pop(id(app), None)
