"""Limits: body size, import size, page size, string and list lengths, per-key rate limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from app.api.middleware.rate_limit import TokenBucketLimiter
from app.core.config import get_settings
from app.core.db import session_scope
from app.models.incident import Incident
from tests.factories import incident_body, make_key, seed_reference

API = "/api/v1/incidents"


@pytest.fixture
def override(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set ``KOKOMA_*`` settings for one test (the settings cache is cleared either side)."""

    def apply(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"KOKOMA_{name.upper()}", str(value))
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def _incident_count() -> int:
    with session_scope(write=False) as session:
        return session.scalar(select(func.count()).select_from(Incident)) or 0


def _assert_problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == type_
    assert body["status"] == status
    return body


class TestBodySize:
    def test_json_body_over_the_limit_is_413(self, client: Any, override: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        override(max_body_bytes=2048)
        body = incident_body(description="x" * 3000)
        response = client.post(API, json=body, headers=admin)
        _assert_problem(response, 413, "/problems/payload-too-large")
        assert _incident_count() == 0

    def test_json_body_under_the_limit_passes(self, client: Any, override: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        override(max_body_bytes=8192)
        response = client.post(API, json=incident_body(description="x" * 3000), headers=admin)
        assert response.status_code == 201, response.text
        assert _incident_count() == 1

    def test_streamed_body_without_length_is_cut_off(self, client: Any, override: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        override(max_body_bytes=2048)
        payload = json.dumps(incident_body(description="y" * 5000)).encode()

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(payload), 1000):
                yield payload[start : start + 1000]

        response = client.post(
            API, content=chunks(), headers={**admin, "Content-Type": "application/json"}
        )
        _assert_problem(response, 413, "/problems/payload-too-large")
        assert _incident_count() == 0

    def test_import_bodies_have_their_own_larger_limit(self, client: Any, override: Any) -> None:
        admin = make_key("admin")
        override(max_body_bytes=2048, max_import_bytes=8192)
        csv = "external_id,title\n" + "x,y\n" * 1500  # 6 KB: above the JSON limit
        response = client.post(
            "/api/v1/imports/incidents",
            content=csv.encode(),
            headers={**admin, "Content-Type": "text/csv"},
        )
        assert response.status_code != 413
        too_big = "external_id,title\n" + "x,y\n" * 3000  # 12 KB: above the import limit
        response = client.post(
            "/api/v1/imports/incidents",
            content=too_big.encode(),
            headers={**admin, "Content-Type": "text/csv"},
        )
        _assert_problem(response, 413, "/problems/payload-too-large")


class TestPageSize:
    def test_max_page_size_passes(self, client: Any) -> None:
        admin = make_key("admin")
        assert client.get(API, params={"limit": 500}, headers=admin).status_code == 200

    @pytest.mark.parametrize("limit", [0, 501, 100000])
    def test_out_of_range_is_422(self, client: Any, limit: int) -> None:
        admin = make_key("admin")
        response = client.get(API, params={"limit": limit}, headers=admin)
        body = _assert_problem(response, 422, "/problems/validation-error")
        assert ["query", "limit"] in [err["loc"] for err in body["errors"]]


class TestStringAndListLengths:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("title", "t" * 201),
            ("description", "d" * 20_001),
            ("district", "a" * 65),
            ("required_competences", ["mediation"] * 21),
            ("languages", ["de"] * 21),
        ],
    )
    def test_too_long_is_422_and_writes_nothing(
        self, client: Any, field: str, value: object
    ) -> None:
        seed_reference()
        admin = make_key("admin")
        response = client.post(API, json=incident_body(**{field: value}), headers=admin)
        body = _assert_problem(response, 422, "/problems/validation-error")
        assert any(err["loc"][:2] == ["body", field] for err in body["errors"])
        assert _incident_count() == 0

    def test_too_long_query_string_is_422(self, client: Any) -> None:
        admin = make_key("admin")
        response = client.get(API, params={"q": "q" * 201}, headers=admin)
        _assert_problem(response, 422, "/problems/validation-error")

    def test_every_request_string_and_list_is_bounded(self) -> None:
        """Contract over the live OpenAPI (new routes included): every string and array in a
        JSON request body, and every query string, has a maximum length."""
        from app.main import app

        unbounded = _unbounded_request_fields(app.openapi())
        assert unbounded == [], "add max_length to: " + ", ".join(unbounded)


