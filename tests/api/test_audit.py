"""The audit trail: every write leaves a row naming the changed fields, never personal values;
only admins read it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.core.security import hash_key
from app.models.system import ApiKey, AuditEvent
from tests.factories import incident_body, make_key, seed_reference, table_counts

API = "/api/v1"
EMAIL, NAME = "erika.secret@example.org", "Erika Geheim"
NEW_EMAIL, NEW_NAME = "new.secret@example.org", "Neue Meldende"


def all_audit(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 7, **params} | ({"cursor": cursor} if cursor else {})
        response = client.get(f"{API}/audit", params=query, headers=headers)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items


def key_id_of(headers: dict[str, str]) -> uuid.UUID:
    digest = hash_key(headers["Authorization"].removeprefix("Bearer "))
    with session_scope(write=False) as session:
        return session.scalars(select(ApiKey.id).where(ApiKey.key_hash == digest)).one()


@pytest.fixture
def admin() -> dict[str, str]:
    seed_reference()
    return make_key("admin")


class TestAuditTrail:
    def test_every_write_is_audited_with_field_names_only(self, client, admin) -> None:
        admin_id = str(key_id_of(admin))
        reporter = {"name": NAME, "contact": EMAIL, "anonymous": False}
        incident = client.post(
            f"{API}/incidents", json=incident_body(reporter=reporter), headers=admin
        ).json()
        incident_id = incident["id"]
        steps = [
            (
                "PATCH",
                f"/incidents/{incident_id}",
                {"title": "New title", "reporter": {"name": NEW_NAME, "contact": NEW_EMAIL}},
            ),
            ("POST", f"/incidents/{incident_id}/status", {"status": "triaged"}),
            ("POST", f"/incidents/{incident_id}/notes", {"text": "Spoke to the caretaker."}),
            (
                "POST",
                "/districts",
                {"code": "omega", "name": "Omega", "city": "T", "neighbours": ["alpha"]},
            ),
            ("PATCH", "/districts/omega", {"name": "Omega Süd"}),
            ("POST", "/competences", {"code": "first_aid", "name": "First aid"}),
            ("PATCH", "/competences/first_aid", {"description": "Basics"}),
            ("POST", "/organisations", {"name": "Verein", "kind": "ngo"}),
            ("POST", "/api-keys", {"name": "ci", "role": "viewer"}),
        ]
        responses = {}
        for method, path, body in steps:
            response = client.request(method, API + path, json=body, headers=admin)
            assert response.status_code in (200, 201), response.text
            responses[path] = response.json()
        organisation_id = responses["/organisations"]["id"]
        assert (
            client.patch(
                f"{API}/organisations/{organisation_id}", json={"name": "Verein 2"}, headers=admin
            ).status_code
            == 200
        )
        created_key = responses["/api-keys"]["id"]
        assert client.delete(f"{API}/api-keys/{created_key}", headers=admin).status_code == 204

        items = all_audit(client, admin)
        by_action = {(i["action"], i["resource"], i["resource_id"]): i for i in items}
        expected = {
            ("create", "incident", incident_id): {"reporter", "title", "district"},
            ("update", "incident", incident_id): {"reporter", "title"},
            ("status", "incident", incident_id): {"status"},
            ("create", "district", "omega"): {"code", "neighbours"},
            ("update", "district", "omega"): {"name"},
            ("create", "competence", "first_aid"): {"code", "name"},
            ("update", "competence", "first_aid"): {"description"},
            ("create", "organisation", organisation_id): {"name", "kind"},
            ("update", "organisation", organisation_id): {"name"},
            ("create", "api_key", created_key): {"name", "role"},
            ("revoke", "api_key", created_key): {"revoked_at"},
        }
        for key, fields in expected.items():
            assert key in by_action, f"no audit row for {key}"
            row = by_action[key]
            assert fields <= set(row["fields"]), (key, row["fields"])
            assert row["principal_id"] == admin_id
            assert row["principal_role"] == "admin"
            assert row["kind"] == "write"
        note_id = responses[f"/incidents/{incident_id}/notes"]["id"]
        assert by_action[("create", "incident_note", note_id)]["fields"] == ["text"]
        assert [i["action"] for i in items if i["resource"] == "incident"].count("update") == 1

        # no personal value anywhere: neither in the API's answer nor in the stored rows
        listing = json.dumps(items)
        with session_scope(write=False) as session:
            stored = json.dumps(
                [row.model_dump(mode="json") for row in session.scalars(select(AuditEvent))]
            )
        for secret in (EMAIL, NAME, NEW_EMAIL, NEW_NAME, "Spoke to the caretaker"):
            assert secret not in listing
            assert secret not in stored

    def test_refused_write_leaves_no_audit_row(self, client, admin) -> None:
        before = table_counts()["audit_event"]
        response = client.post(
            f"{API}/incidents", json=incident_body(district="atlantis"), headers=admin
        )
        assert response.status_code == 422
        assert table_counts()["audit_event"] == before

    def test_newest_first_and_filters(self, client, admin) -> None:
        first = client.post(f"{API}/incidents", json=incident_body(), headers=admin).json()["id"]
        client.post(f"{API}/incidents/{first}/notes", json={"text": "x"}, headers=admin)
        items = all_audit(client, admin)
        stamps = [(i["at"], i["id"]) for i in items]
        assert stamps == sorted(stamps, reverse=True)
        only = all_audit(client, admin, resource="incident", resource_id=first)
        assert [(i["action"], i["resource_id"]) for i in only] == [("create", first)]
        by_key = all_audit(client, admin, principal_id=str(key_id_of(admin)))
        assert {i["resource"] for i in by_key} == {"incident", "incident_note"}
        assert all_audit(client, admin, after="2999-01-01T00:00:00Z") == []
        assert all_audit(client, admin, kind="access") == []

    @pytest.mark.parametrize(
        "params",
        [
            {"after": "2026-01-01T00:00:00"},
            {"after": "soon"},
            {"kind": "everything"},
            {"principal_id": "me"},
            {"limit": 0},
        ],
        ids=str,
    )
    def test_bad_filters(self, client, admin, params) -> None:
        response = client.get(f"{API}/audit", params=params, headers=admin)
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/validation-error"

    @pytest.mark.parametrize("role", ["coordinator", "viewer"])
    def test_only_admins_read(self, client, admin, role) -> None:
        response = client.get(f"{API}/audit", headers=make_key(role))
        assert response.status_code == 403
        assert response.json()["type"] == "/problems/forbidden"
        assert client.get(f"{API}/audit").status_code == 401
