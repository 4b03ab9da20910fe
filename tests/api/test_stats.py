"""Statistics and district profiles: every figure equals a brute-force recount of generated data
(seeded random), suppression for viewers and partners, roles."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from app.core.db import session_scope
from app.models.assignment import Assignment
from app.models.incident import Incident, IncidentCompetence
from app.models.manager import Absence, Manager, ManagerCompetence, ManagerDistrict
from app.services.stats import StatTable, total_reveals
from tests.factories import (
    COMPETENCES,
    DISTRICTS,
    make_key,
    make_organisation,
    make_recommendation,
    seed_reference,
)
from tests.services.test_suppression import consistent_values

STATS = "/api/v1/stats"
GROUPS = ("district", "category", "month", "escalation_level")
BERLIN = ZoneInfo("Europe/Berlin")
TODAY = date(2026, 6, 15)  # fixed_clock
CATEGORIES = [
    "right_wing_extremism",
    "racism_discrimination",
    "hate_speech",
    "youth_conflict",
    "neighbourhood_dispute",
    "other",
]
STATUSES = ["reported", "triaged", "dispatched", "in_progress", "resolved", "closed", "withdrawn"]
OPEN = {"reported", "triaged", "dispatched", "in_progress"}
#: Instants right at Berlin month boundaries (UTC): the local month differs from the UTC one.
BOUNDARIES = [
    datetime(2026, 1, 31, 23, 30, tzinfo=UTC),  # 2026-02-01 00:30 CET
    datetime(2026, 3, 31, 22, 30, tzinfo=UTC),  # 2026-04-01 00:30 CEST
    datetime(2026, 3, 31, 21, 59, tzinfo=UTC),  # 2026-03-31 23:59 CEST
    datetime(2025, 12, 31, 23, 0, tzinfo=UTC),  # 2026-01-01 00:00 CET
    datetime(2025, 10, 31, 22, 59, tzinfo=UTC),  # 2025-10-31 23:59 CET
]


def _problem(response: Any, status: int, type_: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["type"] == f"/problems/{type_}"


def generate_incidents(rng: random.Random, n: int = 60) -> list[dict[str, Any]]:
    """``n`` incidents written directly (random district, category, level, status, date and
    required competences); returns what was written, for the recount."""
    start = datetime(2025, 10, 1, tzinfo=UTC)
    span = (datetime(2026, 6, 14, tzinfo=UTC) - start).total_seconds()
    rows = []
    with session_scope() as session:
        for i in range(n):
            reported_at = (
                BOUNDARIES[i % len(BOUNDARIES)]
                if i < 2 * len(BOUNDARIES)
                else start + timedelta(seconds=rng.uniform(0, span))
            )
            row = {
                "id": uuid.uuid4(),
                "district": rng.choice(list(DISTRICTS)),
                "category": rng.choice(CATEGORIES),
                "escalation_level": rng.randint(1, 9),
                "status": rng.choice(STATUSES),
                "reported_at": reported_at,
                "competences": rng.sample(COMPETENCES, rng.randint(0, 2)),
            }
            session.add(
                Incident(
                    id=row["id"],
                    reference=f"KOK-2026-{i:05d}",
                    title=f"Incident {i}",
                    district=row["district"],
                    category=row["category"],
                    escalation_level=row["escalation_level"],
                    status=row["status"],
                    reported_at=reported_at,
                )
            )
            session.flush()
            for code in row["competences"]:
                session.add(
                    IncidentCompetence(
                        incident_id=row["id"], competence_code=code, district=row["district"]
                    )
                )
            rows.append(row)
    return rows


def generate_roster(rng: random.Random, n: int = 25) -> list[dict[str, Any]]:
    """Random managers: status, home/served districts, competences with certification and expiry
    around today, absences around today (bounds inclusive)."""
    managers = []
    with session_scope() as session:
        for i in range(n):
            home = rng.choice(list(DISTRICTS))
            served = rng.sample([d for d in DISTRICTS if d != home], rng.randint(0, 2))
            holdings = []
            for code in rng.sample(COMPETENCES, rng.randint(0, 3)):
                certified = TODAY + timedelta(days=rng.choice([-400, -30, 0, 1, 20]))
                expires = rng.choice(
                    [None, TODAY - timedelta(days=1), TODAY, TODAY + timedelta(days=90)]
                )
                if expires is not None and expires < certified:
                    expires = None
                holdings.append((code, certified, expires))
            absences = []
            for _ in range(rng.randint(0, 2)):
                first = TODAY + timedelta(days=rng.randint(-5, 3))
                absences.append((first, first + timedelta(days=rng.randint(0, 4))))
            row = {
                "id": uuid.uuid4(),
                "display_name": f"Manager {i:02d}",
                "status": rng.choice(
                    ["active", "active", "active", "paused", "in_training", "retired"]
                ),
                "home": home,
                "served": served,
                "holdings": holdings,
                "absences": absences,
                "max_open": rng.randint(1, 3),
            }
            session.add(
                Manager(
                    id=row["id"],
                    display_name=row["display_name"],
                    email=f"m{i}-{uuid.uuid4().hex[:6]}@example.org",
                    status=row["status"],
                    home_district=home,
                    max_open_assignments=row["max_open"],
                )
            )
            session.flush()
            for code in served:
                session.add(ManagerDistrict(manager_id=row["id"], district_code=code))
            for code, certified, expires in holdings:
                session.add(
                    ManagerCompetence(
                        manager_id=row["id"],
                        competence_code=code,
                        certified_on=certified,
                        expires_on=expires,
                    )
                )
            for first, last in absences:
                session.add(Absence(manager_id=row["id"], starts_on=first, ends_on=last))
            managers.append(row)
    return managers


def generate_assignments(
    rng: random.Random, incidents: list[dict[str, Any]], managers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Offers with every outcome; at most one open offer per incident (the partial unique
    indexes) and per manager within capacity."""
    rows = []
    reasons = ["no time", "No time ", "too far", "conflict of interest", "ill", "", None]
    load: Counter[uuid.UUID] = Counter()
    candidates = [m for m in managers if m["status"] in ("active", "paused")] or managers
    with session_scope() as session:
        for incident in incidents:
            has_open = False
            for _ in range(rng.randint(0, 4)):
                manager = rng.choice(candidates)
                status = rng.choice(
                    ["offered", "accepted", "declined", "expired", "withdrawn", "completed"]
                )
                if status in ("offered", "accepted") and (
                    has_open or load[manager["id"]] >= manager["max_open"]
                ):
                    status = "declined"
                offered_at = incident["reported_at"] + timedelta(hours=rng.uniform(0, 30))
                responded_at = None
                if status in ("accepted", "completed", "declined") or (
                    status == "withdrawn" and rng.random() < 0.5
                ):
                    responded_at = offered_at + timedelta(minutes=rng.uniform(1, 3000))
                row = {
                    "incident": incident,
                    "manager_id": manager["id"],
                    "status": status,
                    "responded_at": responded_at,
                    "decline_reason": rng.choice(reasons) if status == "declined" else None,
                }
                if status in ("offered", "accepted"):
                    has_open = True
                    load[manager["id"]] += 1
                session.add(
                    Assignment(
                        incident_id=incident["id"],
                        manager_id=manager["id"],
                        role="lead",
                        status=status,
                        offered_at=offered_at,
                        responded_at=responded_at,
                        expires_at=offered_at + timedelta(hours=48),
                        decline_reason=row["decline_reason"],
                    )
                )
                rows.append(row)
    return rows


