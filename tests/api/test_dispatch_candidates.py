"""GET /incidents/{id}/candidates and the hard constraints of manual picks (DESIGN §2)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.models.manager import Manager
from tests.factories import (
    make_assignment,
    make_dispatch_manager,
    make_key,
    make_organisation,
    make_triaged_incident,
    seed_reference,
    table_counts,
)

ZERO = {
    "not_active": 0,
    "absent": 0,
    "at_capacity": 0,
    "missing_competence": 0,
    "wrong_district": 0,
    "language": 0,
    "already_involved": 0,
}


@pytest.fixture
def staff(fixed_clock: object) -> dict[str, str]:
    seed_reference()
    return make_key("coordinator")


def _roster(incident_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """One manager per outcome for an incident in alpha needing mediation, in German."""
    other = make_triaged_incident(district="delta", required_competences=[])
    roster = {
        "home": make_dispatch_manager(display_name="Home"),
        "served": make_dispatch_manager(
            display_name="Served", home_district="gamma", districts=["alpha"]
        ),
        "paused": make_dispatch_manager(status="paused"),
        "retired": make_dispatch_manager(status="retired"),
        "training": make_dispatch_manager(status="in_training"),
        "absent": make_dispatch_manager(absences=[(date(2026, 6, 14), date(2026, 6, 15))]),
        "full": make_dispatch_manager(
            max_open_assignments=1, home_district="delta", districts=["alpha"]
        ),
        "no_competence": make_dispatch_manager(competences=["youth_work"]),
        "expired_competence": make_dispatch_manager(
            competences=[("mediation", date(2024, 1, 1), date(2026, 6, 14))]
        ),
        "far": make_dispatch_manager(home_district="delta"),
        "neighbour": make_dispatch_manager(home_district="beta"),
        "language": make_dispatch_manager(languages=["en"]),
        "involved": make_dispatch_manager(),
    }
    make_assignment(other, roster["full"])
    make_assignment(incident_id, roster["involved"], status="declined")
    return roster


EXPECTED = {
    "not_active": 3,
    "absent": 1,
    "at_capacity": 1,
    "missing_competence": 2,
    "wrong_district": 2,
    "language": 1,
    "already_involved": 1,
}


class TestCandidates:
    def test_every_constraint_counted_once(self, client, staff) -> None:
        incident = make_triaged_incident()
        roster = _roster(incident)
        response = client.get(f"/api/v1/incidents/{incident}/candidates", headers=staff)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["excluded"] == EXPECTED
        ids = [c["manager_id"] for c in body["candidates"]]
        assert ids == [str(roster["home"]), str(roster["served"])]
        assert len(ids) + sum(body["excluded"].values()) == len(roster)
        assert body["fallback_used"] is False
        first = body["candidates"][0]
        assert first["district_match"] == "home"
        assert first["open_assignments"] == 0
        assert [r["factor"] for r in first["reasons"]] == [
            "district",
            "load",
            "fairness",
            "competence_breadth",
            "continuity",
        ]
        assert first["score"] == pytest.approx(
            sum(r["weight"] * r["value"] for r in first["reasons"]), abs=1e-4
        )
        assert "email" not in first and "phone" not in first

    def test_limit_cuts_candidates_not_counts(self, client, staff) -> None:
        incident = make_triaged_incident()
        _roster(incident)
        body = client.get(f"/api/v1/incidents/{incident}/candidates?limit=1", headers=staff).json()
        assert len(body["candidates"]) == 1
        assert body["excluded"] == EXPECTED

    def test_neighbour_fallback(self, client, staff) -> None:
        incident = make_triaged_incident(district="gamma")
        neighbour = make_dispatch_manager(home_district="beta")
        far = make_dispatch_manager(home_district="delta")
        body = client.get(f"/api/v1/incidents/{incident}/candidates", headers=staff).json()
        assert [c["manager_id"] for c in body["candidates"]] == [str(neighbour)]
        assert body["candidates"][0]["district_match"] == "neighbour"
        assert body["fallback_used"] is True
        assert body["excluded"] == {**ZERO, "wrong_district": 1}
        none = client.get(
            f"/api/v1/incidents/{incident}/candidates?fallback=none", headers=staff
        ).json()
        assert none["candidates"] == []
        assert none["excluded"] == {**ZERO, "wrong_district": 2}
        assert str(far) not in {c["manager_id"] for c in body["candidates"]}

    def test_no_fallback_when_someone_in_the_district_fits(self, client, staff) -> None:
        incident = make_triaged_incident(district="gamma")
        local = make_dispatch_manager(home_district="gamma")
        make_dispatch_manager(home_district="beta")
        body = client.get(f"/api/v1/incidents/{incident}/candidates", headers=staff).json()
        assert [c["manager_id"] for c in body["candidates"]] == [str(local)]
        assert body["excluded"]["wrong_district"] == 1

    def test_ties_are_deterministic(self, client, staff) -> None:
        incident = make_triaged_incident()
        ids = sorted(make_dispatch_manager() for _ in range(4))
        first = client.get(f"/api/v1/incidents/{incident}/candidates", headers=staff).json()
        second = client.get(f"/api/v1/incidents/{incident}/candidates", headers=staff).json()
        ranked = [c["manager_id"] for c in first["candidates"]]
        assert ranked == [str(i) for i in ids]
        assert ranked == [c["manager_id"] for c in second["candidates"]]

    def test_tie_broken_by_lower_load(self, client, staff) -> None:
        incident = make_triaged_incident()
        elsewhere = make_triaged_incident(district="delta", required_competences=[])
        earlier = make_triaged_incident()
        busy = make_dispatch_manager()
        idle = make_dispatch_manager()
        make_assignment(elsewhere, busy)  # 1 of 2 slots: load 0.5
        make_assignment(earlier, busy, status="completed")  # continuity 1/3
        with session_scope() as session:
            session.get(Manager, busy).last_assigned_at = None  # type: ignore[union-attr]
            session.get(Manager, idle).last_assigned_at = datetime(  # type: ignore[union-attr]
                2026, 5, 31, 10, 0, tzinfo=UTC
            )  # 15 days: fairness 0.5
        body = client.get(f"/api/v1/incidents/{incident}/candidates", headers=staff).json()
        # busy 0.35 + 0.5·0.25 + 1·0.15 + 0.3333·0.15 = idle 0.35 + 1·0.25 + 0.5·0.15 = 0.675
        assert [c["score"] for c in body["candidates"]] == [0.675, 0.675]
        assert [c["manager_id"] for c in body["candidates"]] == [str(idle), str(busy)]
        assert [c["open_assignments"] for c in body["candidates"]] == [0, 1]

    def test_roles(self, client, staff) -> None:
        organisation = make_organisation()
        incident = make_triaged_incident(organisation_id=str(organisation))
        for role, kwargs in (("viewer", {}), ("partner", {"organisation_id": organisation})):
            response = client.get(
                f"/api/v1/incidents/{incident}/candidates", headers=make_key(role, **kwargs)
            )
            assert response.status_code == 403
            assert response.json()["type"] == "/problems/forbidden"

    def test_unknown_incident(self, client, staff) -> None:
        response = client.get(f"/api/v1/incidents/{uuid.uuid4()}/candidates", headers=staff)
        assert response.status_code == 404
        assert response.json()["type"] == "/problems/not-found"

    def test_bad_fallback(self, client, staff) -> None:
        incident = make_triaged_incident()
        response = client.get(
            f"/api/v1/incidents/{incident}/candidates?fallback=all", headers=staff
        )
        assert response.status_code == 422


class TestManualPickConstraints:
    @pytest.mark.parametrize(
        ("who", "reason"),
        [
            ("paused", "not_active"),
            ("retired", "not_active"),
            ("absent", "absent"),
            ("full", "at_capacity"),
            ("no_competence", "missing_competence"),
            ("expired_competence", "missing_competence"),
            ("far", "wrong_district"),
            ("language", "language"),
            ("involved", "already_involved"),
        ],
    )
    def test_refused_with_reason(self, client, staff, who: str, reason: str) -> None:
        incident = make_triaged_incident()
        roster = _roster(incident)
        before = table_counts()
        response = client.post(
            "/api/v1/assignments",
            headers=staff,
            json={"incident_id": str(incident), "manager_id": str(roster[who])},
        )
        assert response.status_code == 409, response.text
        problem = response.json()
        expected_type = "at-capacity" if reason == "at_capacity" else "not-eligible"
        assert problem["type"] == f"/problems/{expected_type}"
        assert reason in problem["detail"]
        assert problem["errors"][0]["type"] == reason
        assert table_counts() == before

    def test_neighbour_always_allowed_by_hand(self, client, staff) -> None:
        incident = make_triaged_incident()
        roster = _roster(incident)
        response = client.post(
            "/api/v1/assignments",
            headers=staff,
            json={"incident_id": str(incident), "manager_id": str(roster["neighbour"])},
        )
        assert response.status_code == 201, response.text
        assert response.json()["reasons"][0]["detail"] == "neighbouring district"


def test_last_assigned_is_stamped(client, staff) -> None:
    incident = make_triaged_incident()
    manager = make_dispatch_manager()
    client.post(
        "/api/v1/assignments",
        headers=staff,
        json={"incident_id": str(incident), "manager_id": str(manager)},
    )
    with session_scope(write=False) as session:
        stamped = session.scalar(select(Manager.last_assigned_at).where(Manager.id == manager))
    assert stamped == datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
