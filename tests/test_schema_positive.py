"""Schemathesis's positive phase: every request the document calls valid is accepted for its shape.

Schemathesis generates only schema-valid requests (``generation.mode = positive``) for every
operation of ``/openapi.json`` and sends them in-process with an admin key (the role that may call
almost everything). A refusal is a failure when it is about the request's *shape* — a 422 from
validation, or any 400 other than an unreadable cursor — because then the document allows
something the server does not. What a schema cannot express stays allowed and is documented per
operation: 404 (a generated id names nothing), 409 (a business conflict: lifecycle, capacity,
duplicates), 412 (a stale If-Match), 403 (an admin key is not a manager or a partner), 406, and a
422 whose errors are all business rules about values that are well-formed but unknown or not
allowed now (``unknown_reference`` and the like, listed in :data:`BUSINESS_422`).

Bounded: ``KOKOMA_POSITIVE_EXAMPLES`` (default 3) examples per operation, derandomised.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from app.main import app
from tests.test_fuzz import World, _enrich
from tests.test_fuzz import world as world  # the seeded world fixture

EXAMPLES = int(os.environ.get("KOKOMA_POSITIVE_EXAMPLES", "3"))

#: Hypothesis warns when the global ``random`` state changes while it draws a case. On PostgreSQL
#: it does change then, but in another thread: the app runs on the test client's event-loop
#: thread, where psycopg_pool jitters each new connection's lifetime with ``random.random()``
#: (``_set_connection_expiry_date``) while Hypothesis draws the next case here. The strategies
#: themselves use no ``random`` (derandomised); the warning names the wrong culprit.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    app,
    config=SchemathesisConfig.from_dict(
        {
            # NUL (\u0000) in text is refused everywhere (422, stated in the document's description):
            # a rule for every string, which the schemas do not repeat per property.
            "generation": {"mode": "positive", "allow-x00": False},
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        }
    ),
)

#: Refusals of well-formed input that are business rules, not shape: the status codes a schema
#: cannot rule out.
BUSINESS_STATUSES = {403, 404, 406, 409, 412}
#: ``errors[].type`` of a 422 that is a rule about a well-formed value: a district, competence,
#: organisation or manager that does not exist; a webhook target on a private or loopback
#: network (the field's description says so); the content of an import (CSV/NDJSON text, which a
#: schema types as a string).
BUSINESS_422 = {"unknown_reference", "target_refused", "unreadable"}
#: Rules across fields or items, stated in the request schema's descriptions (where — a prefix
#: of ``loc`` — and the start of ``msg`` of the error).
CROSS_FIELD_RULES = {
    (("body",), "Value error, ends_on must not be before starts_on"),
    (("body",), "Value error, a partner key needs an organisation_id"),
    (("body",), "Value error, a manager key needs a manager_id"),
    (("body",), "Value error, only a manager key is bound to a manager_id"),
    (("body", "competences"), "Value error, competence listed more than once"),
    (("body", "competences"), "Value error, expires_on must not be before certified_on"),
    (("body", "boundary", "coordinates"), "Value error, each position is [lon, lat]"),
    (
        ("body", "email"),
        "value is not a valid email address: The part after the @-sign is a "
        "special-use or reserved name",
    ),
}
#: Problem types about the *content* of a body the schema types as text (CSV/NDJSON imports).
BUSINESS_TYPES = {"/problems/unreadable-import"}


def _business_error(error: dict[str, Any]) -> bool:
    return error.get("type") in BUSINESS_422 or (
        any(
            tuple(error.get("loc") or ())[: len(loc)] == loc
            and str(error.get("msg", "")).startswith(msg)
            for loc, msg in CROSS_FIELD_RULES
        )
    )


def _refused_for_shape(response: Any) -> str | None:
    status = response.status_code
    if status < 400 or status in BUSINESS_STATUSES:
        return None
    if status >= 500:
        return f"{status}: server error"
    body = response.json() if response.content else {}
    if body.get("type") in BUSINESS_TYPES:
        return None
    if status == 400 and body.get("type") == "/problems/invalid-cursor":
        return None  # an opaque cursor the server did not issue
    if status == 422 and all(_business_error(error) for error in body.get("errors") or [{}]):
        return None
    return f"{status} {body.get('type')}: {body.get('detail')} {body.get('errors')}"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_schema_valid_requests_are_accepted(case: schemathesis.Case, world: World) -> None:
    _enrich(case, world)
    response = case.call(headers={**world.headers["admin"], "X-Request-ID": "positive"})
    problem = _refused_for_shape(response)
    assert problem is None, (
        f"{case.operation.label} refused schema-valid input: {problem}\n{case.as_curl_command()}"
    )
