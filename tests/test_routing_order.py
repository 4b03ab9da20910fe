"""The routers read most are matched first (app.api.routing.match_hot_routers_first): every
documented path must still reach the same operation as in declaration order."""

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
