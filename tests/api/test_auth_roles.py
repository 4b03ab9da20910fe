"""Every endpoint × every role, table-driven: allowed, 401 without key, 403 without the right,
404 for another organisation's (or an unassigned manager's) incident.

Other areas extend :data:`ACCESS_TABLE` (and :data:`REQUEST_BODIES`, :data:`COVERED_TAGS`) with
rows for their own endpoints; the roles and the fixture world are shared.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from tests.factories import (
    incident_body,
    make_assignment,
    make_incident,
    make_key,
    make_manager,
    make_organisation,
    seed_reference,
    table_counts,
)

API = "/api/v1"

#: The callers every endpoint is tried with.
#: ``manager`` holds an open (offered) lead assignment on the incident, ``manager_unassigned``
#: none; ``partner_own`` belongs to the incident's organisation, ``partner_other`` to another one.
ROLES = (
    "admin",
    "coordinator",
    "manager",
    "manager_unassigned",
    "partner_own",
    "partner_other",
    "viewer",
    "no_key",
    "unknown_key",
)

ALL_READ = dict.fromkeys(ROLES, 200) | {"no_key": 401, "unknown_key": 401}
STAFF_ONLY = {
    "admin": 200,
    "coordinator": 200,
    "manager": 403,
    "manager_unassigned": 403,
    "partner_own": 403,
    "partner_other": 403,
    "viewer": 403,
    "no_key": 401,
    "unknown_key": 401,
}
ADMIN_ONLY = STAFF_ONLY | {"coordinator": 403}
#: One incident of ``partner_own``'s organisation, read by each role.
INCIDENT_READ = {
    "admin": 200,
    "coordinator": 200,
    "manager": 200,
    "manager_unassigned": 404,
    "partner_own": 200,
    "partner_other": 404,
    "viewer": 403,
    "no_key": 401,
    "unknown_key": 401,
}
INCIDENT_WRITE = INCIDENT_READ | {"manager": 403, "manager_unassigned": 403}


def _ok(expected: dict[str, int], success: int) -> dict[str, int]:
    """The same table with a different success status (201 for creations, 204 for deletes)."""
    return {role: (success if status == 200 else status) for role, status in expected.items()}


def _rows(method: str, path: str, expected: dict[str, int]) -> list[tuple[str, str, str, int]]:
    assert set(expected) == set(ROLES), f"{method} {path}: give a status for every role"
    return [(method, path, role, expected[role]) for role in ROLES]


#: (method, path template, role, expected status) — one row per endpoint and role.
ACCESS_TABLE: list[tuple[str, str, str, int]] = [
    # reference data: readable by every role, written by admins and coordinators
    *_rows("GET", "/districts", ALL_READ),
    *_rows("POST", "/districts", _ok(STAFF_ONLY, 201)),
    *_rows("GET", "/districts/{district}", ALL_READ),
    *_rows("PATCH", "/districts/{district}", STAFF_ONLY),
    *_rows("GET", "/competences", ALL_READ),
    *_rows("POST", "/competences", _ok(STAFF_ONLY, 201)),
    *_rows("GET", "/competences/{competence}", ALL_READ),
    *_rows("PATCH", "/competences/{competence}", STAFF_ONLY),
    *_rows("GET", "/organisations", ALL_READ),
    *_rows("POST", "/organisations", _ok(STAFF_ONLY, 201)),
    *_rows("GET", "/organisations/{organisation_id}", ALL_READ),
    *_rows("PATCH", "/organisations/{organisation_id}", STAFF_ONLY),
    # incidents: lists are scoped (never 404), single incidents 404 outside the caller's scope
    *_rows("GET", "/incidents", INCIDENT_READ | {"manager_unassigned": 200, "partner_other": 200}),
    *_rows(
        "POST",
        "/incidents",
        _ok(STAFF_ONLY, 201) | {"partner_own": 201, "partner_other": 201},
    ),
    *_rows("GET", "/incidents/{incident_id}", INCIDENT_READ),
    *_rows("PATCH", "/incidents/{incident_id}", INCIDENT_WRITE),
    *_rows("POST", "/incidents/{incident_id}/status", INCIDENT_WRITE),
    *_rows("GET", "/incidents/{incident_id}/events", INCIDENT_READ),
    *_rows("POST", "/incidents/{incident_id}/notes", _ok(INCIDENT_READ, 201)),
    # notes may name the reporter: a manager only offered the incident may not read them
    *_rows("GET", "/incidents/{incident_id}/notes", INCIDENT_READ | {"manager": 403}),
    # administration
    *_rows("POST", "/api-keys", _ok(ADMIN_ONLY, 201)),
    *_rows("GET", "/api-keys", ADMIN_ONLY),
    *_rows("DELETE", "/api-keys/{api_key_id}", _ok(ADMIN_ONLY, 204)),
    *_rows("GET", "/audit", ADMIN_ONLY),
    # data protection (tests/api/test_privacy.py has the rest)
    *_rows("POST", "/incidents/{incident_id}/reporter/erase", STAFF_ONLY),
    *_rows("GET", "/data-subject?email=erika@example.org", ADMIN_ONLY),
]

#: Bodies of the writing endpoints, built from the world's ids.
REQUEST_BODIES: dict[tuple[str, str], Callable[[World], dict[str, Any]]] = {
    ("POST", "/districts"): lambda w: {
        "code": "omega",
        "name": "Omega",
        "city": "Teststadt",
        "neighbours": ["alpha"],
    },
    ("PATCH", "/districts/{district}"): lambda w: {"name": "Alpha Nord"},
    ("POST", "/competences"): lambda w: {"code": "new_skill", "name": "New skill"},
    ("PATCH", "/competences/{competence}"): lambda w: {"name": "Mediation (renamed)"},
    ("POST", "/organisations"): lambda w: {"name": "New NGO", "kind": "ngo"},
    ("PATCH", "/organisations/{organisation_id}"): lambda w: {"name": "Renamed NGO"},
    ("POST", "/incidents"): lambda w: incident_body(),
    ("PATCH", "/incidents/{incident_id}"): lambda w: {"title": "Edited title"},
    ("POST", "/incidents/{incident_id}/status"): lambda w: {"status": "withdrawn"},
    ("POST", "/incidents/{incident_id}/notes"): lambda w: {"text": "Called the youth club."},
    ("POST", "/api-keys"): lambda w: {"name": "another key", "role": "viewer"},
    ("POST", "/incidents/{incident_id}/reporter/erase"): lambda w: {},
}

#: OpenAPI tags whose every operation must appear in the table for every role (an area adds
#: its tag here together with its rows).
COVERED_TAGS = {"reference", "incidents", "admin"}

#: Table placeholders that differ from the route's parameter names.
ROUTE_PARAMS = {"{district}": "{code}", "{competence}": "{code}", "{api_key_id}": "{key_id}"}


def _route_path(template: str) -> str:
    for placeholder, parameter in ROUTE_PARAMS.items():
        template = template.replace(placeholder, parameter)
    return template


_PROBLEM_TYPES = {
    401: "/problems/unauthorized",
    403: "/problems/forbidden",
    404: "/problems/not-found",
}


@dataclass
class World:
    ids: dict[str, str]
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


@pytest.fixture
def world() -> Iterator[World]:
    seed_reference()
    own = make_organisation("Own NGO")
    other = make_organisation("Other NGO")
    incident = make_incident(organisation_id=own)
    assigned = make_manager(display_name="Assigned")
    unassigned = make_manager(display_name="Unassigned")
    make_assignment(incident.id, assigned, role="lead", status="offered")
    spare_key_id = _spare_key_id()
    headers = {
        "admin": make_key("admin"),
        "coordinator": make_key("coordinator"),
        "manager": make_key("manager", manager_id=assigned),
        "manager_unassigned": make_key("manager", manager_id=unassigned),
        "partner_own": make_key("partner", organisation_id=own),
        "partner_other": make_key("partner", organisation_id=other),
        "viewer": make_key("viewer"),
        "no_key": {},
        "unknown_key": {"Authorization": "Bearer kok_" + "x" * 43},
    }
    yield World(
        ids={
            "district": "alpha",
            "competence": "mediation",
            "organisation_id": str(own),
            "incident_id": str(incident.id),
            "api_key_id": str(spare_key_id),
        },
        headers=headers,
    )


def _spare_key_id() -> uuid.UUID:
    from app.core.security import hash_key
    from app.models.system import ApiKey

    token = make_key("viewer")["Authorization"].removeprefix("Bearer ")
    with session_scope(write=False) as session:
        return session.scalars(select(ApiKey.id).where(ApiKey.key_hash == hash_key(token))).one()


def _snapshot() -> tuple[dict[str, int], list[Any]]:
    from app.models.incident import Incident
    from app.models.reference import Competence, District, Organisation
    from app.models.system import ApiKey

    with session_scope(write=False) as session:
        versions = [
            sorted(
                (str(i.id), i.version, i.status, i.title) for i in session.scalars(select(Incident))
            ),
            sorted((d.code, d.version) for d in session.scalars(select(District))),
            sorted((c.code, c.version) for c in session.scalars(select(Competence))),
            sorted((str(o.id), o.version) for o in session.scalars(select(Organisation))),
            sorted((str(k.id), k.revoked_at is None) for k in session.scalars(select(ApiKey))),
        ]
    return table_counts(), versions


@pytest.mark.parametrize(
    ("method", "path", "role", "expected"),
    ACCESS_TABLE,
    ids=[f"{m} {p} as {r}" for m, p, r, _ in ACCESS_TABLE],
)
def test_access(client, world: World, method: str, path: str, role: str, expected: int) -> None:
    body_factory = REQUEST_BODIES.get((method, path))
    before = _snapshot()
    response = client.request(
        method,
        API + path.format(**world.ids),
        json=body_factory(world) if body_factory else None,
        headers=world.headers[role],
    )
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == _PROBLEM_TYPES[expected]
        assert response.json()["status"] == expected
        assert _snapshot() == before, "a refused request changed the database"
        if expected == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
    elif method != "GET":
        assert _snapshot() != before, "an allowed write changed nothing"


def test_table_covers_every_route_and_role(client) -> None:
    """Each operation with a covered tag (from the OpenAPI document) has a row for every role,
    and each writing one a request body."""
    from app.main import app

    operations = {
        (method.upper(), path.removeprefix(API))
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if COVERED_TAGS & set(operation.get("tags", ()))
    }
    assert ("GET", "/incidents/{incident_id}") in operations
    in_table = {(m, _route_path(p), r) for m, p, r, _ in ACCESS_TABLE}
    missing = {
        (method, path, role)
        for method, path in operations
        for role in ROLES
        if (method, path, role) not in in_table
    }
    assert not missing, f"add rows to ACCESS_TABLE for: {sorted(missing)}"
    for method, path in {(m, p) for m, p, _, _ in ACCESS_TABLE}:
        if method in ("POST", "PATCH"):
            assert (method, path) in REQUEST_BODIES, f"REQUEST_BODIES lacks {method} {path}"


def test_revoked_key_is_refused_everywhere(client, world: World) -> None:
    """A revoked key is the same as no key: 401 on every endpoint, even reference reads."""
    from app.models.system import ApiKey

    with session_scope(write=False) as session:
        viewer_ids = [k.id for k in session.scalars(select(ApiKey).where(ApiKey.role == "viewer"))]
    admin = world.headers["admin"]
    for key_id in viewer_ids:
        assert client.delete(f"{API}/api-keys/{key_id}", headers=admin).status_code == 204
    response = client.get(f"{API}/districts", headers=world.headers["viewer"])
    assert response.status_code == 401
    assert response.json()["type"] == "/problems/unauthorized"


# --- API keys ----------------------------------------------------------------------------------


@pytest.fixture
def admin() -> dict[str, str]:
    seed_reference()
    return make_key("admin")


def _key_rows() -> list[Any]:
    from app.models.system import ApiKey

    with session_scope(write=False) as session:
        return list(session.scalars(select(ApiKey)))


UNKNOWN_ID = "0b6f7f8e-5c1d-4e2a-8f00-000000000000"


class TestCreateApiKey:
    def test_key_is_shown_once(self, client, admin) -> None:
        response = client.post(
            f"{API}/api-keys", json={"name": "reporting", "role": "coordinator"}, headers=admin
        )
        assert response.status_code == 201, response.text
        created = response.json()
        secret = created["key"]
        assert secret.startswith("kok_") and len(secret) >= 40
        assert set(created) == {
            "id",
            "name",
            "role",
            "organisation_id",
            "manager_id",
            "created_at",
            "key",
        }
        # the key works, with its role
        assert (
            client.get(
                f"{API}/incidents", headers={"Authorization": f"Bearer {secret}"}
            ).status_code
            == 200
        )
        # lists never show it, nor does the database hold it
        listing = client.get(f"{API}/api-keys", headers=admin)
        assert listing.status_code == 200
        assert secret not in listing.text
        assert all("key" not in item for item in listing.json()["items"])
        mine = next(i for i in listing.json()["items"] if i["id"] == created["id"])
        assert mine["prefix"] == secret[:12]
        assert mine["revoked_at"] is None
        assert all(secret not in (row.key_hash, row.prefix) for row in _key_rows())

    def test_partner_key(self, client, admin) -> None:
        organisation = make_organisation()
        response = client.post(
            f"{API}/api-keys",
            json={"name": "ngo", "role": "partner", "organisation_id": str(organisation)},
            headers=admin,
        )
        assert response.status_code == 201
        assert response.json()["organisation_id"] == str(organisation)

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "p", "role": "partner"},
            {"name": "m", "role": "manager"},
            {"name": "v", "role": "viewer", "manager_id": UNKNOWN_ID},
            {"name": "p", "role": "partner", "organisation_id": UNKNOWN_ID},
            {"name": "m", "role": "manager", "manager_id": UNKNOWN_ID},
            {"name": "x", "role": "superuser"},
            {"name": "", "role": "viewer"},
            {"name": "x", "role": "viewer", "key": "kok_chosen"},
        ],
        ids=str,
    )
    def test_refused(self, client, admin, body) -> None:
        before = table_counts()
        response = client.post(f"{API}/api-keys", json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "/problems/validation-error"
        assert table_counts() == before

    def test_manager_key(self, client, admin) -> None:
        manager = make_manager()
        response = client.post(
            f"{API}/api-keys",
            json={"name": "m", "role": "manager", "manager_id": str(manager)},
            headers=admin,
        )
        assert response.status_code == 201
        assert response.json()["manager_id"] == str(manager)


class TestRevokeApiKey:
    def test_revoked_key_gets_401_at_once(self, client, admin) -> None:
        created = client.post(
            f"{API}/api-keys", json={"name": "temp", "role": "viewer"}, headers=admin
        ).json()
        headers = {"Authorization": f"Bearer {created['key']}"}
        # used once, so the key sits in the in-process cache
        assert client.get(f"{API}/districts", headers=headers).status_code == 200
        assert client.delete(f"{API}/api-keys/{created['id']}", headers=admin).status_code == 204
        response = client.get(f"{API}/districts", headers=headers)
        assert response.status_code == 401
        assert response.json()["type"] == "/problems/unauthorized"
        listed = client.get(f"{API}/api-keys", headers=admin).json()["items"]
        assert next(i for i in listed if i["id"] == created["id"])["revoked_at"] is not None

    def test_key_read_while_the_revocation_commits_is_not_cached(self, client, admin) -> None:
        """A request that reads the key between the revocation and its commit must not keep
        the key alive in the cache afterwards."""
        from app.core.security import SYSTEM_PRINCIPAL
        from app.services.api_keys import ApiKeyService

        created = client.post(
            f"{API}/api-keys", json={"name": "temp", "role": "viewer"}, headers=admin
        ).json()
        headers = {"Authorization": f"Bearer {created['key']}"}
        with session_scope() as session:
            ApiKeyService(session).revoke(uuid.UUID(created["id"]), SYSTEM_PRINCIPAL)
            session.flush()
            # not committed yet: another request still sees the key as valid (and caches it)
            assert client.get(f"{API}/districts", headers=headers).status_code == 200
        assert client.get(f"{API}/districts", headers=headers).status_code == 401

    def test_revoke_twice(self, client, admin) -> None:
        created = client.post(
            f"{API}/api-keys", json={"name": "temp", "role": "viewer"}, headers=admin
        ).json()
        for _ in range(2):
            assert (
                client.delete(f"{API}/api-keys/{created['id']}", headers=admin).status_code == 204
            )

    def test_unknown(self, client, admin) -> None:
        response = client.delete(f"{API}/api-keys/{uuid.uuid4()}", headers=admin)
        assert response.status_code == 404
        assert response.json()["type"] == "/problems/not-found"

    def test_malformed_bearer(self, client, admin) -> None:
        token = admin["Authorization"].removeprefix("Bearer ")
        for header in (token, f"Basic {token}", "Bearer", "Bearer  ", f"Bearer {token}x"):
            response = client.get(f"{API}/districts", headers={"Authorization": header})
            assert response.status_code == 401, header
