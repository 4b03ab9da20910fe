"""Read routes whose endpoint is called without FastAPI's dependency solving
(:func:`app.api.routing.direct_call`) answer exactly as FastAPI's own path does: status, body
byte for byte, headers, access-log entries — for every role, unknown and malformed ids, and
missing or unknown keys (where FastAPI's validation answers, the direct call steps aside)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.api.routing import UnitOfWorkRoute
from app.core.errors import Forbidden
from tests.api.test_loop_reads import access_count
from tests.api.test_loop_reads_misc import assignments, recommendations, world  # noqa: F401
from tests.factories import make_incident, make_key, make_manager

API = "/api/v1"
#: the routes simple enough to be called directly: a change that loses one is noticed here
DIRECT = {
    "assignments_get",
    "competences_get",
    "districts_get",
    "districts_profile",
    "incidents_get",
    "managers_get",
    "organisations_get",
    "recommendations_get",
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


def test_direct_calls_answer_as_fastapi(
    client: Any,
    world: dict[str, Any],  # noqa: F811
    assignments: dict[str, Any],  # noqa: F811
    recommendations: dict[str, Any],  # noqa: F811
) -> None:
    incident = make_incident(
        organisation_id=str(world["organisation"]),
        reporter={"name": "Erika Muster", "contact": "erika@example.org"},
    )
    manager = make_manager(display_name="Mara Ümlaut")
    ids = {
        "incidents": str(incident.id),
        "managers": str(manager),
        "assignments": str(assignments["ours_second"]),
        "recommendations": str(recommendations["overdue"]),
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
        assignments["first_key"],
        make_key("manager", manager_id=manager),
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic abc"},
    ]
    seen: set[int] = set()
    for url in urls:
        for headers in callers:
            direct = answer(client, url, headers)
            with fastapi_path(client):
                solved = answer(client, url, headers)
            assert direct == solved, (url, headers)
            seen.add(direct[0])
    # the cases above reach every kind of answer, reporter reads logged among them
    assert {200, 401, 403, 404, 422} <= seen


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
