"""Drives kokoma end to end through the Python client that openapi-python-client generates from
openapi/openapi.json (package ``kokoma_client``; see tests/live/test_generated_clients.py).

Type-checked with ``mypy --strict`` together with the generated package: no casts, no
``Any``, no hand-set ``Authorization`` header — the client's ``token`` is the API key.

Usage: python python_driver.py BASE_URL ADMIN_KEY
"""

from __future__ import annotations

import datetime
import sys
import uuid

from kokoma_client import AuthenticatedClient
from kokoma_client.api.admin import api_keys_create
from kokoma_client.api.dispatch import assignments_accept, assignments_create, dispatch_candidates
from kokoma_client.api.incidents import incidents_create, incidents_list, incidents_set_status
from kokoma_client.api.managers import managers_create
from kokoma_client.models import (
    ApiKeyCreate,
    AssignmentCreate,
    AssignmentRole,
    AssignmentStatus,
    CompetenceHoldingIn,
    IncidentCategory,
    IncidentCreate,
    IncidentStatus,
    IncidentStatusChange,
    InitialManagerStatus,
    LanguageCode,
    ManagerCreate,
    Problem,
    Role,
)


def fail(step: str, problem: Problem | None) -> None:
    detail = "no body" if problem is None else f"{problem.status} {problem.type_}: {problem.detail}"
    raise SystemExit(f"{step} failed: {detail}")


def main(base_url: str, admin_key: str) -> None:
    run = uuid.uuid4().hex[:8]
    admin = AuthenticatedClient(base_url=base_url, token=admin_key, raise_on_unexpected_status=True)

    # 1. register an incident
    created = incidents_create.sync(
        client=admin,
        body=IncidentCreate(
            title=f"Threats at the youth club ({run})",
            district="alpha",
            category=IncidentCategory.RIGHT_WING_EXTREMISM,
            escalation_level=3,
            required_competences=["mediation"],
            languages=[LanguageCode.DE],
        ),
    )
    if created is None or isinstance(created, Problem):
        return fail("create incident", created)
    print("created", created.reference)

    # 2. triage it
    triaged = incidents_set_status.sync(
        created.id, client=admin, body=IncidentStatusChange(status=IncidentStatus.TRIAGED)
    )
    if triaged is None or isinstance(triaged, Problem):
        return fail("triage", triaged)
    assert triaged.status is IncidentStatus.TRIAGED

    # 3. a filtered list: typed items
    page = incidents_list.sync(
        client=admin, status=[IncidentStatus.TRIAGED], district="alpha", q=run, limit=10
    )
    if page is None or isinstance(page, Problem):
        return fail("list", page)
    references = [item.reference for item in page.items]
    assert references == [created.reference], references
    assert all(item.status is IncidentStatus.TRIAGED for item in page.items)

    # 4. a manager who fits, and the candidates
    manager = managers_create.sync(
        client=admin,
        body=ManagerCreate(
            display_name=f"Mara Beispiel {run}",
            email=f"mara-{run}@example.org",
            home_district="alpha",
            status=InitialManagerStatus.ACTIVE,
            languages=[LanguageCode.DE],
            competences=[
                CompetenceHoldingIn(code="mediation", certified_on=datetime.date(2025, 1, 1))
            ],
        ),
    )
    if manager is None or isinstance(manager, Problem):
        return fail("create manager", manager)
    candidates = dispatch_candidates.sync(created.id, client=admin, limit=50)
    if candidates is None or isinstance(candidates, Problem):
        return fail("candidates", candidates)
    ranked = [candidate.manager_id for candidate in candidates.candidates]
    assert manager.id in ranked, ranked

    # 5. offer the lead slot to that manager
    offer = assignments_create.sync(
        client=admin,
        body=AssignmentCreate(
            incident_id=created.id, manager_id=manager.id, role=AssignmentRole.LEAD
        ),
    )
    if offer is None or isinstance(offer, Problem):
        return fail("offer", offer)

    # 6. the manager accepts, with a key of their own
    key = api_keys_create.sync(
        client=admin,
        body=ApiKeyCreate(name=f"manager {run}", role=Role.MANAGER, manager_id=manager.id),
    )
    if key is None or isinstance(key, Problem):
        return fail("manager key", key)
    as_manager = AuthenticatedClient(base_url=base_url, token=key.key)
    accepted = assignments_accept.sync(offer.id, client=as_manager)
    if accepted is None or isinstance(accepted, Problem):
        return fail("accept", accepted)
    assert accepted.status is AssignmentStatus.ACCEPTED

    # 7. the CSV export: the same list, asked for as text/csv (the client's own connection, so
    #    its auth; the generated parser reads JSON, so the body is read as text here)
    export = admin.get_httpx_client().get(
        "/api/v1/incidents", params={"q": run}, headers={"Accept": "text/csv"}
    )
    assert export.status_code == 200, export.text
    assert export.headers["content-type"].startswith("text/csv")
    lines = export.text.splitlines()
    assert len(lines) == 2 and created.reference in lines[1], lines
    print("exported", len(lines) - 1, "incident(s) as CSV")
    print("python client: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
