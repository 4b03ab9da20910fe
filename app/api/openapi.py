"""The OpenAPI document: what FastAPI derives from the routes, completed with what it cannot know.

* ``components.securitySchemes.bearer`` (an API key as ``Authorization: Bearer <key>``; with
  ``KOKOMA_OIDC_ISSUER`` set also ``oidc``) and ``security`` on **every** operation — the
  operations that need no key (health) carry ``security: []``. Generated clients use it for their
  auth option.
* an operation ``description`` (the summary's sentence, the roles that may call it, and the
  endpoint's docstring when it has one), and a ``tags`` list with a description of each tag.
* the response headers the server sends: ``X-Request-ID`` on every response, ``Retry-After`` on
  429/503, ``Idempotent-Replayed`` on the 2xx of every ``POST`` (``Idempotency-Key``), and the
  ``ETag``/``Location`` a route declares with :func:`app.api.problems.sends`.
* ``servers``, ``contact`` and ``license``.

Rendered with the keys in the order FastAPI builds them (not sorted): ``application/json`` comes
first wherever it is the primary form, which is what generated clients pick.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from app.core.errors import PROBLEM_MEDIA_TYPE
from app.core.problems import for_status
from app.core.security import RULES, Action

F = TypeVar("F", bound=Callable[..., Any])

BEARER_SCHEME = "bearer"
OIDC_SCHEME = "oidc"
API_PREFIX = "/api/v1"

TAGS: list[dict[str, str]] = [
    {
        "name": "incidents",
        "description": "Conflicts reported in a district: register, triage, "
        "edit, the status lifecycle, timeline and notes; the list also exports CSV and GeoJSON.",
    },
    {
        "name": "dispatch",
        "description": "Explainable matching of conflict managers to an "
        "incident: candidates, offers, the manager's answer, completion and automatic dispatch.",
    },
    {
        "name": "managers",
        "description": "The roster of trained volunteer conflict managers: "
        "profiles, competences, districts, absences and status.",
    },
    {
        "name": "recommendations",
        "description": "The steering group's recommendations to the "
        "city administration, their lifecycle and the printable report.",
    },
    {
        "name": "reference",
        "description": "Reference data: districts (with neighbours and "
        "boundaries), competences and partner organisations.",
    },
    {"name": "stats", "description": "Aggregated figures; small counts are suppressed."},
    {"name": "imports", "description": "Bulk imports of incidents and managers (CSV or NDJSON)."},
    {
        "name": "webhooks",
        "description": "Signed event deliveries (Standard Webhooks) to partner systems.",
    },
    {"name": "notifications", "description": "The record of e-mail notifications sent."},
    {
        "name": "privacy",
        "description": "Data-protection duties: erasure of reporter and manager "
        "data, the data-subject report.",
    },
    {"name": "admin", "description": "API keys and the audit trail (admins only)."},
    {
        "name": "auth",
        "description": "The caller as the server sees it (API key or signed-in person).",
    },
    {"name": "health", "description": "Liveness and readiness; open, no key needed."},
]

CONTACT = {"name": "kokoma maintainers (see the README)"}
LICENSE = {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"}
SERVERS = [
    {
        "url": "/",
        "description": "This deployment (local, staging or production): the host that serves this "
        "document. The API is for the city's staff and its partner organisations' systems.",
        "x-internal": False,
    }
]

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id (the client's X-Request-ID when sane, else generated); "
        "it is in the access log.",
        "schema": {"type": "string", "maxLength": 128},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with the "
        "same Idempotency-Key (nothing was done again).",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "ETag": {
        "description": "The version of the returned resource; send it as If-Match to edit it.",
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    },
    "Location": {
        "description": "The URL path of the created resource.",
        "schema": {"type": "string", "format": "uri-reference"},
    },
}


def sends(*headers: str, status: int = 200) -> Callable[[F], F]:
    """Declare the headers a route sets on its success response (``ETag``, ``Location``)::

    @router.post("", status_code=201, ...)
    @sends("ETag", "Location", status=201)
    def incidents_create(...): ...
    """
    unknown = set(headers) - set(HEADERS)
    if unknown:
        raise ValueError(f"undeclared response headers: {sorted(unknown)}")

    def mark(endpoint: F) -> F:
        declared = dict(getattr(endpoint, "sends_headers", {}))
        declared[str(status)] = (*declared.get(str(status), ()), *headers)
        vars(endpoint)["sends_headers"] = declared  # read back from the route's endpoint
        return endpoint

    return mark


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _dependencies(dependant: Dependant) -> list[Any]:
    calls = []
    for dependency in dependant.dependencies:
        calls.append(dependency.call)
        calls.extend(_dependencies(dependency))
    return calls


def _route_auth(route: RouteContext) -> tuple[bool, list[Action]]:
    """Whether the route needs a key, and the role rules (:data:`RULES`) it checks."""
    from app.api.deps import get_principal

    calls = _dependencies(route.dependant)
    actions = []
    for call in calls:
        name = getattr(call, "__name__", "")
        if name.startswith("require_") and name.removeprefix("require_") in Action.__members__:
            actions.append(Action(name.removeprefix("require_")))
    # a role check authenticates as well (it calls get_principal itself)
    return get_principal in calls or bool(actions), actions


def _description(route: RouteContext, authenticated: bool, actions: list[Action]) -> str:
    parts = [(route.summary or route.name or "").rstrip(".") + "."]
    if route.description:  # ``description=`` or the endpoint's docstring
        parts.append(route.description)
    if not authenticated:
        parts.append("Open: no API key needed.")
    elif actions:
        roles = sorted(set.intersection(*(set(RULES[action]) for action in actions)))
        parts.append("Roles: " + ", ".join(f"`{role}`" for role in roles) + ".")
    else:
        parts.append("Any valid API key.")
    return "\n\n".join(parts)


INT32 = (-(2**31), 2**31 - 1)


def _integer_formats(node: Any) -> None:
    """``format: int32`` on integers whose bounds fit (all of kokoma's counts, levels, versions
    and sizes), ``int64`` otherwise — a client's integer type from the document."""
    if isinstance(node, dict):
        if node.get("type") == "integer" and "format" not in node:
            low, high = node.get("minimum", INT32[0]), node.get("maximum", INT32[1])
            node["format"] = "int32" if INT32[0] <= low and high <= INT32[1] else "int64"
        for value in node.values():
            _integer_formats(value)
    elif isinstance(node, list):
        for value in node:
            _integer_formats(value)


