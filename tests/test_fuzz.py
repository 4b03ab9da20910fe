"""Property-based API fuzzing with schemathesis against the app's own OpenAPI document.

Every operation of ``/openapi.json`` (new routes are covered as soon as they are registered) gets
generated requests, each sent in-process (ASGI transport, no server) once per role — admin,
coordinator, manager, partner, viewer — and once without a key. Checks on every response: no 5xx,
the status code is documented for the operation, the content type is declared, and the body
conforms to the declared schema.

To make many requests *valid* (and so reach the services, not only the validators), reference
data, an organisation, a manager and an incident are seeded per operation, and every other example
has its path ids and well-known body fields (district, competences, languages, ids) replaced by
seeded ones.

Bounded: ``KOKOMA_FUZZ_EXAMPLES`` (default 8) examples per operation, derandomised so that CI is
reproducible; ``KOKOMA_FUZZ_RANDOM=1`` explores with fresh random seeds (e.g. locally, with more
examples).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import app
from app.models.system import Role
from tests.factories import make_incident, make_key, make_manager, make_organisation, seed_reference

EXAMPLES = int(os.environ.get("KOKOMA_FUZZ_EXAMPLES", "8"))
RANDOM = os.environ.get("KOKOMA_FUZZ_RANDOM") == "1"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ROLES = (Role.admin, Role.coordinator, Role.manager, Role.partner, Role.viewer)

#: The coverage phase (boundary values of every constraint, positive and negative) is thorough but
#: unbounded by ``max_examples``; CI runs it with ``KOKOMA_FUZZ_COVERAGE=1`` (scripts/test.sh).
COVERAGE = os.environ.get("KOKOMA_FUZZ_COVERAGE", "0") == "1"
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    app,
    config=SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": COVERAGE}}}),
)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: Any, value: Any) -> bytes:
    """Import bodies: generated values as NDJSON (a list → one record a line)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    records = value if isinstance(value, list) else [value]
    return "".join(json.dumps(record) + "\n" for record in records).encode("utf-8")


@dataclass
class World:
    """Seeded records and a key per role (``None`` = no key)."""

    headers: dict[str | None, dict[str, str]]
    ids: dict[str, str]
    turn: Iterator[int] = field(default_factory=itertools.count)


@pytest.fixture
def world(client: Any) -> World:
    seed_reference()
    organisation = make_organisation("Fuzz NGO")
    manager = make_manager(districts=["beta"])
    incident = make_incident(organisation_id=organisation)
    headers: dict[str | None, dict[str, str]] = {None: {}}
    for role in ROLES:
        headers[role.value] = make_key(
            role,
            organisation_id=organisation if role is Role.partner else None,
            manager_id=manager if role is Role.manager else None,
        )
    ids = {
        "incident_id": str(incident.id),
        "manager_id": str(manager),
        "organisation_id": str(organisation),
    }
    return World(headers=headers, ids=ids)


#: Body fields set to seeded values (when present in a generated body).
_BODY_VALUES: dict[str, Any] = {
    "district": "alpha",
    "home_district": "alpha",
    "districts": ["beta"],
    "neighbours": ["alpha"],
    "required_competences": ["mediation"],
    "languages": ["de"],
}
_CODE_BY_COLLECTION = {"districts": "gamma", "competences": "youth_work"}


def _enrich(case: schemathesis.Case, world: World) -> None:
    """On every other example, point ids and well-known fields at seeded records."""
    if next(world.turn) % 2:
        return
    path = case.operation.path
    for name in list(case.path_parameters or {}):
        if name in world.ids:
            case.path_parameters[name] = world.ids[name]
        elif name == "code":
            collection = path.split("/")[3]
            if collection in _CODE_BY_COLLECTION:
                case.path_parameters[name] = _CODE_BY_COLLECTION[collection]
    if isinstance(case.body, dict):
        for name in list(case.body):
            if name in _BODY_VALUES:
                case.body[name] = _BODY_VALUES[name]
            elif name in world.ids and name != "organisation_id":
                case.body[name] = world.ids[name]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, world: World) -> None:
    _enrich(case, world)
    for role, headers in world.headers.items():
        response = case.call(headers={**headers, "X-Request-ID": f"fuzz-{role or 'anonymous'}"})
        case.validate_response(response, checks=CHECKS)


def test_fuzzing_covers_every_operation() -> None:
    """The fuzz run above is parametrised from the live schema: every route is in it."""
    operations = {
        (route_method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for route_method in item
    }
    fuzzed = {
        (result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()
    }
    assert operations == fuzzed
    assert len(fuzzed) >= 30
