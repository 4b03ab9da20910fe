"""OpenAPI declarations of the problem+json responses a route may give.

Descriptions come from the general problem type of each status in the registry
(:data:`app.core.problems.GENERAL`).
"""

from __future__ import annotations

from typing import Any

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem
from app.core.problems import for_status

#: Every route may answer these: no or unknown key, invalid request, rate limit, database down.
ALWAYS = (401, 422, 429, 503)


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: 401, 422, 429 and 503 always, plus the given status codes."""
    wanted = sorted({*ALWAYS, *codes})
    return {
        code: {
            "description": for_status(code).description,
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in wanted
    }
