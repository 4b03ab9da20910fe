"""CORS (``KOKOMA_CORS_ORIGINS``): preflights and real requests from a listed origin get CORS
headers (no credentials, the API's response headers exposed); any other origin gets none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.core.config import Settings, get_settings
from tests.factories import incident_body, make_key, seed_reference
from tests.live.conftest import LiveServer, live_server  # noqa: F401 - fixture

SPA = "https://spa.example.org"
OTHER = "https://evil.example.net"
EXPOSED = {"etag", "location", "link", "x-request-id", "idempotent-replayed", "retry-after"}


@pytest.fixture
def cors_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A client of an app built with two allowed origins."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    monkeypatch.setenv("KOKOMA_CORS_ORIGINS", f"{SPA}, http://localhost:5173")
    get_settings.cache_clear()
    app = create_app()
    monkeypatch.undo()
    get_settings.cache_clear()
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _cors_headers(response: httpx.Response) -> set[str]:
    return {name for name in response.headers if name.lower().startswith("access-control-")}


def _preflight(
    client: Any,
    origin: str,
    method: str = "POST",
    headers: str = "authorization, content-type, idempotency-key",
) -> Any:
    return client.options(
        "/api/v1/incidents",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


class TestPreflight:
    def test_listed_origin(self, cors_client: Any) -> None:
        response = _preflight(cors_client, SPA)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == SPA
        allowed = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
        assert {"GET", "POST", "PATCH", "DELETE"} <= allowed
        requested = {
            h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
        }
        assert {"authorization", "content-type", "idempotency-key", "if-match"} <= requested
        assert "access-control-allow-credentials" not in response.headers
        assert int(response.headers["access-control-max-age"]) > 0
        assert "Origin" in response.headers["vary"]

    def test_second_listed_origin(self, cors_client: Any) -> None:
        response = _preflight(cors_client, "http://localhost:5173", method="PATCH")
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://localhost:5173"

    def test_unlisted_origin_gets_no_cors_headers(self, cors_client: Any) -> None:
        response = _preflight(cors_client, OTHER)
        assert _cors_headers(response) == set()
        assert response.status_code >= 400

    def test_origin_is_matched_exactly(self, cors_client: Any) -> None:
        for origin in (
            SPA + ":443",
            SPA + "/",
            "http://spa.example.org",
            "https://sub.spa.example.org",
        ):
            assert _cors_headers(_preflight(cors_client, origin)) == set(), origin

    def test_header_not_allowed(self, cors_client: Any) -> None:
        response = _preflight(cors_client, SPA, headers="authorization, x-something-else")
        assert response.status_code == 400  # the browser refuses the real request
        assert "x-something-else" not in response.headers["access-control-allow-headers"].lower()


class TestRealRequests:
    def test_listed_origin_reads_created_incident(self, cors_client: Any) -> None:
        seed_reference()
        headers = {**make_key("coordinator"), "Origin": SPA}
        response = cors_client.post("/api/v1/incidents", json=incident_body(), headers=headers)
        assert response.status_code == 201, response.text
        assert response.headers["access-control-allow-origin"] == SPA
        exposed = {
            h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
        }
        assert exposed >= EXPOSED
        assert "access-control-allow-credentials" not in response.headers
        assert response.headers["etag"] and response.headers["location"]
        listed = cors_client.get("/api/v1/incidents", headers=headers)
        assert listed.status_code == 200
        assert listed.headers["access-control-allow-origin"] == SPA

    def test_problem_responses_carry_cors_headers(self, cors_client: Any) -> None:
        response = cors_client.get("/api/v1/incidents", headers={"Origin": SPA})
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["access-control-allow-origin"] == SPA

    def test_unlisted_origin_gets_no_cors_headers(self, cors_client: Any) -> None:
        seed_reference()
        headers = {**make_key("coordinator"), "Origin": OTHER}
        response = cors_client.get("/api/v1/incidents", headers=headers)
        assert response.status_code == 200
        assert _cors_headers(response) == set()
        assert "Origin" in response.headers["vary"]

    def test_without_origin_nothing_changes(self, cors_client: Any) -> None:
        response = cors_client.get("/healthz")
        assert response.status_code == 200
        assert _cors_headers(response) == set()


def test_no_origins_by_default(client: Any) -> None:
    assert get_settings().cors_origin_list == []
    response = _preflight(client, SPA)
    assert _cors_headers(response) == set()
    seed_reference()
    listed = client.get("/api/v1/incidents", headers={**make_key("viewer"), "Origin": SPA})
    assert _cors_headers(listed) == set()


@pytest.mark.parametrize(
    "value",
    ["*", "https://spa.example.org/", "spa.example.org", "https://spa.example.org/app", "null"],
)
def test_setting_refuses_what_is_not_an_origin(value: str) -> None:
    with pytest.raises(ValidationError, match="KOKOMA_CORS_ORIGINS"):
        Settings(cors_origins=value)


def test_live_preflight_and_request(live_server: LiveServer) -> None:  # noqa: F811
    seed_reference()
    url = live_server(env={"KOKOMA_CORS_ORIGINS": SPA})
    preflight = httpx.options(
        f"{url}/api/v1/incidents",
        headers={
            "Origin": SPA,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == SPA
    response = httpx.get(
        f"{url}/api/v1/incidents", headers={**make_key("coordinator"), "Origin": SPA}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SPA
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    other = httpx.get(
        f"{url}/api/v1/incidents", headers={**make_key("coordinator"), "Origin": OTHER}
    )
    assert other.status_code == 200
    assert _cors_headers(other) == set()
