"""The committed openapi/openapi.json equals the app's, and every operation is well described."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.api.openapi import render_openapi
from app.core.config import get_settings
from app.core.db import session_scope
from app.main import app
from app.models.incident import Incident
from tests.factories import (
    incident_body,
    make_incident,
    make_key,
    make_manager,
    seed_reference,
)

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def test_committed_spec_is_current() -> None:
    assert SPEC.read_text(encoding="utf-8") == render_openapi(app.openapi()), (
        "openapi/openapi.json is stale: run `kokoma export-openapi` and commit it"
    )


def test_served_spec_equals_committed(client) -> None:
    assert client.get("/openapi.json").json() == json.loads(SPEC.read_text(encoding="utf-8"))


def test_every_operation_has_unique_id_summary_and_tag() -> None:
    seen: set[str] = set()
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            op_id = operation.get("operationId")
            assert op_id and op_id not in seen, f"{method} {path}: missing or duplicate operationId"
            seen.add(op_id)
            assert operation.get("summary"), f"{op_id}: no summary"
            assert operation.get("tags"), f"{op_id}: no tag"


# --- the document tells the truth -----------------------------------------------------------------

DOC = app.openapi()
OPERATIONS = {
    operation["operationId"]: (method, path, operation)
    for path, item in DOC["paths"].items()
    for method, operation in item.items()
}
OPEN_OPERATIONS = {"healthz", "readyz"}


def _schema(ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_schema.get("$ref")
    if ref is None:
        return ref_or_schema
    return DOC["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _problem_type(response: Any) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return str(response.json()["type"])


class TestSecurity:
    def test_bearer_scheme_is_declared(self) -> None:
        assert DOC["components"]["securitySchemes"]["bearer"] == {
            "type": "http",
            "scheme": "bearer",
            "description": DOC["components"]["securitySchemes"]["bearer"]["description"],
        }

    def test_every_operation_states_its_security(self) -> None:
        for op_id, (_method, _path, operation) in OPERATIONS.items():
            if op_id in OPEN_OPERATIONS:
                assert operation["security"] == [], op_id
            else:
                assert operation["security"] == [{"bearer": []}], op_id

    def test_open_operations_answer_without_a_key(self, client: Any) -> None:
        assert client.get("/healthz").status_code == 200
        assert client.get("/openapi.json").status_code == 200

    def test_secured_operations_refuse_without_a_key(self, client: Any) -> None:
        assert client.get("/api/v1/incidents").status_code == 401


class TestMediaTypes:
    def test_incidents_list_offers_json_first(self) -> None:
        content = OPERATIONS["incidents_list"][2]["responses"]["200"]["content"]
        assert next(iter(content)) == "application/json"
        committed = json.loads(SPEC.read_text(encoding="utf-8"))
        committed_content = committed["paths"]["/api/v1/incidents"]["get"]["responses"]["200"][
            "content"
        ]
        assert list(committed_content) == ["application/json", "text/csv", "application/geo+json"]

    def test_no_accept_parameter(self) -> None:
        for op_id, (_m, _p, operation) in OPERATIONS.items():
            names = {p["name"].lower() for p in operation.get("parameters", [])}
            assert "accept" not in names, op_id

    def test_report_still_negotiates_by_accept(self, client: Any) -> None:
        headers = make_key("admin")
        markdown = client.get("/api/v1/recommendations/report", headers=headers)
        assert markdown.headers["content-type"].startswith("text/markdown")
        as_json = client.get(
            "/api/v1/recommendations/report", headers={**headers, "Accept": "application/json"}
        )
        assert as_json.headers["content-type"] == "application/json"


class TestConstraints:
    def test_limit_declares_the_servers_maximum(self, client: Any) -> None:
        maximum = get_settings().page_size_max
        for op_id, (_m, _p, operation) in OPERATIONS.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "limit":
                    assert parameter["schema"]["maximum"] == maximum, op_id
                    assert parameter["schema"]["minimum"] == 1, op_id
        headers = make_key("admin")
        assert client.get(f"/api/v1/incidents?limit={maximum}", headers=headers).status_code == 200
        too_many = client.get(f"/api/v1/incidents?limit={maximum + 1}", headers=headers)
        assert too_many.status_code == 422

    def test_query_parameters_are_not_nullable(self) -> None:
        for op_id, (_m, _p, operation) in OPERATIONS.items():
            for parameter in operation.get("parameters", []):
                assert {"type": "null"} not in parameter["schema"].get("anyOf", []), op_id

    @pytest.mark.parametrize(
        ("op_id", "enum"),
        [
            ("incidents_set_status", "IncidentStatus"),
            ("managers_set_status", "ManagerStatus"),
            ("recommendations_set_status", "RecommendationStatus"),
        ],
    )
    def test_status_change_is_an_enum_of_the_resource(self, op_id: str, enum: str) -> None:
        body = OPERATIONS[op_id][2]["requestBody"]["content"]["application/json"]["schema"]
        assert _schema(body)["properties"]["status"] == {"$ref": f"#/components/schemas/{enum}"}
        assert "status" in _schema(body)["required"]

    def test_patch_fields_refusing_null_are_not_nullable(self) -> None:
        props = DOC["components"]["schemas"]["IncidentUpdate"]["properties"]
        for name in ("title", "district", "category", "escalation_level"):
            assert "anyOf" not in props[name] and "default" not in props[name], name
        assert {"type": "null"} in props["occurred_at"]["anyOf"]

    def test_null_for_a_non_nullable_field_is_refused_and_changes_nothing(
        self, client: Any
    ) -> None:
        seed_reference()
        incident = make_incident()
        url = f"/api/v1/incidents/{incident.id}"
        headers = make_key("coordinator")
        refused = client.patch(url, json={"category": None}, headers=headers)
        assert refused.status_code == 422
        assert _problem_type(refused) == "/problems/validation-error"
        assert refused.json()["errors"][0]["loc"] == ["body", "category"]
        after = client.get(url, headers=headers).json()
        assert after["category"] == incident.category and after["version"] == incident.version

    def test_null_for_a_nullable_field_is_taken(self, client: Any) -> None:
        seed_reference()
        incident = make_incident(occurred_at="2026-05-01T12:00:00Z")
        headers = make_key("coordinator")
        response = client.patch(
            f"/api/v1/incidents/{incident.id}", json={"occurred_at": None}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["occurred_at"] is None

    def test_booleans_are_strict(self, client: Any) -> None:
        props = DOC["components"]["schemas"]["AutoDispatchRequest"]["properties"]
        assert props["dry_run"]["type"] == "boolean"
        response = client.post(
            "/api/v1/dispatch/auto", json={"dry_run": "yes"}, headers=make_key("admin")
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "dry_run"]

    def test_query_boolean_coercion_is_documented(self, client: Any) -> None:
        (parameter,) = [
            p for p in OPERATIONS["managers_list"][2]["parameters"] if p["name"] == "available"
        ]
        assert "`yes`/`no`" in parameter["description"]
        seed_reference()
        make_manager()
        headers = make_key("admin")
        as_true = client.get("/api/v1/managers", params={"available": "true"}, headers=headers)
        as_yes = client.get("/api/v1/managers", params={"available": "yes"}, headers=headers)
        assert as_true.status_code == as_yes.status_code == 200
        assert as_true.json() == as_yes.json() and len(as_yes.json()["items"]) == 1
        refused = client.get("/api/v1/managers", params={"available": "maybe"}, headers=headers)
        assert refused.status_code == 422

    @pytest.mark.parametrize("value", ["0.5", "1700000000", "2026-05-01"])
    def test_timestamps_are_rfc3339_text(self, client: Any, value: str) -> None:
        response = client.get(
            "/api/v1/incidents", params={"reported_before": value}, headers=make_key("admin")
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["query", "reported_before"]

    def test_a_numeric_timestamp_in_a_body_is_refused_and_creates_nothing(
        self, client: Any
    ) -> None:
        seed_reference()
        response = client.post(
            "/api/v1/incidents", json=incident_body(occurred_at=0.5), headers=make_key("admin")
        )
        assert response.status_code == 422
        with session_scope(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Incident)) == 0


class TestResponseHeaders:
    def test_every_response_declares_x_request_id(self) -> None:
        for op_id, (_m, _p, operation) in OPERATIONS.items():
            for code, response in operation["responses"].items():
                assert "X-Request-ID" in response["headers"], (op_id, code)
                if code in ("429", "503"):
                    assert "Retry-After" in response["headers"], (op_id, code)

    def test_post_success_declares_idempotent_replayed(self) -> None:
        for op_id, (method, _p, operation) in OPERATIONS.items():
            if method == "post":
                success = [c for c in operation["responses"] if c.startswith("2")]
                for code in success:
                    assert "Idempotent-Replayed" in operation["responses"][code]["headers"], op_id

    def test_headers_sent_are_declared(self, client: Any) -> None:
        """What the server really sends on create, read, edit and an idempotent repeat is in the
        operation's declared headers."""
        seed_reference()
        headers = {**make_key("admin"), "Idempotency-Key": "openapi-headers-1"}
        body = incident_body()
        seen: list[tuple[str, Any]] = []
        created = client.post("/api/v1/incidents", json=body, headers=headers)
        replayed = client.post("/api/v1/incidents", json=body, headers=headers)
        assert replayed.headers["Idempotent-Replayed"] == "true"
        seen += [("incidents_create", created), ("incidents_create", replayed)]
        url = created.headers["Location"]
        seen.append(("incidents_get", client.get(url, headers=headers)))
        seen.append(("incidents_update", client.patch(url, json={"title": "New"}, headers=headers)))
        checked = {"etag", "location", "idempotent-replayed", "retry-after", "x-request-id"}
        for op_id, response in seen:
            declared = {
                name.lower()
                for name in OPERATIONS[op_id][2]["responses"][str(response.status_code)]["headers"]
            }
            sent = {name.lower() for name in response.headers} & checked
            assert sent <= declared, (op_id, sent - declared)
            assert "etag" in sent and "x-request-id" in sent


