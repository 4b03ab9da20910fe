"""Read routes whose endpoint is called without FastAPI's dependency solving
(:func:`app.api.routing.direct_call`) answer exactly as FastAPI's own path does: status, body
byte for byte, headers, access-log entries — for every role, unknown and malformed ids, and
missing or unknown keys (where FastAPI's validation answers, the direct call steps aside)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from app.api.routing import UnitOfWorkRoute
from app.core.errors import Forbidden
from tests.api.test_loop_reads import access_count
from tests.api.test_loop_reads_misc import assignments, recommendations, world  # noqa: F401
from tests.factories import make_incident, make_key, make_manager

API = "/api/v1"
#: the routes simple enough to be called directly: a change that loses one is noticed here
DIRECT = {
    "assignments_get",
    "assignments_list",
    "competences_get",
    "competences_list",
    "dispatch_candidates",
    "districts_get",
    "districts_list",
    "districts_profile",
    "incidents_get",
    "incidents_list",
    "managers_absences",
    "managers_get",
    "managers_list",
    "organisations_get",
    "organisations_list",
    "recommendations_events",
    "recommendations_get",
    "recommendations_list",
    "stats_incidents",
}
#: headers that differ between any two requests
VARYING = {"date", "x-request-id", "server-timing"}


def api_routes(app: Any) -> list[UnitOfWorkRoute]:
    out: list[UnitOfWorkRoute] = []
    stack = list(app.router.routes)
    while stack:
        route = stack.pop()
        if isinstance(route, UnitOfWorkRoute):
            out.append(route)
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and inner is not app.router:
            stack.extend(inner.routes)
    return out


@contextmanager
def fastapi_path(client: Any) -> Iterator[None]:
    """Every route through FastAPI's dependency solving, as before direct calls."""
    routes = [r for r in api_routes(client.app) if r.direct is not None]
    saved = [r.direct for r in routes]
    for route in routes:
        route.direct = None
    try:
        yield
    finally:
        for route, direct in zip(routes, saved, strict=True):
            route.direct = direct


def answer(client: Any, url: str, headers: dict[str, str]) -> tuple[Any, ...]:
    before = access_count()
    response = client.get(url, headers=headers)
    body: Any = response.content
    if response.headers.get("content-type") == "application/problem+json":
        body = response.json()
        body.pop("request_id", None)  # differs per request
    kept = sorted((k, v) for k, v in response.headers.items() if k not in VARYING)
    return response.status_code, kept, body, access_count() - before


def test_the_simple_read_routes_are_called_directly(client: Any) -> None:
    assert {r.name for r in api_routes(client.app) if r.direct is not None} == DIRECT


@pytest.fixture
def subjects(
    world: dict[str, Any],  # noqa: F811
    assignments: dict[str, Any],  # noqa: F811
    recommendations: dict[str, Any],  # noqa: F811
) -> dict[str, Any]:
    """The partner's incident with reporter data, a manager, an assignment, a recommendation."""
    incident = make_incident(
        organisation_id=str(world["organisation"]),
        reporter={"name": "Erika Muster", "contact": "erika@example.org"},
    )
    return {
        "incident": incident,
        "manager": make_manager(display_name="Mara Ümlaut"),
        "assignment": assignments["ours_second"],
        "recommendation": recommendations["overdue"],
        "first_key": assignments["first_key"],
    }


def compare(client: Any, urls: list[str], callers: list[dict[str, str]]) -> tuple[set[int], int]:
    """Each URL for each caller, directly and through FastAPI: the same answers. Returns the
    statuses seen and the access entries written."""
    seen: set[int] = set()
    logged = 0
    for url in urls:
        for headers in callers:
            direct = answer(client, url, headers)
            with fastapi_path(client):
                solved = answer(client, url, headers)
            assert direct == solved, (url, headers)
            seen.add(direct[0])
            logged += direct[3]
    return seen, logged


def test_direct_calls_answer_as_fastapi(
    client: Any,
    world: dict[str, Any],  # noqa: F811
    subjects: dict[str, Any],
) -> None:
    incident, manager = subjects["incident"], subjects["manager"]
    ids = {
        "incidents": str(incident.id),
        "managers": str(manager),
        "assignments": str(subjects["assignment"]),
        "recommendations": str(subjects["recommendation"]),
        "organisations": str(world["organisation"]),
    }
    urls = []
    for collection, known in ids.items():
        for value in (
            known,
            known.upper(),
            known.replace("-", ""),  # FastAPI reads it; the direct call steps aside
            str(uuid.uuid4()),  # unknown
            "not-a-uuid",
            known + "0",
        ):
            urls.append(f"{API}/{collection}/{value}")
    for code in ("alpha", "ALPHA", "nowhere", "x" * 65):
        urls += [f"{API}/districts/{code}", f"{API}/districts/{code}/profile"]
    for code in ("mediation", "unknown-competence", "y" * 65):
        urls.append(f"{API}/competences/{code}")
    callers = [
        world["admin"],
        world["coordinator"],
        world["viewer"],
        world["partner"],
        subjects["first_key"],
        make_key("manager", manager_id=manager),
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic abc"},
    ]
    seen, logged = compare(client, urls, callers)
    # the cases above reach every kind of answer, reporter reads logged among them
    assert {200, 401, 403, 404, 422} <= seen
    assert logged > 0


