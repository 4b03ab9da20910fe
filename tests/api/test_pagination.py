"""Keyset pagination: walking 1,000 incidents without loss or repetition, also while new ones
arrive between page fetches; the cursor is opaque and bound to its list."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.models.incident import Incident
from tests.factories import incident_body, make_incident, make_key, seed_reference

URL = "/api/v1/incidents"
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def bulk_incidents(
    n: int, *, start: int = 0, district: str = "alpha", ties: int = 3
) -> list[uuid.UUID]:
    """``n`` incidents in one transaction; every ``ties`` of them share a ``created_at``."""
    rows = []
    for i in range(start, start + n):
        at = BASE - timedelta(seconds=i // ties)
        rows.append(
            Incident(
                reference=f"KOK-2025-{i:05d}",
                title=f"Bulk incident {i}",
                district=district,
                category="other",
                escalation_level=1 + i % 9,
                reported_at=at,
                status_changed_at=at,
                created_at=at,
                updated_at=at,
            )
        )
    with session_scope() as session:
        session.add_all(rows)
    return [row.id for row in rows]


def walk(
    client: Any, headers: dict[str, str], params: dict[str, Any], between_pages: Any = None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        response = client.get(URL, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= params["limit"]
        items += page["items"]
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            return items
        assert len(page["items"]) == params["limit"]
        if between_pages is not None:
            between_pages(pages, page)
        assert pages < 1000, "pagination does not end"


def sort_key(item: dict[str, Any]) -> tuple[datetime, uuid.UUID]:
    return (datetime.fromisoformat(item["created_at"]), uuid.UUID(item["id"]))


@pytest.fixture
def admin() -> dict[str, str]:
    seed_reference()
    return make_key("admin")


class TestWalk:
    def test_thousand_incidents_while_new_ones_arrive(self, client, admin, fixed_clock) -> None:
        originals = set(bulk_incidents(1000))
        created_during: list[uuid.UUID] = []
        tied_during: list[uuid.UUID] = []

        def insert_more(page_number: int, page: dict[str, Any]) -> None:
            # a newer incident through the API ...
            response = client.post(
                URL, json=incident_body(title=f"new {page_number}"), headers=admin
            )
            assert response.status_code == 201
            created_during.append(uuid.UUID(response.json()["id"]))
            # ... and one sharing the created_at of the page's last row (a keyset tie)
            last = page["items"][-1]
            at = datetime.fromisoformat(last["created_at"])
            row = Incident(
                reference=f"KOK-2024-{page_number:05d}",
                title="tie",
                district="beta",
                category="other",
                escalation_level=1,
                reported_at=at,
                status_changed_at=at,
                created_at=at,
                updated_at=at,
            )
            with session_scope() as session:
                session.add(row)
            tied_during.append(row.id)

        items = walk(client, admin, {"limit": 37}, insert_more)
        ids = [uuid.UUID(item["id"]) for item in items]
        assert len(ids) == len(set(ids)), "an incident was listed twice"
        assert originals <= set(ids), f"{len(originals - set(ids))} incidents were lost"
        assert not set(created_during) & set(ids), "newer incidents appear behind the cursor"
        assert set(ids) <= originals | set(tied_during)
        keys = [sort_key(item) for item in items]
        assert keys == sorted(keys, reverse=True)
        assert len(created_during) >= 1000 // 37
        with session_scope(write=False) as session:
            total = session.scalar(select(func.count()).select_from(Incident))
        assert total == 1000 + len(created_during) + len(tied_during)

    def test_filtered_walk(self, client, admin) -> None:
        alpha = set(bulk_incidents(120))
        beta = set(bulk_incidents(80, start=500, district="beta"))
        items = walk(client, admin, {"limit": 7, "district": "beta"})
        ids = [uuid.UUID(item["id"]) for item in items]
        assert len(ids) == len(set(ids)) == 80
        assert set(ids) == beta
        assert not alpha & set(ids)

    @pytest.mark.parametrize("limit", [1, 500])
    def test_limits(self, client, admin, limit) -> None:
        originals = set(bulk_incidents(30))
        ids = [uuid.UUID(i["id"]) for i in walk(client, admin, {"limit": limit})]
        assert ids and set(ids) == originals and len(ids) == 30

    def test_default_limit_is_50(self, client, admin) -> None:
        bulk_incidents(60)
        page = client.get(URL, headers=admin).json()
        assert len(page["items"]) == 50
        assert page["next_cursor"] is not None

    def test_exact_multiple_ends_without_empty_page(self, client, admin) -> None:
        bulk_incidents(20)
        first = client.get(URL, params={"limit": 10}, headers=admin).json()
        second = client.get(
            URL, params={"limit": 10, "cursor": first["next_cursor"]}, headers=admin
        ).json()
        assert len(second["items"]) == 10
        assert second["next_cursor"] is None

    def test_partner_scope_holds_across_pages(self, client, admin) -> None:
        from tests.factories import make_organisation

        organisation = make_organisation()
        own = {make_incident(organisation_id=str(organisation)).id for _ in range(9)}
        bulk_incidents(40)
        partner = make_key("partner", organisation_id=organisation)
        ids = {uuid.UUID(i["id"]) for i in walk(client, partner, {"limit": 4})}
        assert ids == own


class TestCursor:
    def test_cursor_is_opaque_text(self, client, admin) -> None:
        bulk_incidents(5)
        cursor = client.get(URL, params={"limit": 2}, headers=admin).json()["next_cursor"]
        assert isinstance(cursor, str)
        assert "2026" not in cursor and "-" not in cursor

    def test_cursor_of_another_list_is_refused(self, client, admin) -> None:
        bulk_incidents(5)
        cursor = client.get(URL, params={"limit": 2}, headers=admin).json()["next_cursor"]
        response = client.get("/api/v1/districts", params={"cursor": cursor}, headers=admin)
        assert response.status_code == 400
        assert response.json()["type"] == "/problems/invalid-cursor"

    def test_timeline_pages(self, client, admin) -> None:
        incident = make_incident()
        for i in range(7):
            client.post(f"{URL}/{incident.id}/notes", json={"text": f"note {i}"}, headers=admin)
        notes: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = client.get(f"{URL}/{incident.id}/notes", params=params, headers=admin).json()
            notes += [n["text"] for n in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(notes) == sorted(f"note {i}" for i in range(7))
        assert len(notes) == 7