def _add_server_error(operation: dict[str, Any]) -> None:
    operation["responses"].setdefault(
        "500",
        {
            "description": for_status(500).description,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    )


def _add_response_headers(method: str, operation: dict[str, Any], sent: dict[str, Any]) -> None:
    for code, response in operation.get("responses", {}).items():
        headers = response.setdefault("headers", {})
        headers.setdefault("X-Request-ID", _header_ref("X-Request-ID"))
        if code in ("429", "503"):
            headers.setdefault("Retry-After", _header_ref("Retry-After"))
        if code.startswith("2"):
            for name in sent.get(code, ()):
                headers.setdefault(name, _header_ref(name))
            if method == "post":
                headers.setdefault("Idempotent-Replayed", _header_ref("Idempotent-Replayed"))


#: How the server reads a boolean query parameter (pydantic's reading of a query string).
BOOLEAN_QUERY = "`true` or `false`; `1`/`0`, `yes`/`no`, `on`/`off` are read the same way."


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` → ``X`` (keeping title, description, default)."""
    branches = schema.get("anyOf")
    if not branches or {"type": "null"} not in branches:
        return schema
    rest = [branch for branch in branches if branch != {"type": "null"}]
    outer = {key: value for key, value in schema.items() if key != "anyOf"}
    if outer.get("default", ...) is None:
        del outer["default"]
    if len(rest) == 1:
        return {**rest[0], **outer}
    return {"anyOf": rest, **outer}


def _clean_parameters(operation: dict[str, Any]) -> None:
    """A query, path or header parameter is a string on the wire and is never ``null``: an
    optional one is simply left out. FastAPI declares ``X | None`` parameters as nullable."""
    for parameter in operation.get("parameters", []):
        parameter["schema"] = _without_null(parameter["schema"])
        if parameter["schema"].get("type") == "boolean":
            parameter["description"] = (
                parameter.get("description", "").rstrip(".") + ". " + BOOLEAN_QUERY
            ).lstrip(". ")


def build_openapi(app: FastAPI, oidc_issuer: str | None) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        # declaration order (app.api.routing.match_hot_routers_first reorders for matching)
        routes=getattr(app.state, "documented_routes", app.routes),
        tags=TAGS,
        servers=SERVERS,
        contact=CONTACT,
        license_info=LICENSE,
    )
    components = schema.setdefault("components", {})
    schemes = components.setdefault("securitySchemes", {})
    schemes[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`kokoma api-key create`, or `POST /api/v1/api-keys`) as "
        "'Authorization: Bearer <key>'.",
    }
    if oidc_issuer:
        schemes[OIDC_SCHEME] = {
            "type": "openIdConnect",
            "openIdConnectUrl": oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
            "description": "Sign in at the city's identity provider; send the access token "
            "as 'Authorization: Bearer <JWT>'.",
        }
    components["headers"] = HEADERS
    from app.models.languages import iso639_1_codes

    components.setdefault("schemas", {})["LanguageCode"] = {
        "type": "string",
        "description": "An ISO 639-1 language code (lower case)",
        "enum": sorted(iso639_1_codes()),
    }
    routes = {
        (context.path_format, method.lower()): context
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.include_in_schema
        for method in context.methods or ()
    }
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            route = routes[(path, method)]
            authenticated, actions = _route_auth(route)
            if authenticated:
                security: list[dict[str, list[str]]] = [{BEARER_SCHEME: []}]
                if oidc_issuer:
                    security.append({OIDC_SCHEME: []})
                operation["security"] = security
            else:
                operation["security"] = []
            _clean_parameters(operation)
            _add_server_error(operation)
            operation["description"] = _description(route, authenticated, actions)
            _add_response_headers(method, operation, getattr(route.endpoint, "sends_headers", {}))
    _integer_formats(schema)
    return schema


def install_openapi(app: FastAPI, oidc_issuer: str | None) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, oidc_issuer)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render_openapi(spec: dict[str, Any]) -> str:
    """The committed form: indented, keys in the document's own order (not sorted — see the
    module docstring)."""
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
