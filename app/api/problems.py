"""OpenAPI declarations of the problem+json responses a route may give."""

from __future__ import annotations

from typing import Any

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    400: "Bad request (e.g. an invalid cursor)",
    401: "No or unknown API key",
    403: "The key's role may not do this",
    404: "Not found (or not visible to this key)",
    409: "Conflict with the current state",
    412: "If-Match names a stale version",
    408: "The body did not arrive in time",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Validation error",
    429: "Rate limit for this API key exceeded (see Retry-After)",
    503: "The database is unavailable (see Retry-After)",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: 401, 422, 429 and 503 always, plus the given status codes."""
    wanted = sorted({401, 422, 429, 503, *codes})
    return {
        code: {
            "description": _DESCRIPTIONS.get(code, "Problem"),
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in wanted
    }
