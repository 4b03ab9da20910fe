"""The committed openapi/openapi.json equals the app's, and every operation is well described."""

from __future__ import annotations

import json
from pathlib import Path

from app.api.openapi import render_openapi
from app.main import app

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def test_committed_spec_is_current() -> None:
    assert SPEC.read_text(encoding="utf-8") == render_openapi(app.openapi()), (
        "openapi/openapi.json is stale: run `kokoma export-openapi` and commit it"
    )


def test_served_spec_equals_committed(client) -> None:
    assert client.get("/openapi.json").json() == json.loads(SPEC.read_text(encoding="utf-8"))


def test_every_operation_has_unique_id_summary_and_tag() -> None:
    seen: set[str] = set()
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            op_id = operation.get("operationId")
            assert op_id and op_id not in seen, f"{method} {path}: missing or duplicate operationId"
            seen.add(op_id)
            assert operation.get("summary"), f"{op_id}: no summary"
            assert operation.get("tags"), f"{op_id}: no tag"
