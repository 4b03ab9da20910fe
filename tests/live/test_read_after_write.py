"""Read-after-write over a real connection, for every write operation of the API document.

Each write operation (POST, PUT, PATCH, DELETE) of ``openapi/openapi.json`` has a scenario in
:data:`SCENARIOS`, keyed by its ``operationId``: it makes the write over HTTP against ``uvicorn``
and reads its effect back at once, with the next request (which, with three worker processes,
usually lands in another process). A 2xx is a promise that the change is committed; a read that
misses it is a lost acknowledgement. A write operation added to the document without a scenario
fails :func:`test_every_write_operation_has_a_scenario`.

Set-up records are written directly (``tests.factories``, committed); only the write under test
and its read-back go over the wire.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import (
    make_dispatch_manager,
    make_key,
    make_organisation,
    make_triaged_incident,
    manager_body,
    recommendation_body,
    seed_reference,
)
from tests.live.conftest import WORKER_COUNTS, LiveServer

ROOT = Path(__file__).resolve().parents[2]
WRITE_METHODS = ("post", "put", "patch", "delete")
API = "/api/v1"
#: Repetitions of every scenario (each with fresh set-up): a race shows in some of them.
REPETITIONS = 3
PUBLIC_TARGET = "https://93.184.216.34/hooks/kokoma"


def write_operations() -> dict[str, tuple[str, str]]:
    """``operationId → (METHOD, path)`` of every write operation in the committed document."""
    document = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    return {
        operation["operationId"]: (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method in WRITE_METHODS
    }


@dataclass
class Api:
    """An HTTP client on the live server with an admin key, and set-up shortcuts."""

    client: httpx.Client
    admin: dict[str, str]
    counter: list[int] = field(default_factory=lambda: [0])

    def unique(self, prefix: str) -> str:
        self.counter[0] += 1
        return f"{prefix}{self.counter[0]}{uuid.uuid4().hex[:6]}"

    def write(
        self,
        method: str,
        url: str,
        expected: int,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        response = self.client.request(
            method, API + url, json=json_body, headers=headers or self.admin, **kwargs
        )
        assert response.status_code == expected, f"{method} {url}: {response.text}"
        return response

    def read(self, url: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        response = self.client.get(API + url, headers=headers or self.admin, params=params)
        assert response.status_code == 200, f"read-after-write GET {url}: {response.text}"
        return response.json()

    def incident(self) -> dict[str, Any]:
        body = {
            "title": "Graffiti at the station",
            "district": "alpha",
            "category": "right_wing_extremism",
            "escalation_level": 3,
            "required_competences": ["mediation"],
            "languages": ["de"],
            "reporter": {
                "name": "Erika Muster",
                "contact": "erika@example.org",
                "anonymous": False,
            },
        }
        return dict(self.write("POST", "/incidents", 201, json_body=body).json())

    def offer(self) -> tuple[dict[str, Any], dict[str, str]]:
        """An offered lead assignment and the manager's key."""
        incident = make_triaged_incident()
        manager = make_dispatch_manager(max_open_assignments=5)
        created = self.write(
            "POST",
            "/assignments",
            201,
            json_body={"incident_id": str(incident), "manager_id": str(manager), "role": "lead"},
        ).json()
        return created, make_key("manager", manager_id=manager)

    def manager(self, **overrides: Any) -> dict[str, Any]:
        return dict(
            self.write("POST", "/managers", 201, json_body=manager_body(**overrides)).json()
        )

    def recommendation(self) -> dict[str, Any]:
        steering = make_organisation("Lenkungsgruppe", "steering_group")
        city = make_organisation("Amt", "city_department")
        body = recommendation_body(steering, city)
        body.pop("due_on")  # the live server runs on the real clock
        return dict(self.write("POST", "/recommendations", 201, json_body=body).json())


