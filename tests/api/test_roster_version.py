"""A district profile's roster is kept by the reader with the roster's version (app/models/
roster.py, migration 0013): every change of who serves a district with which valid certificate
and who is absent — through the API or any other statement — gives the version a new token, so
the next profile reads the roster again and answers what the unit-of-work path (no reader, no
kept roster) answers, byte for byte; changes that do not touch the roster keep the token."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app.core import clock as clock_module
from app.core.config import get_settings
from app.core.db import get_engine, session_scope
from app.repositories import stats_reads
from tests.api.test_loop_reads import unit_of_work_path
from tests.api.test_stats import TODAY, generate_roster
from tests.factories import DISTRICTS, make_incident, make_key, seed_reference

MANAGERS = "/api/v1/managers"


def token() -> int | None:
    with get_engine().connect() as conn:
        return conn.execute(text("SELECT token FROM roster_version WHERE id = 1")).scalar()


def profiles(client: Any, headers: dict[str, str]) -> list[tuple[int, bytes]]:
    out = []
    for code in DISTRICTS:
        response = client.get(f"/api/v1/districts/{code}/profile", headers=headers)
        out.append((response.status_code, response.content))
    return out


def assert_profiles_are_fresh(client: Any, headers: dict[str, str]) -> None:
    loop = profiles(client, headers)
    with unit_of_work_path(client):
        unit = profiles(client, headers)
    assert loop == unit
    assert {status for status, _ in loop} == {200}


def kept(client: Any) -> dict[tuple[str, date], Any]:
    return stats_reads._rosters.get(client.app.state.reads, {})


@pytest.fixture
def admin(fixed_clock: Any) -> dict[str, str]:
    seed_reference()
    generate_roster(random.Random(13), 20)
    return make_key("admin")


def add_manager(client: Any, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {
        "display_name": "Nadia Roster",
        "email": f"{uuid.uuid4().hex[:8]}@example.org",
        "status": "active",
        "home_district": "alpha",
        "competences": [{"code": "mediation", "certified_on": "2026-01-01"}],
        **fields,
    }
    response = client.post(MANAGERS, json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def edit(client: Any, admin: dict[str, str], manager: dict[str, Any], **fields: Any) -> None:
    current = client.get(f"{MANAGERS}/{manager['id']}", headers=admin).json()
    response = client.patch(
        f"{MANAGERS}/{manager['id']}",
        json=fields,
        headers={**admin, "If-Match": f'"{current["version"]}"'},
    )
    assert response.status_code == 200, response.text


def test_every_roster_change_through_the_api_shows_in_the_next_profile(
    client: Any, admin: dict[str, str]
) -> None:
    assert_profiles_are_fresh(client, admin)
    nadia = add_manager(client, admin)
    changes: list[tuple[str, Callable[[], Any]]] = [
        ("served districts", lambda: edit(client, admin, nadia, districts=["beta", "gamma"])),
        ("home district", lambda: edit(client, admin, nadia, home_district="delta")),
        (
            "certificates",
            lambda: edit(
                client,
                admin,
                nadia,
                competences=[
                    {"code": "mediation", "certified_on": "2026-01-01", "expires_on": "2026-06-14"},
                    {"code": "youth_work", "certified_on": "2026-06-15"},
                ],
            ),
        ),
        (
            "absence",
            lambda: client.post(
                f"{MANAGERS}/{nadia['id']}/absences",
                json={"starts_on": str(TODAY), "ends_on": str(TODAY + timedelta(days=2))},
                headers=admin,
            ),
        ),
        (
            "status",
            lambda: client.post(
                f"{MANAGERS}/{nadia['id']}/status", json={"status": "paused"}, headers=admin
            ),
        ),
        ("another manager", lambda: add_manager(client, admin, home_district="beta")),
    ]
    for name, change in changes:
        assert_profiles_are_fresh(client, admin)
        before = token()
        assert before is not None
        # every district's roster is kept, with the version it was read with
        assert len(kept(client)) == len(DISTRICTS), name
        assert {k.version for k in kept(client).values()} == {before}, name
        response = change()
        if response is not None and hasattr(response, "status_code"):
            assert response.status_code in (200, 201), (name, response.text)
        assert token() != before, name
        assert_profiles_are_fresh(client, admin)
    # the absence again, deleted
    absences = client.get(f"{MANAGERS}/{nadia['id']}/absences", headers=admin).json()["items"]
    before = token()
    response = client.delete(
        f"{MANAGERS}/{nadia['id']}/absences/{absences[0]['id']}", headers=admin
    )
    assert response.status_code == 204, response.text
    assert token() != before
    assert_profiles_are_fresh(client, admin)


def test_edits_that_leave_the_roster_keep_its_version(client: Any, admin: dict[str, str]) -> None:
    nadia = add_manager(client, admin)
    assert_profiles_are_fresh(client, admin)
    before = token()
    edit(client, admin, nadia, display_name="Nadia R.", phone="+49 361 1234567")
    assert token() == before  # kept rosters stay valid
    assert_profiles_are_fresh(client, admin)
    assert {k.version for k in kept(client).values()} == {before}


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE manager SET status = 'retired' WHERE status = 'active'",
        "UPDATE manager SET home_district = 'gamma' WHERE home_district = 'alpha'",
        "DELETE FROM manager_district",
        "UPDATE manager_competence SET expires_on = certified_on",
        "DELETE FROM absence",
        "DELETE FROM manager_competence WHERE competence_code = 'mediation'",
        "INSERT INTO competence (code, name, description, version, created_at, updated_at) "
        "VALUES ('new_skill', 'New skill', '', 1, '2026-06-01 00:00:00', '2026-06-01 00:00:00')",
    ],
)
def test_any_statement_that_changes_the_roster_replaces_the_token(
    client: Any, admin: dict[str, str], statement: str
) -> None:
    nadia = add_manager(client, admin, districts=["beta"])  # a row for every statement
    response = client.post(
        f"{MANAGERS}/{nadia['id']}/absences",
        json={"starts_on": str(TODAY), "ends_on": str(TODAY)},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    assert_profiles_are_fresh(client, admin)
    before = token()
    with session_scope() as session:
        session.execute(text(statement))
    assert token() != before
    assert_profiles_are_fresh(client, admin)


def test_a_rolled_back_change_keeps_the_token(client: Any, admin: dict[str, str]) -> None:
    before = token()
    with get_engine().connect() as conn:
        conn.execute(text("UPDATE manager SET status = 'retired'"))
        conn.rollback()
    assert token() == before


def test_without_a_version_row_nothing_is_kept(client: Any, admin: dict[str, str]) -> None:
    with session_scope() as session:
        session.execute(text("DELETE FROM roster_version"))
    kept(client).clear()
    assert_profiles_are_fresh(client, admin)
    assert kept(client) == {}
    add_manager(client, admin, home_district="gamma")  # the next change makes the row again
    assert token() is not None
    assert_profiles_are_fresh(client, admin)
    assert kept(client)


def test_a_new_day_reads_the_roster_again(client: Any, admin: dict[str, str]) -> None:
    assert_profiles_are_fresh(client, admin)
    days = {day for _, day in kept(client)}
    assert days == {TODAY}
    clock_module.set_clock(
        clock_module.Clock(tz=get_settings().tz, fixed_now=datetime(2026, 6, 18, 10, 0, tzinfo=UTC))
    )
    assert_profiles_are_fresh(client, admin)  # absences and expiries of that day
    assert {day for _, day in kept(client)} == {TODAY, date(2026, 6, 18)}


def test_writers_do_not_wait_for_each_other_on_the_version(
    client: Any, admin: dict[str, str], is_postgres: bool
) -> None:
    """PostgreSQL: the token is replaced at commit (deferred), so a transaction that changed the
    roster and is still open holds no lock another writer needs before its own commit."""
    if not is_postgres:
        # SQLite has one writer at a time by design: nothing to show here but the token
        before = token()
        with session_scope() as session:
            session.execute(text("UPDATE absence SET ends_on = ends_on"))
        assert token() != before
        return
    engine = get_engine()
    with engine.connect() as first, engine.connect() as second:
        first.execute(text("UPDATE manager SET status = 'paused' WHERE status = 'active'"))
        first.execute(text("UPDATE manager_competence SET expires_on = NULL"))
        second.execute(text("SET LOCAL lock_timeout = '2s'"))
        second.execute(text("DELETE FROM absence"))
        second.commit()  # would wait for `first` (and time out) if the token were locked now
        after_second = token()
        first.commit()
    assert token() != after_second
    assert_profiles_are_fresh(client, admin)


def test_needs_are_counted_while_the_roster_leaves_a_gap(
    client: Any, admin: dict[str, str]
) -> None:
    """A kept roster that covers every competence makes a gap impossible (the needs are not
    counted then); one that leaves a competence uncovered counts them on every profile, so an
    incident needing it is in the very next one."""
    assert_profiles_are_fresh(client, admin)
    uncovered = {
        district
        for (district, _), entry in kept(client).items()
        if set(entry.competences) - set(entry.roster)
    }
    assert uncovered, "the generated roster leaves some district a gap"
    district = sorted(uncovered)[0]
    entry = kept(client)[(district, TODAY)]
    missing = sorted(set(entry.competences) - set(entry.roster))[0]

    def gaps() -> dict[str, int]:
        body = client.get(f"/api/v1/districts/{district}/profile", headers=admin).json()
        return {g["competence"]: g["incidents"] for g in body["gaps"]}

    before = gaps().get(missing, 0)
    make_incident(district=district, required_competences=[missing])
    assert gaps().get(missing, 0) == before + 1
    assert_profiles_are_fresh(client, admin)
    # a manager who covers it: the gap is gone, and the roster's version with it
    add_manager(
        client,
        admin,
        home_district=district,
        competences=[{"code": missing, "certified_on": "2026-01-01"}],
    )
    assert missing not in gaps()
    assert_profiles_are_fresh(client, admin)
