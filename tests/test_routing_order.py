"""The routers read most are matched first (app.api.routing.match_hot_routers_first) and each
router turns down the paths none of its routes can match (decline_foreign_paths): every
documented path must still reach the same operation as in declaration order with FastAPI's own
matching, and a redirect or a 404/405 must stay the same."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import pytest

from app.main import create_app

PARAM = re.compile(r"\{[^}]+\}")


def _resolved(app: Any, method: str, path: str) -> str | None:
    """The name of the route the app's router picks for ``method path`` (None: no route)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "app": app,
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        return None

    # No credentials: the route refuses — after routing, which is all this looks at.
    with contextlib.suppress(Exception):
        asyncio.run(app.router(scope, receive, send))
    route = scope.get("route")
    return getattr(route, "name", None)


def _samples(paths: list[str]) -> list[str]:
    """Each documented path with its parameters filled by an id, a word, and every literal
    segment of the API (the values that could make two routers' paths overlap)."""
    words = sorted({seg for p in paths for seg in p.split("/") if seg and not PARAM.search(seg)})
    values = ["00000000-0000-0000-0000-000000000001", "x", *words]
    samples: set[str] = set()
    for path in paths:
        params = PARAM.findall(path)
        for position in range(len(params)):
            for value in values:
                sample = path
                for n, param in enumerate(params):
                    sample = sample.replace(param, value if n == position else "x", 1)
                samples.add(sample)
        if not params:
            samples.add(path)
    return sorted(samples)


@pytest.fixture(scope="module")
def apps() -> tuple[Any, Any]:
    matching = create_app()
    declared = create_app()
    declared.router.routes[:] = declared.state.documented_routes
    for route in declared.router.routes:
        vars(route).pop("matches", None)  # FastAPI's own scan
    return matching, declared


def test_hot_routers_come_first(apps: tuple[Any, Any]) -> None:
    matching, declared = apps
    assert matching.router.routes != declared.router.routes
    first = matching.router.routes[0]
    assert any(
        getattr(r, "path", "").startswith("/incidents") for r in first.original_router.routes
    )


def test_every_documented_path_reaches_the_same_operation(apps: tuple[Any, Any]) -> None:
    matching, declared = apps
    spec = matching.openapi()
    methods = {m.upper() for item in spec["paths"].values() for m in item}
    reached: set[str] = set()
    checked = 0
    for sample in _samples(list(spec["paths"])):
        for method in sorted(methods):
            name = _resolved(matching, method, sample)
            assert name == _resolved(declared, method, sample), (method, sample)
            reached.add(name or "")
            checked += 1
    assert checked > 1000
    operations = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    assert operations <= reached  # every operation was reached by some sample


def test_the_document_keeps_the_declaration_order(apps: tuple[Any, Any]) -> None:
    matching, declared = apps
    declared.openapi_schema = None
    assert list(matching.openapi()["paths"]) == list(declared.openapi()["paths"])


def test_routers_turn_down_foreign_paths_unscanned(apps: tuple[Any, Any]) -> None:
    matching, declared = apps
    declining = [route for route in matching.router.routes if "matches" in vars(route)]
    assert len(declining) >= 12  # every included router: none starts with a parameter
    assert not any("matches" in vars(route) for route in declared.router.routes)
    first = matching.router.routes[0]  # the incidents router
    scope = {"type": "http", "path": "/api/v1/districts/x", "root_path": "", "method": "GET"}
    assert first.matches(scope)[0].name == "NONE"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/incidents/"),  # a redirect to the path without the slash
        ("GET", "/api/v1/districts/alpha/"),
        ("GET", "/healthz/"),
        ("DELETE", "/api/v1/incidents"),  # 405: a route of that path, not of that method
        ("GET", "/api/v1/nothing"),  # 404
        ("GET", "/api//v1/incidents"),
        ("GET", "/"),
    ],
)
def test_redirects_and_refusals_stay_the_same(
    apps: tuple[Any, Any], method: str, path: str
) -> None:
    from fastapi.testclient import TestClient

    answers = []
    for app in apps:
        with TestClient(app) as client:
            response = client.request(method, path, follow_redirects=False)
            answers.append(
                (response.status_code, response.headers.get("location"), response.content)
            )
    assert answers[0] == answers[1]
    assert answers[0][0] in {307, 401, 404, 405}


def test_behind_a_path_prefix_the_same_routes_answer(apps: tuple[Any, Any]) -> None:
    """Served under a root path (a proxy's prefix): the routers look at the path below it."""
    from fastapi.testclient import TestClient

    answers = []
    for app in apps:
        with TestClient(app, root_path="/kokoma") as client:
            answers.append(
                [
                    (r.status_code, r.content)
                    for r in (
                        client.get("/healthz"),
                        client.get("/api/v1/competences"),
                        client.get("/api/v1/nothing"),
                    )
                ]
            )
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [200, 401, 404]