Scenario = Callable[[Api], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(operation_id: str) -> Callable[[Scenario], Scenario]:
    def register(function: Scenario) -> Scenario:
        SCENARIOS[operation_id] = function
        return function

    return register


# --- access ------------------------------------------------------------------------------------


@scenario("api_keys_create")
def _api_keys_create(api: Api) -> None:
    created = api.write(
        "POST", "/api-keys", 201, json_body={"name": api.unique("key"), "role": "viewer"}
    ).json()
    me = api.read("/me", headers={"Authorization": f"Bearer {created['key']}"})
    assert me["role"] == "viewer"


@scenario("api_keys_revoke")
def _api_keys_revoke(api: Api) -> None:
    created = api.write(
        "POST", "/api-keys", 201, json_body={"name": api.unique("key"), "role": "viewer"}
    ).json()
    api.write("DELETE", f"/api-keys/{created['id']}", 204)
    refused = api.client.get(f"{API}/me", headers={"Authorization": f"Bearer {created['key']}"})
    assert refused.status_code == 401, refused.text


# --- dispatch ----------------------------------------------------------------------------------


@scenario("assignments_create")
def _assignments_create(api: Api) -> None:
    created, _ = api.offer()
    assert api.read(f"/assignments/{created['id']}")["status"] == "offered"
    assert api.read(f"/incidents/{created['incident_id']}")["status"] == "dispatched"


@scenario("assignments_accept")
def _assignments_accept(api: Api) -> None:
    created, manager = api.offer()
    api.write("POST", f"/assignments/{created['id']}/accept", 200, headers=manager)
    assert api.read(f"/assignments/{created['id']}")["status"] == "accepted"
    assert api.read(f"/incidents/{created['incident_id']}")["status"] == "in_progress"


@scenario("assignments_complete")
def _assignments_complete(api: Api) -> None:
    created, manager = api.offer()
    api.write("POST", f"/assignments/{created['id']}/accept", 200, headers=manager)
    api.write(
        "POST",
        f"/assignments/{created['id']}/complete",
        200,
        headers=manager,
        json_body={"outcome": "Talked it through with both sides."},
    )
    assert api.read(f"/assignments/{created['id']}")["status"] == "completed"


@scenario("assignments_decline")
def _assignments_decline(api: Api) -> None:
    created, manager = api.offer()
    api.write(
        "POST",
        f"/assignments/{created['id']}/decline",
        200,
        headers=manager,
        json_body={"reason": "away that week"},
    )
    assert api.read(f"/assignments/{created['id']}")["status"] == "declined"


@scenario("assignments_withdraw")
def _assignments_withdraw(api: Api) -> None:
    created, _ = api.offer()
    api.write(
        "POST",
        f"/assignments/{created['id']}/withdraw",
        200,
        json_body={"reason": "handled by the district office"},
    )
    assert api.read(f"/assignments/{created['id']}")["status"] == "withdrawn"


@scenario("dispatch_auto")
def _dispatch_auto(api: Api) -> None:
    incident = make_triaged_incident()
    make_dispatch_manager(max_open_assignments=5)
    api.write("POST", "/dispatch/auto", 200, json_body={"incident_ids": [str(incident)]})
    offered = api.read("/assignments", incident_id=str(incident))["items"]
    assert [a["status"] for a in offered] == ["offered"]
    assert api.read(f"/incidents/{incident}")["status"] == "dispatched"


# --- reference data ----------------------------------------------------------------------------


@scenario("competences_create")
def _competences_create(api: Api) -> None:
    code = api.unique("skill")
    api.write("POST", "/competences", 201, json_body={"code": code, "name": "Skill"})
    assert api.read(f"/competences/{code}")["name"] == "Skill"


@scenario("competences_update")
def _competences_update(api: Api) -> None:
    code = api.unique("skill")
    api.write("POST", "/competences", 201, json_body={"code": code, "name": "Skill"})
    api.write("PATCH", f"/competences/{code}", 200, json_body={"name": "Renamed"})
    assert api.read(f"/competences/{code}")["name"] == "Renamed"


@scenario("districts_create")
def _districts_create(api: Api) -> None:
    code = api.unique("district")
    api.write(
        "POST",
        "/districts",
        201,
        json_body={"code": code, "name": "New", "city": "Teststadt", "neighbours": ["alpha"]},
    )
    assert api.read(f"/districts/{code}")["name"] == "New"
    assert code in api.read("/districts/alpha")["neighbours"]


@scenario("districts_update")
def _districts_update(api: Api) -> None:
    code = api.unique("district")
    api.write(
        "POST", "/districts", 201, json_body={"code": code, "name": "New", "city": "Teststadt"}
    )
    api.write("PATCH", f"/districts/{code}", 200, json_body={"name": "Renamed"})
    assert api.read(f"/districts/{code}")["name"] == "Renamed"


@scenario("organisations_create")
def _organisations_create(api: Api) -> None:
    created = api.write(
        "POST", "/organisations", 201, json_body={"name": "Verein", "kind": "ngo"}
    ).json()
    assert api.read(f"/organisations/{created['id']}")["name"] == "Verein"


@scenario("organisations_update")
def _organisations_update(api: Api) -> None:
    created = api.write(
        "POST", "/organisations", 201, json_body={"name": "Verein", "kind": "ngo"}
    ).json()
    api.write("PATCH", f"/organisations/{created['id']}", 200, json_body={"kind": "other"})
    assert api.read(f"/organisations/{created['id']}")["kind"] == "other"


# --- imports -----------------------------------------------------------------------------------


@scenario("imports_incidents")
def _imports_incidents(api: Api) -> None:
    external_id = api.unique("ext-")
    row = {
        "external_id": external_id,
        "source": "import",
        "title": "Imported",
        "district": "alpha",
        "category": "other",
        "escalation_level": 2,
    }
    result = api.write(
        "POST",
        "/imports/incidents",
        200,
        content=json.dumps(row) + "\n",
        headers={**api.admin, "Content-Type": "application/x-ndjson"},
    ).json()
    assert result["created"] == 1, result
    listed = api.read("/incidents", limit=200)["items"]
    assert external_id in {incident.get("external_id") for incident in listed}


@scenario("imports_managers")
def _imports_managers(api: Api) -> None:
    email = f"{api.unique('imported')}@example.org"
    row = {"display_name": "Imported Manager", "email": email, "home_district": "alpha"}
    result = api.write(
        "POST",
        "/imports/managers",
        200,
        content=json.dumps(row) + "\n",
        headers={**api.admin, "Content-Type": "application/x-ndjson"},
    ).json()
    assert result["created"] == 1, result
    listed = api.read("/managers", limit=200)["items"]
    assert email in {manager.get("email") for manager in listed}


# --- incidents ---------------------------------------------------------------------------------


@scenario("incidents_create")
def _incidents_create(api: Api) -> None:
    created = api.incident()
    assert api.read(f"/incidents/{created['id']}")["reference"] == created["reference"]


@scenario("incidents_update")
def _incidents_update(api: Api) -> None:
    created = api.incident()
    api.write("PATCH", f"/incidents/{created['id']}", 200, json_body={"escalation_level": 4})
    assert api.read(f"/incidents/{created['id']}")["escalation_level"] == 4


@scenario("incidents_add_note")
def _incidents_add_note(api: Api) -> None:
    created = api.incident()
    api.write("POST", f"/incidents/{created['id']}/notes", 201, json_body={"text": "Called."})
    notes = api.read(f"/incidents/{created['id']}/notes")["items"]
    assert [note["text"] for note in notes] == ["Called."]


@scenario("incidents_reporter_erase")
def _incidents_reporter_erase(api: Api) -> None:
    created = api.incident()
    assert created["reporter"] is not None
    api.write("POST", f"/incidents/{created['id']}/reporter/erase", 200)
    reporter = api.read(f"/incidents/{created['id']}")["reporter"]
    assert reporter["name"] is None and reporter["contact"] is None


@scenario("incidents_set_status")
def _incidents_set_status(api: Api) -> None:
    created = api.incident()
    api.write("POST", f"/incidents/{created['id']}/status", 200, json_body={"status": "triaged"})
    assert api.read(f"/incidents/{created['id']}")["status"] == "triaged"


# --- managers ----------------------------------------------------------------------------------


@scenario("managers_create")
def _managers_create(api: Api) -> None:
    created = api.manager()
    assert api.read(f"/managers/{created['id']}")["email"] == created["email"]


@scenario("managers_update")
def _managers_update(api: Api) -> None:
    created = api.manager()
    api.write("PATCH", f"/managers/{created['id']}", 200, json_body={"display_name": "Renamed"})
    assert api.read(f"/managers/{created['id']}")["display_name"] == "Renamed"


@scenario("managers_add_absence")
def _managers_add_absence(api: Api) -> None:
    created = api.manager()
    absence = api.write(
        "POST",
        f"/managers/{created['id']}/absences",
        201,
        json_body={"starts_on": "2030-07-01", "ends_on": "2030-07-14"},
    ).json()
    absences = api.read(f"/managers/{created['id']}/absences")["items"]
    assert [a["id"] for a in absences] == [absence["id"]]


@scenario("managers_delete_absence")
def _managers_delete_absence(api: Api) -> None:
    created = api.manager()
    absence = api.write(
        "POST",
        f"/managers/{created['id']}/absences",
        201,
        json_body={"starts_on": "2030-07-01", "ends_on": "2030-07-14"},
    ).json()
    api.write("DELETE", f"/managers/{created['id']}/absences/{absence['id']}", 204)
    assert api.read(f"/managers/{created['id']}/absences")["items"] == []


@scenario("managers_set_status")
def _managers_set_status(api: Api) -> None:
    created = api.manager(status="active")
    api.write("POST", f"/managers/{created['id']}/status", 200, json_body={"status": "paused"})
    assert api.read(f"/managers/{created['id']}")["status"] == "paused"


@scenario("managers_erase")
def _managers_erase(api: Api) -> None:
    created = api.manager(status="active")
    api.write("POST", f"/managers/{created['id']}/status", 200, json_body={"status": "retired"})
    api.write("POST", f"/managers/{created['id']}/erase", 200)
    erased = api.read(f"/managers/{created['id']}")
    assert erased["email"] != created["email"]
    assert erased["display_name"] != created["display_name"]


# --- recommendations ---------------------------------------------------------------------------


@scenario("recommendations_create")
def _recommendations_create(api: Api) -> None:
    created = api.recommendation()
    assert api.read(f"/recommendations/{created['id']}")["title"] == created["title"]


@scenario("recommendations_update")
def _recommendations_update(api: Api) -> None:
    created = api.recommendation()
    api.write("PATCH", f"/recommendations/{created['id']}", 200, json_body={"progress": 40})
    assert api.read(f"/recommendations/{created['id']}")["progress"] == 40


@scenario("recommendations_set_status")
def _recommendations_set_status(api: Api) -> None:
    created = api.recommendation()
    api.write(
        "POST", f"/recommendations/{created['id']}/status", 200, json_body={"status": "submitted"}
    )
    assert api.read(f"/recommendations/{created['id']}")["status"] == "submitted"


# --- webhooks ----------------------------------------------------------------------------------


def _subscribe(api: Api) -> dict[str, Any]:
    return dict(
        api.write(
            "POST",
            "/webhooks",
            201,
            json_body={"url": PUBLIC_TARGET, "events": ["recommendation.status_changed"]},
        ).json()
    )


@scenario("webhooks_create")
def _webhooks_create(api: Api) -> None:
    created = _subscribe(api)
    assert api.read(f"/webhooks/{created['id']}")["url"] == PUBLIC_TARGET


@scenario("webhooks_update")
def _webhooks_update(api: Api) -> None:
    created = _subscribe(api)
    api.write("PATCH", f"/webhooks/{created['id']}", 200, json_body={"active": False})
    assert api.read(f"/webhooks/{created['id']}")["active"] is False


@scenario("webhooks_delete")
def _webhooks_delete(api: Api) -> None:
    created = _subscribe(api)
    api.write("DELETE", f"/webhooks/{created['id']}", 204)
    gone = api.client.get(f"{API}/webhooks/{created['id']}", headers=api.admin)
    assert gone.status_code == 404, gone.text


# --- the tests ---------------------------------------------------------------------------------


def test_every_write_operation_has_a_scenario() -> None:
    operations = write_operations()
    missing = sorted(set(operations) - set(SCENARIOS))
    assert missing == [], (
        f"write operations without a read-after-write scenario: "
        f"{[(name, *operations[name]) for name in missing]}"
    )
    assert sorted(set(SCENARIOS) - set(operations)) == [], "scenarios of removed operations"


@pytest.mark.parametrize("workers", WORKER_COUNTS)
@pytest.mark.parametrize("operation_id", sorted(write_operations()))
def test_read_after_write(live_server: LiveServer, workers: int, operation_id: str) -> None:
    seed_reference()
    url = live_server(workers=workers)
    with httpx.Client(base_url=url, timeout=30) as client:
        api = Api(client, make_key("admin"))
        for _ in range(REPETITIONS):
            SCENARIOS[operation_id](api)