_BOUNDED_FORMATS = {"uuid", "date-time", "date", "time", "email", "duration"}


def _unbounded_request_fields(spec: dict[str, Any]) -> list[str]:
    components = spec.get("components", {}).get("schemas", {})
    found: list[str] = []

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = components[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def walk(schema: dict[str, Any], where: str, depth: int = 0) -> None:
        schema = resolve(schema)
        if depth > 12:
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub, where, depth + 1)
        kind = schema.get("type")
        if kind == "string" and not (
            "maxLength" in schema
            or "enum" in schema
            or "const" in schema
            or schema.get("format") in _BOUNDED_FORMATS
        ):
            found.append(where)
        if kind == "array":
            if "maxItems" not in schema and "enum" not in resolve(schema.get("items", {})):
                found.append(where)
            if "items" in schema:
                walk(schema["items"], where + "[]", depth + 1)
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{name}", depth + 1)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, where + "{}", depth + 1)

    for item in spec["paths"].values():
        for operation in item.values():
            op_id = operation["operationId"]
            for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
                # CSV/NDJSON import bodies are streamed and bounded by KOKOMA_MAX_IMPORT_BYTES.
                if media_type == "application/json" and "schema" in content:
                    walk(content["schema"], f"{op_id} body")
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    walk(parameter.get("schema", {}), f"{op_id} ?{parameter['name']}")
    return sorted(set(found))


class TestRateLimit:
    def test_over_the_limit_is_429_with_retry_after(self, client: Any, override: Any) -> None:
        admin = make_key("admin")
        override(rate_limit_per_minute=3)
        statuses = [client.get(API, headers=admin).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        response = client.get(API, headers=admin)
        body = _assert_problem(response, 429, "/problems/too-many-requests")
        assert int(response.headers["Retry-After"]) >= 1
        assert "3 requests per minute" in body["detail"]
        assert admin["Authorization"].split()[1] not in response.text

    def test_limit_is_per_key(self, client: Any, override: Any) -> None:
        first, second = make_key("admin"), make_key("coordinator")
        override(rate_limit_per_minute=2)
        for _ in range(2):
            assert client.get(API, headers=first).status_code == 200
        assert client.get(API, headers=first).status_code == 429
        assert client.get(API, headers=second).status_code == 200

    def test_refused_write_changes_nothing(self, client: Any, override: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        override(rate_limit_per_minute=1)
        assert client.get(API, headers=admin).status_code == 200
        response = client.post(API, json=incident_body(), headers=admin)
        _assert_problem(response, 429, "/problems/too-many-requests")
        assert _incident_count() == 0

    def test_zero_turns_it_off(self, client: Any, override: Any) -> None:
        admin = make_key("admin")
        override(rate_limit_per_minute=0)
        assert {client.get(API, headers=admin).status_code for _ in range(30)} == {200}

    def test_health_and_requests_without_key_are_not_counted(
        self, client: Any, override: Any
    ) -> None:
        override(rate_limit_per_minute=1)
        assert {client.get("/healthz").status_code for _ in range(5)} == {200}
        assert {client.get(API).status_code for _ in range(5)} == {401}

    def test_429_is_documented_on_every_api_operation(self) -> None:
        from app.main import app

        for path, item in app.openapi()["paths"].items():
            if not path.startswith("/api/"):
                continue
            for method, operation in item.items():
                assert "429" in operation["responses"], f"{method} {path}"


class TestTokenBucket:
    def test_burst_then_steady_refill(self) -> None:
        bucket = TokenBucketLimiter(60)  # one token per second, burst 60
        assert all(bucket.take("k", now=100.0) == 0 for _ in range(60))
        wait = bucket.take("k", now=100.0)
        assert wait == pytest.approx(1.0)
        assert bucket.take("k", now=100.5) == pytest.approx(0.5)
        assert bucket.take("k", now=101.01) == 0
        assert bucket.take("k", now=101.02) > 0

    def test_refill_never_exceeds_the_burst(self) -> None:
        bucket = TokenBucketLimiter(6)
        bucket.take("k", now=0.0)
        taken = sum(bucket.take("k", now=10_000.0) == 0 for _ in range(10))
        assert taken == 6
