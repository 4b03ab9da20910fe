"""Bad input → a 4xx ``application/problem+json`` and no change in the database; 500 leaks nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope
from app.models.incident import Incident
from app.models.reference import District
from tests.factories import (
    incident_body,
    make_incident,
    make_key,
    make_organisation,
    seed_reference,
    table_counts,
)

URL = "/api/v1/incidents"
PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status
    if type_ is not None:
        assert body["type"] == type_
    return body


def cursor_of(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.fixture
def admin() -> dict[str, str]:
    seed_reference()
    return make_key("admin")


class TestProblemResponses:
    def test_unknown_route(self, client, admin) -> None:
        for headers in (admin, {}):
            body = assert_problem(
                client.get("/api/v1/no-such-thing", headers=headers), 404, "/problems/not-found"
            )
            assert body["instance"] == "/api/v1/no-such-thing"

    def test_wrong_method(self, client, admin) -> None:
        response = client.put(URL, json={}, headers=admin)
        assert_problem(response, 405, "/problems/method-not-allowed")
        assert "GET" in response.headers["allow"]

    def test_malformed_uuid_in_path(self, client, admin) -> None:
        body = assert_problem(
            client.get(f"{URL}/not-a-uuid", headers=admin), 422, "/problems/validation-error"
        )
        assert body["errors"][0]["loc"] == ["path", "incident_id"]

    def test_500_renders_problem_without_internals(self) -> None:
        from app.main import create_app

        app = create_app()

        @app.get("/boom")
        def boom() -> None:
            raise RuntimeError("secret internals")

        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/boom")
        body = assert_problem(response, 500, "/problems/internal-error")
        assert "secret" not in response.text
        assert "RuntimeError" not in response.text
        assert "Traceback" not in response.text
        assert body["detail"] == "An unexpected error occurred."

    def test_validation_errors_do_not_echo_values(self, client, admin) -> None:
        """A refused value (it may be personal data) is never repeated in the problem."""
        body = incident_body(reporter={"name": "Erika", "contact": "x" * 400 + "@secret.example"})
        response = client.post(URL, json=body, headers=admin)
        problem = assert_problem(response, 422, "/problems/validation-error")
        assert problem["errors"][0]["loc"] == ["body", "reporter", "contact"]
        assert "secret.example" not in response.text


#: (name, body) of POST /incidents bodies that must be refused with 422.
BAD_CREATE_BODIES: list[tuple[str, Any]] = [
    ("title wrong type", incident_body(title=123)),
    ("escalation wrong type", incident_body(escalation_level="high")),
    ("escalation too high", incident_body(escalation_level=10)),
    ("escalation zero", incident_body(escalation_level=0)),
    ("languages not a list", incident_body(languages="de")),
    ("unknown language", incident_body(languages=["xx"])),
    ("reporter not an object", incident_body(reporter="Erika")),
    ("location out of range", incident_body(location={"lat": 91, "lon": 0})),
    ("occurred_at without zone", incident_body(occurred_at="2026-06-01T10:00:00")),
    ("occurred_at not a date", incident_body(occurred_at="last tuesday")),
    ("organisation_id not a uuid", incident_body(organisation_id="org-1")),
    ("unknown field", incident_body(priority="high")),
    ("unknown nested field", incident_body(reporter={"name": "E", "email": "e@example.org"})),
    ("unknown category", incident_body(category="aliens")),
    ("unknown source", incident_body(source="fax")),
    ("district not a slug", incident_body(district="Alpha District")),
    ("missing title", {k: v for k, v in incident_body().items() if k != "title"}),
    ("empty title", incident_body(title="   ")),
    ("NUL in title", incident_body(title="a\x00b")),
    ("NUL in description", incident_body(description="x\x00")),
    ("NUL in reporter", incident_body(reporter={"name": "E\x00", "contact": "e@example.org"})),
    ("array body", [incident_body()]),
    ("null body", None),
]


class TestBadCreate:
    @pytest.mark.parametrize(
        ("name", "body"), BAD_CREATE_BODIES, ids=[n for n, _ in BAD_CREATE_BODIES]
    )
    def test_refused(self, client, admin, name, body) -> None:
        before = table_counts()
        response = client.post(
            URL, content=json.dumps(body), headers={**admin, "content-type": "application/json"}
        )
        problem = assert_problem(response, 422, "/problems/validation-error")
        assert problem["errors"], problem
        assert table_counts() == before

    def test_malformed_json(self, client, admin) -> None:
        before = table_counts()
        response = client.post(
            URL, content=b'{"title": "x",', headers={**admin, "content-type": "application/json"}
        )
        assert_problem(response, 422, "/problems/validation-error")
        assert table_counts() == before

    @pytest.mark.parametrize(
        "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
    )
    def test_wrong_content_type(self, client, admin, content_type) -> None:
        before = table_counts()
        response = client.post(
            URL,
            content=json.dumps(incident_body()),
            headers={**admin, "content-type": content_type},
        )
        assert response.status_code in (415, 422), response.text
        assert_problem(response, response.status_code)
        assert table_counts() == before

    def test_empty_body(self, client, admin) -> None:
        before = table_counts()
        response = client.post(URL, headers={**admin, "content-type": "application/json"})
        assert_problem(response, 422, "/problems/validation-error")
        assert table_counts() == before

    def test_ten_megabyte_body(self, client, admin) -> None:
        before = table_counts()
        body = json.dumps(incident_body(description="x" * (10 * 1024 * 1024)))
        response = client.post(
            URL, content=body, headers={**admin, "content-type": "application/json"}
        )
        assert_problem(response, 413, "/problems/payload-too-large")
        assert table_counts() == before

    def test_oversized_body_without_content_length(self, client, admin) -> None:
        """A chunked body is counted as it arrives."""

        def chunks():
            yield b'{"title": "x", "description": "'
            for _ in range(12):
                yield b"y" * (100 * 1024)
            yield b'"}'

        before = table_counts()
        response = client.post(
            URL, content=chunks(), headers={**admin, "content-type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert_problem(response, 413, "/problems/payload-too-large")
        assert table_counts() == before


class TestBadUpdate:
    @pytest.mark.parametrize(
        "body",
        [
            {"title": 5},
            {"escalation_level": "high"},
            {"escalation_level": 12},
            {"category": "aliens"},
            {"status": "closed"},
            {"reference": "KOK-2000-00001"},
            {"version": 7},
            {"title": "ok", "color": "red"},
            {"title": "a\x00b"},
            {"languages": ["zz"]},
        ],
        ids=str,
    )
    def test_refused(self, client, admin, body) -> None:
        incident = make_incident()
        before = table_counts()
        response = client.patch(f"{URL}/{incident.id}", json=body, headers=admin)
        assert_problem(response, 422, "/problems/validation-error")
        assert table_counts() == before
        got = client.get(f"{URL}/{incident.id}", headers=admin).json()
        assert got == client.get(f"{URL}/{incident.id}", headers=admin).json()
        assert (got["version"], got["title"], got["status"]) == (1, incident.title, "reported")

    @pytest.mark.parametrize("if_match", ['"7"', 'W/"0"', "garbage", '"1x"'])
    def test_stale_or_malformed_if_match(self, client, admin, if_match) -> None:
        incident = make_incident()
        before = table_counts()
        response = client.patch(
            f"{URL}/{incident.id}",
            json={"title": "changed"},
            headers={**admin, "If-Match": if_match},
        )
        assert_problem(response, 412)
        assert table_counts() == before
        assert client.get(f"{URL}/{incident.id}", headers=admin).json()["title"] == incident.title

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"status": 3},
            {"status": "closed", "extra": 1},
            {"status": ""},
            {"status": "triaged", "note": "n\x00"},
        ],
        ids=str,
    )
    def test_bad_status_body(self, client, admin, body) -> None:
        incident = make_incident()
        before = table_counts()
        response = client.post(f"{URL}/{incident.id}/status", json=body, headers=admin)
        assert_problem(response, 422, "/problems/validation-error")
        assert table_counts() == before


#: Query strings of GET /incidents that must be refused with 422.
BAD_QUERIES: list[dict[str, Any]] = [
    {"limit": 0},
    {"limit": 501},
    {"limit": -1},
    {"limit": "ten"},
    {"status": "lost"},
    {"status": ["reported", "lost"]},
    {"category": "aliens"},
    {"min_escalation": 0},
    {"min_escalation": 10},
    {"reported_after": "yesterday"},
    {"reported_after": "2026-01-01T00:00:00"},
    {"organisation_id": "not-a-uuid"},
    {"q": "x" * 201},
    {"q": "a\x00b"},
    {"district": "alpha\x00"},
]

FIXED_ID = "6f1c2a4e-0d1b-4c8e-9a55-2b7f3e9d1c00"

#: Cursors that are not ones the API gave out: 400 /problems/invalid-cursor.
BAD_CURSORS = [
    "garbage!",
    "e30",  # {} — not a list
    cursor_of([1]),  # wrong arity
    cursor_of([1, 2]),  # wrong types
    cursor_of(["x", "y"]),
    cursor_of([None, None]),
    cursor_of([{"t": "not a date"}, {"u": FIXED_ID}]),
    cursor_of([{"t": "2026-01-01T00:00:00"}, {"u": FIXED_ID}]),  # naive
    cursor_of([{"t": "2026-01-01T00:00:00+00:00"}, {"u": "nope"}]),
    cursor_of([{"t": "2026-01-01T00:00:00+00:00"}, "not-a-uuid"]),
    cursor_of([{"u": FIXED_ID}, {"t": "2026-01-01T00:00:00+00:00"}]),  # swapped
    cursor_of([[1], {"x": 1}]),
]


class TestBadQueries:
    @pytest.mark.parametrize(
        ("path", "params", "loc"),
        [
            ("/incidents", {"q": "a\x00b"}, ["query", "q"]),
            ("/incidents", {"district": "\x00"}, ["query", "district"]),
            ("/managers", {"district": "x\x00"}, ["query", "district"]),
            ("/districts/a%00b", {}, ["path", "code"]),
        ],
    )
    def test_nul_in_path_or_query_is_422_before_anything_else(
        self, client, admin, path, params, loc
    ) -> None:
        make_incident()
        before = table_counts()
        for headers in (admin, {}):  # also before authentication
            response = client.get("/api/v1" + path, params=params, headers=headers)
            body = assert_problem(response, 422, "/problems/validation-error")
            assert body["errors"] == [
                {"loc": loc, "msg": "contains a NUL character", "type": "string_nul"}
            ]
        assert table_counts() == before

    @pytest.mark.parametrize("params", BAD_QUERIES, ids=str)
    def test_refused(self, client, admin, params) -> None:
        make_incident()
        before = table_counts()
        response = client.get(URL, params=params, headers=admin)
        assert_problem(response, 422, "/problems/validation-error")
        assert table_counts() == before

    @pytest.mark.parametrize(
        "cursor", BAD_CURSORS, ids=[f"cursor{i}" for i in range(len(BAD_CURSORS))]
    )
    def test_invalid_cursor(self, client, admin, cursor) -> None:
        make_incident()
        response = client.get(URL, params={"cursor": cursor}, headers=admin)
        assert_problem(response, 400, "/problems/invalid-cursor")

    @pytest.mark.parametrize(
        "path",
        [
            "/districts",
            "/competences",
            "/organisations",
            "/api-keys",
            "/audit",
            "/incidents/{id}/events",
            "/incidents/{id}/notes",
        ],
    )
    @pytest.mark.parametrize(
        "cursor",
        [BAD_CURSORS[0], BAD_CURSORS[3], BAD_CURSORS[5]],
        ids=["garbage", "wrong-types", "nulls"],
    )
    def test_invalid_cursor_everywhere(self, client, admin, path, cursor) -> None:
        incident = make_incident()
        make_organisation()
        response = client.get(
            "/api/v1" + path.format(id=incident.id), params={"cursor": cursor}, headers=admin
        )
        assert_problem(response, 400, "/problems/invalid-cursor")

    @pytest.mark.parametrize(
        "params",
        [
            {"q": "'; DROP TABLE incident; --"},
            {"q": "' OR '1'='1"},
            {"q": "%"},
            {"district": "x' OR 1=1 --"},
            {"district": "alpha' --"},
            {"district": 'alpha" OR ""="'},
        ],
        ids=str,
    )
    def test_sql_in_filters_is_just_text(self, client, admin, params) -> None:
        organisation = make_organisation()
        make_incident(title="Visible to the partner", organisation_id=str(organisation))
        make_incident(title="Another organisation's incident")
        partner = make_key("partner", organisation_id=organisation)
        before = table_counts()
        for headers in (admin, partner):
            response = client.get(URL, params=params, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json() == {"items": [], "next_cursor": None}
        assert table_counts() == before
        with session_scope(write=False) as session:
            assert len(session.scalars(select(Incident)).all()) == 2

    @pytest.mark.parametrize(
        "path",
        [
            "/api/v1/districts/alpha%00",
            "/api/v1/competences/mediation%00x",
            "/api/v1/districts?city=Test%00stadt",
        ],
    )
    def test_nul_in_path_or_query(self, client, admin, path) -> None:
        response = client.get(path, headers=admin)
        assert_problem(response, 422, "/problems/validation-error")

    def test_nul_in_reference_bodies(self, client, admin) -> None:
        before = table_counts()
        for path, body in [
            ("/api/v1/districts", {"code": "omega", "name": "O\x00", "city": "Teststadt"}),
            ("/api/v1/competences", {"code": "skill", "name": "Skill", "description": "\x00"}),
            ("/api/v1/organisations", {"name": "N\x00GO", "kind": "ngo"}),
            ("/api/v1/api-keys", {"name": "k\x00", "role": "viewer"}),
        ]:
            assert_problem(client.post(path, json=body, headers=admin), 422)
        assert table_counts() == before
        with session_scope(write=False) as session:
            assert session.get(District, "omega") is None
