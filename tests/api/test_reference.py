"""Reference data: districts with symmetric neighbours, competences, organisations."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.models.reference import DistrictNeighbour
from tests.factories import make_key, make_organisation, seed_reference, table_counts

API = "/api/v1"


def neighbour_pairs() -> set[tuple[str, str]]:
    with session_scope(write=False) as session:
        return {
            (row.district_code, row.neighbour_code)
            for row in session.scalars(select(DistrictNeighbour))
        }


def assert_symmetric() -> None:
    pairs = neighbour_pairs()
    assert pairs == {(b, a) for a, b in pairs}


def neighbours(client: Any, code: str, headers: dict[str, str]) -> list[str]:
    response = client.get(f"{API}/districts/{code}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["neighbours"]


@pytest.fixture
def admin() -> dict[str, str]:
    seed_reference()
    return make_key("admin")


def district(code: str, **overrides: Any) -> dict[str, Any]:
    return {"code": code, "name": code.title(), "city": "Teststadt", **overrides}


class TestCreateDistrict:
    def test_neighbours_are_symmetric(self, client, admin) -> None:
        response = client.post(
            f"{API}/districts", json=district("omega", neighbours=["alpha", "delta"]), headers=admin
        )
        assert response.status_code == 201, response.text
        assert response.json()["neighbours"] == ["alpha", "delta"]
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{API}/districts/omega"
        assert neighbours(client, "alpha", admin) == ["beta", "omega"]
        assert neighbours(client, "delta", admin) == ["omega"]
        assert_symmetric()

    def test_own_code_is_not_a_neighbour(self, client, admin) -> None:
        response = client.post(
            f"{API}/districts", json=district("omega", neighbours=["omega", "alpha"]), headers=admin
        )
        assert response.status_code == 201
        assert response.json()["neighbours"] == ["alpha"]
        assert_symmetric()

    def test_unknown_neighbour(self, client, admin) -> None:
        before = table_counts()
        response = client.post(
            f"{API}/districts",
            json=district("omega", neighbours=["alpha", "atlantis"]),
            headers=admin,
        )
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/validation-error"
        assert response.json()["errors"][0]["loc"] == ["body", "neighbours"]
        assert table_counts() == before
        assert client.get(f"{API}/districts/omega", headers=admin).status_code == 404

    def test_duplicate(self, client, admin) -> None:
        before = table_counts()
        response = client.post(f"{API}/districts", json=district("alpha"), headers=admin)
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/duplicate"
        assert table_counts() == before

    def test_boundary(self, client, admin) -> None:
        square = {
            "type": "Polygon",
            "coordinates": [[[11.0, 50.9], [11.1, 50.9], [11.1, 51.0], [11.0, 50.9]]],
        }
        response = client.post(
            f"{API}/districts", json=district("omega", boundary=square), headers=admin
        )
        assert response.status_code == 201, response.text
        assert response.json()["boundary"] == square

    @pytest.mark.parametrize(
        "boundary",
        [
            {"type": "Point", "coordinates": [11.0, 50.9]},
            {"type": "Polygon", "coordinates": [[[200.0, 50.9], [11.1, 50.9], [11.0, 50.9]]]},
            {"type": "Polygon", "coordinates": "nope"},
        ],
        ids=str,
    )
    def test_bad_boundary(self, client, admin, boundary) -> None:
        before = table_counts()
        response = client.post(
            f"{API}/districts", json=district("omega", boundary=boundary), headers=admin
        )
        assert response.status_code == 422
        assert table_counts() == before

    @pytest.mark.parametrize("code", ["om ega", "", "x" * 65, "ö", "-omega"])
    def test_bad_code(self, client, admin, code) -> None:
        before = table_counts()
        response = client.post(
            f"{API}/districts", json=district("omega") | {"code": code}, headers=admin
        )
        assert response.status_code == 422
        assert table_counts() == before

    def test_code_is_stored_lower_case(self, client, admin) -> None:
        """District codes match in either case: ``Omega`` is the district ``omega``."""
        response = client.post(
            f"{API}/districts", json=district("omega") | {"code": "Omega"}, headers=admin
        )
        assert response.status_code == 201, response.text
        assert response.json()["code"] == "omega"
        again = client.post(
            f"{API}/districts", json=district("omega") | {"code": "OMEGA"}, headers=admin
        )
        assert again.status_code == 409


class TestUpdateDistrict:
    def test_removing_a_neighbour_removes_the_reverse_link(self, client, admin) -> None:
        response = client.patch(
            f"{API}/districts/beta", json={"neighbours": ["gamma", "delta"]}, headers=admin
        )
        assert response.status_code == 200, response.text
        assert response.json()["neighbours"] == ["delta", "gamma"]
        assert response.json()["version"] == 2
        assert neighbours(client, "alpha", admin) == []
        assert neighbours(client, "delta", admin) == ["beta"]
        assert neighbours(client, "gamma", admin) == ["beta"]
        assert_symmetric()

    def test_clearing_neighbours(self, client, admin) -> None:
        response = client.patch(f"{API}/districts/beta", json={"neighbours": []}, headers=admin)
        assert response.status_code == 200
        assert neighbour_pairs() == set()

    def test_neighbours_of_other_districts_are_kept(self, client, admin) -> None:
        client.post(f"{API}/districts", json=district("omega", neighbours=["gamma"]), headers=admin)
        client.patch(f"{API}/districts/alpha", json={"neighbours": ["delta"]}, headers=admin)
        assert neighbours(client, "gamma", admin) == ["beta", "omega"]
        assert neighbours(client, "beta", admin) == ["gamma"]
        assert_symmetric()

    def test_unknown_neighbour(self, client, admin) -> None:
        before_pairs = neighbour_pairs()
        before = table_counts()
        response = client.patch(
            f"{API}/districts/beta", json={"neighbours": ["atlantis"]}, headers=admin
        )
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/validation-error"
        assert neighbour_pairs() == before_pairs
        assert table_counts() == before
        assert client.get(f"{API}/districts/beta", headers=admin).json()["version"] == 1

    def test_unchanged_neighbours_keep_version(self, client, admin) -> None:
        response = client.patch(
            f"{API}/districts/beta", json={"neighbours": ["gamma", "alpha"]}, headers=admin
        )
        assert response.status_code == 200
        assert response.json()["version"] == 1

    @pytest.mark.parametrize("field", ["name", "city"])
    def test_required_field_cannot_be_null(self, client, admin, field) -> None:
        before = table_counts()
        response = client.patch(f"{API}/districts/alpha", json={field: None}, headers=admin)
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "/problems/validation-error"
        assert table_counts() == before
        assert client.get(f"{API}/districts/alpha", headers=admin).json()["name"] == "Alpha"

    def test_stale_if_match(self, client, admin) -> None:
        assert (
            client.patch(f"{API}/districts/alpha", json={"name": "A2"}, headers=admin).status_code
            == 200
        )
        response = client.patch(
            f"{API}/districts/alpha", json={"name": "A3"}, headers={**admin, "If-Match": '"1"'}
        )
        assert response.status_code == 412
        assert client.get(f"{API}/districts/alpha", headers=admin).json()["name"] == "A2"

    def test_unknown_district(self, client, admin) -> None:
        response = client.patch(f"{API}/districts/atlantis", json={"name": "X"}, headers=admin)
        assert response.status_code == 404
        assert response.json()["type"] == "/problems/not-found"


class TestListDistricts:
    def test_pages_by_code(self, client, admin) -> None:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = client.get(f"{API}/districts", params=params, headers=admin).json()
            seen += [d["code"] for d in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["alpha", "beta", "delta", "gamma"]

    def test_city_filter(self, client, admin) -> None:
        client.post(f"{API}/districts", json=district("omega") | {"city": "Weimar"}, headers=admin)
        items = client.get(f"{API}/districts", params={"city": "Weimar"}, headers=admin).json()
        assert [d["code"] for d in items["items"]] == ["omega"]


class TestCompetences:
    def test_create_get_update(self, client, admin) -> None:
        response = client.post(
            f"{API}/competences", json={"code": "first_aid", "name": "First aid"}, headers=admin
        )
        assert response.status_code == 201, response.text
        assert response.json()["description"] == ""
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{API}/competences/first_aid"
        response = client.patch(
            f"{API}/competences/first_aid",
            json={"description": "Basic first aid."},
            headers={**admin, "If-Match": '"1"'},
        )
        assert response.status_code == 200
        assert response.json()["version"] == 2
        got = client.get(f"{API}/competences/first_aid", headers=admin)
        assert got.json()["description"] == "Basic first aid."
        assert got.headers["etag"] == '"2"'

    def test_duplicate(self, client, admin) -> None:
        before = table_counts()
        response = client.post(
            f"{API}/competences", json={"code": "mediation", "name": "M"}, headers=admin
        )
        assert response.status_code == 409
        assert table_counts() == before

    def test_unknown(self, client, admin) -> None:
        assert client.get(f"{API}/competences/juggling", headers=admin).status_code == 404

    def test_unknown_field(self, client, admin) -> None:
        before = table_counts()
        response = client.post(
            f"{API}/competences", json={"code": "x", "name": "X", "level": 3}, headers=admin
        )
        assert response.status_code == 422
        assert table_counts() == before


class TestOrganisations:
    def test_create_get_update(self, client, admin) -> None:
        response = client.post(
            f"{API}/organisations",
            json={"name": "Amt für Soziales", "kind": "city_department"},
            headers=admin,
        )
        assert response.status_code == 201, response.text
        organisation_id = response.json()["id"]
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{API}/organisations/{organisation_id}"
        response = client.patch(
            f"{API}/organisations/{organisation_id}", json={"kind": "other"}, headers=admin
        )
        assert (response.status_code, response.json()["kind"]) == (200, "other")
        got = client.get(f"{API}/organisations/{organisation_id}", headers=admin).json()
        assert (got["name"], got["version"]) == ("Amt für Soziales", 2)

    def test_unknown_kind(self, client, admin) -> None:
        before = table_counts()
        response = client.post(
            f"{API}/organisations", json={"name": "X", "kind": "club"}, headers=admin
        )
        assert response.status_code == 422
        assert table_counts() == before

    def test_unknown(self, client, admin) -> None:
        response = client.get(f"{API}/organisations/{uuid.uuid4()}", headers=admin)
        assert response.status_code == 404

    def test_stale_if_match(self, client, admin) -> None:
        organisation = make_organisation()
        response = client.patch(
            f"{API}/organisations/{organisation}",
            json={"name": "New"},
            headers={**admin, "If-Match": '"5"'},
        )
        assert response.status_code == 412
        assert (
            client.get(f"{API}/organisations/{organisation}", headers=admin).json()["name"] == "NGO"
        )

    def test_every_role_reads(self, client, admin) -> None:
        organisation = make_organisation()
        for role, extra in [("viewer", {}), ("partner", {"organisation_id": organisation})]:
            headers = make_key(role, **extra)
            assert client.get(f"{API}/organisations", headers=headers).status_code == 200