#: query strings each list route is asked with: valid filters, repeated and empty values, values
#: FastAPI refuses (the direct call steps aside), unknown parameters, a broken cursor
COMMON_QUERIES = ["", "limit=1", "limit=2&cursor=", "limit=0", "limit=abc", "limit=501",
                  "limit=3&limit=4", "cursor=garbage", "unknown=1"]  # fmt: skip
ROUTE_QUERIES = {
    "incidents": [
        "district=Alpha&status=reported&status=triaged",
        "status=", "status=bogus", "status=reported&status=bogus",
        "category=hate_speech&min_escalation=3", "min_escalation=10", "min_escalation=",
        "reported_after=2020-01-01T00:00:00Z&reported_before=2100-01-01T00:00:00%2B02:00",
        "reported_after=2020-01-01", "reported_after=12345", "reported_after=2020-01-01T00:00:00",
        "district=", "district=" + "d" * 65, "q=Muster", "q=", "organisation_id=not-a-uuid",
    ],
    "managers": [
        "district=alpha&competence=mediation&competence=x", "status=active&status=bogus",
        "language=de", "language=DE", "language=", "available=true", "available=maybe",
        "competence=" + "c" * 65,
    ],
    "assignments": ["status=offered&status=declined", "status=", "status=x",
                    "manager_id=not-a-uuid", "incident_id=00000000-0000-0000-0000-000000000000"],
    "recommendations": ["status=draft&status=x", "overdue=true", "overdue=1", "overdue=",
                        "category=bogus", "addressee=zzz", "district=alpha"],
    "districts": ["city=Erfurt", "city="],
    "competences": [],
    "organisations": [],
    "stats/incidents": ["group_by=district", "group_by=status&district=alpha", "group_by=bogus",
                        "reported_after=yesterday"],
}  # fmt: skip


def test_direct_calls_with_query_values_answer_as_fastapi(
    client: Any,
    world: dict[str, Any],  # noqa: F811
    subjects: dict[str, Any],
) -> None:
    incident, manager = subjects["incident"], subjects["manager"]
    make_incident(title="Second", reporter={"name": "Max Muster", "contact": "max@example.org"})
    urls = [
        f"{API}/{collection}?{query}"
        for collection, queries in ROUTE_QUERIES.items()
        for query in [*COMMON_QUERIES, *queries]
    ]
    for query in ("", "limit=3&fallback=none", "fallback=bogus", "limit=-1", "limit=x"):
        urls.append(f"{API}/incidents/{incident.id}/candidates?{query}")
    for query in ("", "limit=1", "limit=0", "cursor=x"):
        urls.append(f"{API}/managers/{manager}/absences?{query}")
        urls.append(f"{API}/recommendations/{subjects['recommendation']}/events?{query}")
        urls.append(f"{API}/managers/not-a-uuid/absences?{query}")
        urls.append(f"{API}/recommendations/{uuid.uuid4()}/events?{query}")  # unknown
    callers = [
        world["admin"],
        world["coordinator"],
        world["viewer"],
        world["partner"],
        make_key("manager", manager_id=manager),
        {**world["admin"], "Accept": "text/csv"},
        {},
        {"Authorization": "Bearer not-a-key"},
    ]
    seen, logged = compare(client, urls, callers)
    assert {200, 400, 401, 403, 404, 422} <= seen
    assert logged > 0  # reporter reads among them, logged alike on both paths


def test_overridden_dependencies_take_fastapi_path(client: Any, world: dict[str, Any]) -> None:  # noqa: F811
    incident = make_incident()
    (route,) = [r for r in api_routes(client.app) if r.name == "incidents_get"]
    (check,) = [d.call for d in route.dependant.dependencies]

    async def nobody() -> None:
        raise Forbidden("Overridden in a test.")

    url = f"{API}/incidents/{incident.id}"
    assert client.get(url, headers=world["admin"]).status_code == 200
    client.app.dependency_overrides[check] = nobody
    try:
        response = client.get(url, headers=world["admin"])
    finally:
        client.app.dependency_overrides.clear()
    assert response.status_code == 403
    assert response.json()["detail"] == "Overridden in a test."