class TestDescriptions:
    def test_tags_are_defined_and_described(self) -> None:
        defined = {tag["name"]: tag for tag in DOC["tags"]}
        assert all(tag.get("description") for tag in defined.values())
        for op_id, (_m, _p, operation) in OPERATIONS.items():
            assert set(operation["tags"]) <= set(defined), op_id

    def test_every_operation_has_a_description_naming_who_may_call_it(self) -> None:
        for op_id, (_m, _p, operation) in OPERATIONS.items():
            assert operation["description"].strip(), op_id
            assert (
                "Roles:" in operation["description"]
                or "Any valid API key" in operation["description"]
                or "no API key" in operation["description"]
            ), op_id
        assert "`viewer`" not in OPERATIONS["incidents_create"][2]["description"]

    def test_info_and_servers(self) -> None:
        assert DOC["info"]["contact"]["name"]
        assert DOC["info"]["license"]["identifier"] == "AGPL-3.0-or-later"
        assert DOC["servers"] and DOC["servers"][0]["url"]


class TestMethodNotAllowed:
    @pytest.mark.parametrize(
        ("method", "path", "allow"),
        [
            ("OPTIONS", "/api/v1/api-keys", "GET, POST"),
            ("PUT", "/api/v1/incidents", "GET, POST"),
            ("DELETE", "/api/v1/incidents/00000000-0000-4000-8000-000000000000", "GET, PATCH"),
        ],
    )
    def test_allow_lists_every_method_of_the_path(
        self, client: Any, method: str, path: str, allow: str
    ) -> None:
        response = client.request(method, path)
        assert response.status_code == 405
        assert response.headers["Allow"] == allow
        declared = {
            m.upper()
            for m in DOC["paths"][
                path.replace("00000000-0000-4000-8000-000000000000", "{incident_id}")
            ]
        }
        assert set(allow.split(", ")) == declared