def local_month(instant: datetime) -> str:
    return instant.astimezone(BERLIN).strftime("%Y-%m")


def recount(incidents: list[dict[str, Any]], group_by: str) -> dict[str, int]:
    if group_by == "month":
        return dict(Counter(local_month(i["reported_at"]) for i in incidents))
    return dict(Counter(str(i[group_by]) for i in incidents))


def as_dict(items: list[dict[str, Any]]) -> dict[str, int]:
    return {item["key"]: item["count"] for item in items}


@pytest.fixture
def world(fixed_clock: Any) -> dict[str, Any]:
    seed_reference()
    ngo = make_organisation("NGO", "ngo")
    return {
        "admin": make_key("admin"),
        "coordinator": make_key("coordinator"),
        "viewer": make_key("viewer"),
        "partner": make_key("partner", organisation_id=ngo),
    }


@pytest.fixture
def generated(world: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(20260615)
    incidents = generate_incidents(rng)
    managers = generate_roster(rng)
    assignments = generate_assignments(rng, incidents, managers)
    return {**world, "incidents": incidents, "managers": managers, "assignments": assignments}


class TestIncidentStats:
    def test_equals_recount(self, client: Any, generated: dict[str, Any]) -> None:
        for group_by in GROUPS:
            response = client.get(
                f"{STATS}/incidents",
                params={"group_by": group_by},
                headers=generated["coordinator"],
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["group_by"] == group_by
            assert as_dict(body["items"]) == recount(generated["incidents"], group_by), group_by
            assert body["total"] == len(generated["incidents"])
            keys = [i["key"] for i in body["items"]]
            assert keys == sorted(keys, key=int if group_by == "escalation_level" else str)
            assert not any(i["suppressed"] for i in body["items"])

    def test_filters_equal_recount(self, client: Any, generated: dict[str, Any]) -> None:
        after = datetime(2025, 12, 1, tzinfo=UTC)
        before = datetime(2026, 4, 1, tzinfo=UTC)
        for group_by, district in itertools.product(GROUPS, (None, "beta")):
            params: dict[str, Any] = {
                "group_by": group_by,
                "reported_after": "2025-12-01T00:00:00Z",
                "reported_before": "2026-04-01T00:00:00Z",
            }
            if district:
                params["district"] = district
            body = client.get(
                f"{STATS}/incidents", params=params, headers=generated["admin"]
            ).json()
            chosen = [
                i
                for i in generated["incidents"]
                if after <= i["reported_at"] < before
                and (district is None or i["district"] == district)
            ]
            assert as_dict(body["items"]) == recount(chosen, group_by)
            assert body["total"] == len(chosen)

    def test_months_are_local(self, client: Any, world: dict[str, Any]) -> None:
        with session_scope() as session:
            for i, at in enumerate(BOUNDARIES):
                session.add(
                    Incident(
                        reference=f"KOK-2026-9{i:04d}",
                        title="t",
                        district="alpha",
                        category="other",
                        escalation_level=1,
                        reported_at=at,
                    )
                )
        body = client.get(
            f"{STATS}/incidents", params={"group_by": "month"}, headers=world["admin"]
        ).json()
        assert as_dict(body["items"]) == {
            "2025-10": 1,
            "2026-01": 1,
            "2026-02": 1,
            "2026-03": 1,
            "2026-04": 1,
        }

    def test_empty(self, client: Any, world: dict[str, Any]) -> None:
        for group_by in ("month", "district"):
            body = client.get(
                f"{STATS}/incidents", params={"group_by": group_by}, headers=world["viewer"]
            ).json()
            assert body == {"group_by": group_by, "items": [], "total": 0}

    def test_bad_parameters(self, client: Any, world: dict[str, Any]) -> None:
        headers = world["admin"]
        _problem(
            client.get(f"{STATS}/incidents", params={"group_by": "colour"}, headers=headers),
            422,
            "validation-error",
        )
        _problem(
            client.get(f"{STATS}/incidents", params={"district": "atlantis"}, headers=headers),
            422,
            "validation-error",
        )
        _problem(
            client.get(
                f"{STATS}/incidents", params={"reported_after": "2026-01-01T00:00"}, headers=headers
            ),
            422,
            "validation-error",
        )


class TestDispatchStats:
    def test_equals_recount(self, client: Any, generated: dict[str, Any]) -> None:
        body = client.get(f"{STATS}/dispatch", headers=generated["admin"]).json()
        rows = generated["assignments"]

        def accepted(row: dict[str, Any]) -> bool:
            return row["status"] in ("accepted", "completed") or (
                row["status"] == "withdrawn" and row["responded_at"] is not None
            )

        first: dict[uuid.UUID, datetime] = {}
        for row in rows:
            if accepted(row):
                key = row["incident"]["id"]
                if key not in first or row["responded_at"] < first[key]:
                    first[key] = row["responded_at"]
        reported = {i["id"]: i["reported_at"] for i in generated["incidents"]}
        durations = [(first[k] - reported[k]).total_seconds() for k in first]
        assert len(durations) >= 10
        tta = body["time_to_accept"]
        assert tta["incidents"] == {"count": len(durations), "suppressed": False}
        assert tta["median_seconds"] == pytest.approx(np.percentile(durations, 50), abs=0.02)
        assert tta["p90_seconds"] == pytest.approx(np.percentile(durations, 90), abs=0.02)
        assert tta["median_hours"] == pytest.approx(np.percentile(durations, 50) / 3600, abs=0.01)

        outcome = Counter(
            "accepted" if accepted(r) else r["status"] if r["status"] != "offered" else "open"
            for r in rows
        )
        assert as_dict(body["offers"]["items"]) == {
            k: outcome.get(k, 0) for k in ("accepted", "declined", "expired", "withdrawn", "open")
        }
        assert body["offers"]["total"] == len(rows)
        decided = outcome["accepted"] + outcome["declined"] + outcome["expired"]
        assert body["acceptance_rate"] == pytest.approx(outcome["accepted"] / decided, abs=1e-4)
        assert body["decline_rate"] == pytest.approx(outcome["declined"] / decided, abs=1e-4)
        assert body["expiry_rate"] == pytest.approx(outcome["expired"] / decided, abs=1e-4)

        reasons = Counter(
            ((r["decline_reason"] or "").strip().lower() or "unspecified")
            for r in rows
            if r["status"] == "declined"
        )
        assert as_dict(body["decline_reasons"]["items"]) == dict(reasons)

        load = Counter(r["manager_id"] for r in rows if r["status"] in ("offered", "accepted"))
        roster = [m for m in generated["managers"] if m["status"] in ("active", "paused")]
        listed = {m["manager_id"]: m for m in body["open_load"]["managers"]}
        assert set(listed) == {str(m["id"]) for m in roster}
        for manager in roster:
            entry = listed[str(manager["id"])]
            assert entry["open_assignments"] == load.get(manager["id"], 0)
            assert entry["max_open_assignments"] == manager["max_open"]
            assert entry["display_name"] == manager["display_name"]
        distribution = Counter(str(load.get(m["id"], 0)) for m in roster)
        assert as_dict(body["open_load"]["distribution"]["items"]) == dict(distribution)

    def test_district_filter(self, client: Any, generated: dict[str, Any]) -> None:
        body = client.get(
            f"{STATS}/dispatch", params={"district": "alpha"}, headers=generated["admin"]
        ).json()
        rows = [r for r in generated["assignments"] if r["incident"]["district"] == "alpha"]
        assert body["offers"]["total"] == len(rows)

    def test_viewer_sees_no_names(self, client: Any, generated: dict[str, Any]) -> None:
        response = client.get(f"{STATS}/dispatch", headers=generated["viewer"])
        assert response.status_code == 200
        body = response.json()
        assert body["open_load"]["managers"] is None
        assert "Manager 0" not in response.text
        # a reason given once or twice is merged, its free text never shown
        staff = client.get(f"{STATS}/dispatch", headers=generated["admin"]).json()
        given = as_dict(staff["decline_reasons"]["items"])
        keys = [i["key"] for i in body["decline_reasons"]["items"]]
        assert any(n <= 2 for n in given.values())  # the data has rare reasons
        assert keys[-1] == "(rare reasons)"
        assert all(given[k] >= 3 for k in keys[:-1])
        assert sum(n for n in given.values() if n <= 2) >= 1

    def test_empty(self, client: Any, world: dict[str, Any]) -> None:
        body = client.get(f"{STATS}/dispatch", headers=world["viewer"]).json()
        assert body["time_to_accept"]["median_seconds"] is None
        assert body["acceptance_rate"] is None
        assert body["offers"]["total"] == 0


class TestCoverage:
    def expected(self, managers: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for m in managers:
            if m["status"] != "active":
                continue
            if any(first <= TODAY <= last for first, last in m["absences"]):
                continue
            for code, certified, expires in m["holdings"]:
                if certified <= TODAY and (expires is None or expires >= TODAY):
                    for district in {m["home"], *m["served"]}:
                        counts[(district, code)] += 1
        return counts

    def expected_gaps(
        self, incidents: list[dict[str, Any]], managers: list[dict[str, Any]]
    ) -> dict[tuple[str, str], int]:
        gaps: dict[tuple[str, str], int] = defaultdict(int)
        for incident in incidents:
            for code in incident["competences"]:
                held = any(
                    m["status"] == "active"
                    and incident["district"] in {m["home"], *m["served"]}
                    and any(
                        c == code and cert <= TODAY and (exp is None or exp >= TODAY)
                        for c, cert, exp in m["holdings"]
                    )
                    for m in managers
                )
                if not held:
                    gaps[(incident["district"], code)] += 1
        return gaps

    @pytest.mark.parametrize("seed", [1, 2])
    def test_equals_recount(self, client: Any, world: dict[str, Any], seed: int) -> None:
        rng = random.Random(seed)
        incidents = generate_incidents(rng, 40)
        managers = generate_roster(rng, 30)
        body = client.get(f"{STATS}/coverage", headers=world["admin"]).json()
        assert body["today"] == TODAY.isoformat()
        expected = self.expected(managers)
        got = {(c["district"], c["competence"]): c["count"] for c in body["items"]}
        assert set(got) == {(d, c) for d in DISTRICTS for c in COMPETENCES}
        assert got == {key: expected.get(key, 0) for key in got}
        gaps = {(g["district"], g["competence"]): g["incidents"] for g in body["gaps"]}
        assert gaps == dict(self.expected_gaps(incidents, managers))

    def test_district_filter_and_unknown(self, client: Any, generated: dict[str, Any]) -> None:
        body = client.get(
            f"{STATS}/coverage", params={"district": "gamma"}, headers=generated["admin"]
        ).json()
        assert {c["district"] for c in body["items"]} == {"gamma"}
        assert all(g["district"] == "gamma" for g in body["gaps"])
        _problem(
            client.get(
                f"{STATS}/coverage", params={"district": "atlantis"}, headers=generated["admin"]
            ),
            422,
            "validation-error",
        )

    def test_viewer_small_counts_hidden(self, client: Any, generated: dict[str, Any]) -> None:
        staff = client.get(f"{STATS}/coverage", headers=generated["admin"]).json()
        viewer = client.get(f"{STATS}/coverage", headers=generated["viewer"]).json()
        for mine, theirs in zip(
            staff["items"] + staff["gaps"], viewer["items"] + viewer["gaps"], strict=True
        ):
            value = mine.get("count", mine.get("incidents"))
            shown = theirs.get("count", theirs.get("incidents"))
            assert theirs["suppressed"] == (1 <= value <= 2)
            assert shown == (None if 1 <= value <= 2 else value)


def _tables(body: dict[str, Any], path: str) -> list[dict[str, Any]]:
    if path == "profile":
        return [body["incidents"][k] for k in ("by_category", "by_escalation_level", "by_month")]
    if path == "dispatch":
        return [body["offers"], body["decline_reasons"], body["open_load"]["distribution"]]
    return [body]


class TestSuppression:
    """For viewers and partners exactly the counts of 1 or 2 are hidden, and a total is withheld
    exactly when it would pin one of them down (DESIGN.md §3)."""

    def check(
        self,
        staff: dict[str, Any],
        restricted: dict[str, Any],
        *,
        merged: bool = False,
        shared_total: bool = False,
    ) -> None:
        """``shared_total``: the table is one of a profile's, whose one total is withheld when
        any of them would reveal a cell (checked by the caller)."""
        staff_items = {i["key"]: i["count"] for i in staff["items"]}
        for item in restricted["items"]:
            if merged and item["key"] not in staff_items:
                continue
            truth = staff_items[item["key"]]
            if 1 <= truth <= 2:
                assert item == {"key": item["key"], "count": None, "suppressed": True}
            else:
                assert item == {"key": item["key"], "count": truth, "suppressed": False}
        if merged:
            return
        hidden = [staff_items[i["key"]] for i in restricted["items"] if i["suppressed"]]
        if restricted["total"] is not None:
            assert restricted["total"] == staff["total"]
            # a reader who knows the rule still has two values for every hidden cell
            values = consistent_values(StatTable.model_validate(restricted), staff["total"]) or {}
            assert all(len(possible) == 2 for possible in values.values())
        else:
            assert total_reveals(hidden) or shared_total

    @pytest.mark.parametrize("seed", [7, 8])
    def test_random_data(self, client: Any, world: dict[str, Any], seed: int) -> None:
        rng = random.Random(seed)
        incidents = generate_incidents(rng, 45)
        managers = generate_roster(rng, 15)
        generate_assignments(rng, incidents, managers)
        requests = [(f"{STATS}/incidents", {"group_by": g}, "incidents") for g in GROUPS]
        requests += [
            (f"{STATS}/incidents", {"group_by": g, "district": "alpha"}, "incidents")
            for g in GROUPS
        ]
        requests += [(f"{STATS}/dispatch", {}, "dispatch")]
        requests += [(f"/api/v1/districts/{d}/profile", {}, "profile") for d in DISTRICTS]
        hidden_seen = withheld_seen = 0
        for (path, params, kind), role in itertools.product(requests, ("viewer", "partner")):
            staff = client.get(path, params=params, headers=world["coordinator"]).json()
            restricted = client.get(path, params=params, headers=world[role]).json()
            for i, (mine, theirs) in enumerate(
                zip(_tables(staff, kind), _tables(restricted, kind), strict=True)
            ):
                self.check(
                    mine,
                    theirs,
                    merged=(kind == "dispatch" and i == 1),
                    shared_total=(kind == "profile"),
                )
                hidden_seen += sum(1 for item in theirs["items"] if item["suppressed"])
                withheld_seen += theirs.get("total", 0) is None
            if kind == "profile":
                tables = _tables(restricted, kind)
                assert {t["total"] for t in tables} == {restricted["incidents"]["total"]}
                reveals = any(
                    total_reveals([i["count"] for i in mine["items"] if 1 <= i["count"] <= 2])
                    for mine in _tables(staff, kind)
                )
                assert (restricted["incidents"]["total"] is None) == reveals
        assert hidden_seen > 0 and withheld_seen > 0  # the data really exercised suppression

    def test_example(self, client: Any, world: dict[str, Any]) -> None:
        with session_scope() as session:
            for i, (category, n) in enumerate(
                [("hate_speech", 5), ("other", 1), ("youth_conflict", 4)]
            ):
                for j in range(n):
                    session.add(
                        Incident(
                            reference=f"KOK-2026-{i}{j:04d}",
                            title="t",
                            district="alpha",
                            category=category,
                            escalation_level=2,
                        )
                    )
        viewer = client.get(
            f"{STATS}/incidents", params={"group_by": "category"}, headers=world["viewer"]
        ).json()
        assert viewer == {
            "group_by": "category",
            "total": None,
            "items": [
                {"key": "hate_speech", "count": 5, "suppressed": False},
                {"key": "other", "count": None, "suppressed": True},
                {"key": "youth_conflict", "count": 4, "suppressed": False},
            ],
        }
        staff = client.get(
            f"{STATS}/incidents", params={"group_by": "category"}, headers=world["coordinator"]
        ).json()
        assert [i["count"] for i in staff["items"]] == [5, 1, 4]
        assert staff["total"] == 10
        profile = client.get("/api/v1/districts/alpha/profile", headers=world["viewer"]).json()
        # the category table's total would give the 1 away: withheld for the whole profile
        assert profile["incidents"]["total"] is None
        assert profile["incidents"]["by_escalation_level"]["items"] == [
            {"key": "2", "count": 10, "suppressed": False}
        ]


class TestDistrictProfile:
    def test_profile(self, client: Any, generated: dict[str, Any]) -> None:
        steering = make_organisation("Lenkungsgruppe", "steering_group")
        city = make_organisation("Amt", "city_department")
        late = make_recommendation(
            steering, city, title="late", due_on="2026-06-01", districts=["beta", "alpha"]
        )
        make_recommendation(steering, city, title="elsewhere", districts=["gamma"])
        response = client.get("/api/v1/districts/beta/profile", headers=generated["admin"])
        assert response.status_code == 200, response.text
        body = response.json()
        mine = [i for i in generated["incidents"] if i["district"] == "beta"]
        assert body["district"] == {"code": "beta", "name": "Beta", "city": "Teststadt"}
        incidents = body["incidents"]
        assert incidents["total"] == len(mine)
        assert incidents["open"] == {
            "count": sum(i["status"] in OPEN for i in mine),
            "suppressed": False,
        }
        assert as_dict(incidents["by_category"]["items"]) == recount(mine, "category")
        assert as_dict(incidents["by_escalation_level"]["items"]) == recount(
            mine, "escalation_level"
        )
        assert as_dict(incidents["by_month"]["items"]) == recount(mine, "month")
        coverage = TestCoverage().expected(generated["managers"])
        assert {c["competence"]: c["count"] for c in body["coverage"]} == {
            code: coverage.get(("beta", code), 0) for code in COMPETENCES
        }
        gaps = TestCoverage().expected_gaps(generated["incidents"], generated["managers"])
        assert {g["competence"]: g["incidents"] for g in body["gaps"]} == {
            code: n for (d, code), n in gaps.items() if d == "beta"
        }
        assert [
            (r["id"], r["title"], r["status"], r["overdue"]) for r in body["recommendations"]
        ] == [(str(late), "late", "draft", True)]

    def test_unknown_district(self, client: Any, world: dict[str, Any]) -> None:
        _problem(
            client.get("/api/v1/districts/atlantis/profile", headers=world["viewer"]),
            404,
            "not-found",
        )


class TestRoles:
    PATHS = (
        f"{STATS}/incidents",
        f"{STATS}/dispatch",
        f"{STATS}/coverage",
        "/api/v1/districts/alpha/profile",
    )

    def test_staff_partners_and_viewers_read(self, client: Any, world: dict[str, Any]) -> None:
        for role in ("admin", "coordinator", "viewer", "partner"):
            for path in self.PATHS:
                assert client.get(path, headers=world[role]).status_code == 200, (role, path)

    def test_manager_keys_do_not(self, client: Any, world: dict[str, Any]) -> None:
        # DESIGN §4: a manager key is for its own profile, absences and assignments
        from tests.factories import make_manager

        headers = make_key("manager", manager_id=make_manager())
        for path in self.PATHS:
            _problem(client.get(path, headers=headers), 403, "forbidden")

    def test_no_key(self, client: Any, world: dict[str, Any]) -> None:
        for path in self.PATHS:
            _problem(client.get(path), 401, "unauthorized")
            _problem(
                client.get(path, headers={"Authorization": "Bearer kok_nope"}), 401, "unauthorized"
            )
