"""The incident tally (app/models/tally.py, kept by triggers from migration 0009) always equals a
recount of ``incident`` — after every kind of incident write — and the statistics read from it
answer exactly what a straightforward count of the incidents answers, for every grouping, district
and date range (also ranges that cut months and the hours where local and UTC months differ)."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from sqlmodel import col

from app.core.db import get_engine, session_scope
from app.core.migrations import downgrade, upgrade
from app.models.base import table_of
from app.models.incident import Incident, IncidentCompetence
from app.models.tally import CITY_WIDE, IncidentTallyCategory, IncidentTallyLevel
from app.services import worker
from app.services.stats import compact_tally
from tests.factories import DISTRICTS, make_key, seed_reference

INCIDENTS = "/api/v1/incidents"
BERLIN = ZoneInfo("Europe/Berlin")
CATEGORIES = ["right_wing_extremism", "hate_speech", "youth_conflict", "other"]
IMPORT_HEADER = "external_id;source;title;district;category;escalation_level"


def tally_counts() -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """What the tally says: the sum of each count's rows, zeros left out."""
    out = []
    for model, key in (
        (IncidentTallyCategory, "category"),
        (IncidentTallyLevel, "escalation_level"),
    ):
        t = table_of(model)
        with session_scope(write=False) as session:
            rows = session.execute(
                select(t.c.district, t.c.month, t.c[key], func.sum(t.c.n)).group_by(
                    t.c.district, t.c.month, t.c[key]
                )
            )
            out.append(Counter({(d, m, k): int(n) for d, m, k, n in rows if n}))
    return out[0], out[1]


def recount() -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """The same figures counted from the incidents themselves (UTC month of ``reported_at``), per
    district and city-wide (district ``''``)."""
    with session_scope(write=False) as session:
        rows = session.execute(
            select(
                Incident.district,
                Incident.reported_at,
                Incident.category,
                Incident.escalation_level,
            )
        ).all()
    by_category: Counter[tuple[Any, ...]] = Counter()
    by_level: Counter[tuple[Any, ...]] = Counter()
    for district, reported_at, category, level in rows:
        month = reported_at.astimezone(UTC).strftime("%Y-%m")
        for where in (district, CITY_WIDE):
            by_category[(where, month, category)] += 1
            by_level[(where, month, level)] += 1
    return by_category, by_level


def assert_tally_is_recount() -> None:
    assert tally_counts() == recount()
    # the district profile's gap counts: each competence link holds its incident's district
    with session_scope(write=False) as session:
        links = session.execute(
            select(IncidentCompetence.district, Incident.district).join(
                Incident, col(Incident.id) == col(IncidentCompetence.incident_id)
            )
        ).all()
    assert [link for link, incident in links if link != incident] == []


@pytest.fixture
def admin() -> dict[str, str]:
    seed_reference()
    return make_key("admin")


def create(client: Any, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {
        "title": "Stickers at the youth club",
        "district": "alpha",
        "category": "hate_speech",
        "escalation_level": 3,
        "required_competences": ["mediation"],
        **fields,
    }
    response = client.post(INCIDENTS, json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def test_every_kind_of_incident_write_keeps_the_tally_equal_to_a_recount(
    client: Any, admin: dict[str, str]
) -> None:
    assert_tally_is_recount()
    # create (API), also in past months and right at a month boundary
    first = create(client, admin)
    create(client, admin, reported_at="2026-01-31T23:30:00Z", district="beta")
    create(client, admin, reported_at="2025-12-31T23:59:59.999999Z", category="other")
    other = create(client, admin, reported_at="2026-02-01T00:00:00Z", escalation_level=7)
    assert_tally_is_recount()

    # patch: district, category and level, alone and together; a patch that moves nothing
    for patch in (
        {"district": "gamma"},
        {"district": "beta", "required_competences": ["mediation", "youth_work"]},
        {"category": "youth_conflict"},
        {"escalation_level": 5},
        {"district": "delta", "category": "other", "escalation_level": 1},
        {"title": "Only the title"},
    ):
        current = client.get(f"{INCIDENTS}/{first['id']}", headers=admin)
        response = client.patch(
            f"{INCIDENTS}/{first['id']}",
            json=patch,
            headers={**admin, "If-Match": current.headers["ETag"]},
        )
        assert response.status_code == 200, response.text
        assert_tally_is_recount()

    # status transitions
    for status in ("triaged", "withdrawn"):
        response = client.post(
            f"{INCIDENTS}/{other['id']}/status", json={"status": status}, headers=admin
        )
        assert response.status_code == 200, response.text
    assert_tally_is_recount()

    # import: new rows, then the same file again (unchanged), then changed rows (upsert)
    lines = [f"ext-{i};hotline;Imported {i};alpha;hate_speech;2" for i in range(5)]
    for body in (
        "\n".join([IMPORT_HEADER, *lines]),
        "\n".join([IMPORT_HEADER, *lines]),
        "\n".join(
            [IMPORT_HEADER, *[f"ext-{i};hotline;Imported {i};beta;other;4" for i in range(3)]]
        ),
    ):
        response = client.post(
            "/api/v1/imports/incidents",
            content=body.encode(),
            headers={**admin, "Content-Type": "text/csv"},
        )
        assert response.status_code == 200, response.text
        assert_tally_is_recount()

    # reporter erasure (an update of other columns)
    response = client.post(f"{INCIDENTS}/{first['id']}/reporter/erase", headers=admin)
    assert response.status_code in (200, 204), response.text
    assert_tally_is_recount()

    # bulk update of many rows in one statement (reported_at moved across months), and deletes
    with session_scope() as session:
        session.execute(
            update(Incident)
            .where(Incident.district == "alpha")
            .values(reported_at=datetime(2024, 2, 29, 23, 0, tzinfo=UTC))
        )
    assert_tally_is_recount()
    with session_scope() as session:  # districts moved by a statement of no kokoma code
        moved = session.execute(
            update(Incident)
            .where(col(Incident.id).in_(select(IncidentCompetence.incident_id)))
            .values(district="gamma")
        )
        assert moved.rowcount > 0  # type: ignore[attr-defined]
    assert_tally_is_recount()
    with session_scope() as session:
        session.delete(session.get_one(Incident, uuid.UUID(other["id"])))
    assert_tally_is_recount()
    with session_scope() as session:
        session.execute(table_of(Incident).delete().where(table_of(Incident).c.district == "beta"))
    assert_tally_is_recount()

    # a rolled-back write leaves no trace
    with pytest.raises(RuntimeError), session_scope() as session:
        session.execute(update(Incident).values(category="other"))
        raise RuntimeError("roll back")
    assert_tally_is_recount()


def test_an_import_of_many_rows_per_statement_keeps_every_row_and_count(
    client: Any, admin: dict[str, str]
) -> None:
    names = list(DISTRICTS)
    # On SQLite the incident rows go in several rows per INSERT (app.repositories.bulk): 1,234
    # rows are two full statements of 500 and a short last one
    levels = [
        f"ext-{i};hotline;Imported {i};{names[i % 4]};{CATEGORIES[i % 4]};{1 + i % 9}"
        for i in range(1234)
    ]
    response = client.post(
        "/api/v1/imports/incidents",
        content="\n".join([IMPORT_HEADER, *levels]).encode(),
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1234
    with session_scope(write=False) as session:
        stored = session.execute(
            select(Incident.external_id, Incident.district, Incident.escalation_level)
        ).all()
    assert sorted(stored) == sorted((f"ext-{i}", names[i % 4], 1 + i % 9) for i in range(1234))
    assert_tally_is_recount()


def test_compaction_merges_rows_and_keeps_every_count(client: Any, admin: dict[str, str]) -> None:
    for i in range(6):
        create(client, admin, district=["alpha", "beta"][i % 2], escalation_level=1 + i % 3)
    ids = [create(client, admin)["id"] for _ in range(2)]
    with session_scope() as session:
        for incident_id in ids:
            session.delete(session.get_one(Incident, uuid.UUID(incident_id)))
    before = tally_counts()

    def rows() -> int:
        with session_scope(write=False) as session:
            return sum(
                session.scalar(select(func.count()).select_from(table_of(m))) or 0
                for m in (IncidentTallyCategory, IncidentTallyLevel)
            )

    many = rows()
    removed = compact_tally()
    assert tally_counts() == before == recount()
    assert rows() == many - removed
    keys = len(before[0]) + len(before[1])
    with session_scope(write=False) as session:
        dialect = session.get_bind().dialect.name
    if dialect == "postgresql":  # one row per transaction before, one per count after
        assert removed > 0 and rows() == keys
    else:  # one row per count always (counts that fell to zero keep theirs)
        assert removed == 0 and rows() >= keys
    assert compact_tally() == 0
    job = next(j for j in worker.JOBS if j.name == "stats.compact_tally")
    assert worker.run_once([job]) == {"stats.compact_tally": 0}
    create(client, admin)
    assert_tally_is_recount()


# --- statistics against a straightforward count ---------------------------------------------


def write_incidents(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Incidents around Berlin month boundaries (where local and UTC months differ) and spread
    over 14 months; returns what was written."""
    boundaries = [
        datetime(2025, 12, 31, 23, 0, tzinfo=UTC),  # 2026-01-01 00:00 CET
        datetime(2026, 3, 31, 21, 59, 59, tzinfo=UTC),  # 2026-03-31 23:59:59 CEST
        datetime(2026, 3, 31, 22, 0, tzinfo=UTC),  # 2026-04-01 00:00 CEST
        datetime(2026, 5, 1, 0, 0, tzinfo=UTC),  # UTC month start, 02:00 local
        datetime(2025, 10, 31, 23, 30, tzinfo=UTC),  # 2025-11-01 00:30 CET
    ]
    start = datetime(2025, 5, 1, tzinfo=UTC)
    rows = []
    with session_scope() as session:
        for i in range(n):
            at = (
                boundaries[i % len(boundaries)] + timedelta(minutes=rng.choice([-61, -1, 0, 1]))
                if i < 40
                else start + timedelta(seconds=rng.uniform(0, 420 * 86400))
            )
            row = {
                "district": rng.choice(list(DISTRICTS)),
                "category": rng.choice(CATEGORIES),
                "escalation_level": rng.randint(1, 9),
                "reported_at": at,
            }
            session.add(Incident(reference=f"KOK-1999-{i:05d}", title=f"Incident {i}", **row))
            rows.append(row)
    return rows


def expected(
    rows: list[dict[str, Any]],
    group_by: str,
    district: str | None,
    after: datetime | None,
    before: datetime | None,
) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for row in rows:
        if district and row["district"] != district:
            continue
        if after is not None and row["reported_at"] < after:
            continue
        if before is not None and row["reported_at"] >= before:
            continue
        if group_by == "month":
            key = row["reported_at"].astimezone(BERLIN).strftime("%Y-%m")
        else:
            key = row[group_by]
        counts[key] += 1
    if group_by == "escalation_level":
        return [(str(k), n) for k, n in sorted(counts.items())]
    return sorted(counts.items())


def _z(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def test_incident_statistics_equal_a_straightforward_count(
    client: Any, admin: dict[str, str]
) -> None:
    rng = random.Random(20261207)
    rows = write_incidents(rng, 400)
    # after a few API writes too (on PostgreSQL: several rows per count until compacted)
    create(client, admin, reported_at="2026-03-31T22:30:00Z", district="gamma")
    create(client, admin, reported_at="2025-12-31T22:59:00Z", category="other")
    rows.append(
        {
            "district": "gamma",
            "category": "hate_speech",
            "escalation_level": 3,
            "reported_at": datetime(2026, 3, 31, 22, 30, tzinfo=UTC),
        }
    )
    rows.append(
        {
            "district": "alpha",
            "category": "other",
            "escalation_level": 3,
            "reported_at": datetime(2025, 12, 31, 22, 59, tzinfo=UTC),
        }
    )
    instants = [
        None,
        datetime(2025, 5, 1, tzinfo=UTC),  # a UTC month start
        datetime(2025, 12, 31, 23, 0, tzinfo=UTC),  # a Berlin month start
        datetime(2026, 1, 15, 12, 30, 0, 250000, tzinfo=UTC),
        datetime(2026, 3, 31, 22, 0, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
        datetime(2026, 4, 20, 7, 0, tzinfo=UTC),
        datetime(2026, 5, 1, 0, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    ]
    ranges = [(a, b) for a in instants for b in instants]
    rng.shuffle(ranges)
    checked = 0
    for after, before in [*ranges[:30], (None, None)]:
        for group_by in ("category", "district", "escalation_level", "month"):
            for district in (None, "beta"):
                params: dict[str, str] = {"group_by": group_by}
                if district:
                    params["district"] = district
                if after is not None:
                    params["reported_after"] = _z(after)
                if before is not None:
                    params["reported_before"] = _z(before)
                response = client.get("/api/v1/stats/incidents", params=params, headers=admin)
                assert response.status_code == 200, response.text
                body = response.json()
                got = [(item["key"], item["count"]) for item in body["items"]]
                want = expected(rows, group_by, district, after, before)
                assert got == want, (params, got, want)
                assert body["total"] == sum(n for _, n in want)
                checked += 1
    assert checked == 31 * 8
    compact_tally()
    response = client.get("/api/v1/stats/incidents?group_by=month", headers=admin)
    assert [(i["key"], i["count"]) for i in response.json()["items"]] == expected(
        rows, "month", None, None, None
    )


# --- the event-loop path answers as the unit-of-work path ------------------------------------


def test_loop_path_answers_as_the_unit_of_work_path(client: Any, fixed_clock: Any) -> None:
    """Statistics without a date range and district profiles come from app.core.reads when the
    app runs with its lifespan; the unit-of-work path (an app without it) must answer the same:
    status, bytes, for every grouping, district, role (suppression) and district."""
    from tests.api.test_loop_reads import unit_of_work_path
    from tests.api.test_stats import generate_incidents, generate_roster
    from tests.factories import make_organisation, make_recommendation

    seed_reference()
    rng = random.Random(7)
    generate_incidents(rng, 80)
    generate_roster(rng, 30)
    steering = make_organisation("Lenkungsgruppe", "steering_group")
    city = make_organisation("Amt", "city_department")
    make_recommendation(steering, city, title="late", due_on="2026-06-01", districts=["beta"])
    make_recommendation(steering, city, title="later", due_on="2027-01-01", districts=["beta"])
    keys = {role: make_key(role) for role in ("admin", "viewer")}
    paths = [
        f"/api/v1/stats/incidents?group_by={group_by}{district}"
        for group_by in ("category", "district", "escalation_level", "month")
        for district in ("", "&district=beta", "&district=delta", "&district=atlantis")
    ]
    paths += [f"/api/v1/districts/{code}/profile" for code in [*DISTRICTS, "atlantis"]]
    for headers in keys.values():
        loop = [client.get(path, headers=headers) for path in paths]
        with unit_of_work_path(client):
            unit = [client.get(path, headers=headers) for path in paths]
        for path, a, b in zip(paths, loop, unit, strict=True):
            assert (a.status_code, a.content) == (b.status_code, b.content), path
    assert {r.status_code for r in loop} == {200, 404, 422}


def test_month_windows_of_five_years(client: Any, admin: dict[str, str]) -> None:
    """Five years of incidents, some a minute either side of every Berlin month start: their
    sixty-odd month windows go to the database as one parameter (on the loop path). By month,
    city-wide and for one district, and the district profile's months all equal a
    straightforward count and the unit-of-work path's answer."""
    from tests.api.test_loop_reads import unit_of_work_path

    rng = random.Random(5)
    rows = []
    with session_scope() as session:
        for i in range(300):
            # every Berlin month start from 2021 to 2025, a minute before and after (these
            # months differ from the UTC ones), and random instants in between
            month = datetime(2021 + (i % 60) // 12, (i % 60) % 12 + 1, 1, tzinfo=BERLIN)
            at = (
                month.astimezone(UTC) + timedelta(minutes=rng.choice([-1, 0, 1]))
                if i < 180
                else datetime(2021, 1, 1, tzinfo=UTC) + timedelta(days=rng.uniform(0, 1825))
            )
            row = {
                "district": rng.choice(["beta", "gamma"]),
                "category": rng.choice(CATEGORIES),
                "escalation_level": rng.randint(1, 9),
                "reported_at": at,
            }
            session.add(Incident(reference=f"KOK-1998-{i:05d}", title=f"Incident {i}", **row))
            rows.append(row)
    months = {row["reported_at"].astimezone(BERLIN).strftime("%Y-%m") for row in rows}
    assert len(months) > 60  # and the minute before 2021-01 is in December 2020
    paths = {
        None: "/api/v1/stats/incidents?group_by=month",
        "beta": "/api/v1/stats/incidents?group_by=month&district=beta",
    }
    for district, path in paths.items():
        response = client.get(path, headers=admin)
        assert response.status_code == 200, response.text
        got = [(item["key"], item["count"]) for item in response.json()["items"]]
        assert got == expected(rows, "month", district, None, None)
    profile_path = "/api/v1/districts/gamma/profile"
    profile = client.get(profile_path, headers=admin)
    assert profile.status_code == 200, profile.text
    by_month = profile.json()["incidents"]["by_month"]["items"]
    assert [(i["key"], i["count"]) for i in by_month] == expected(
        rows, "month", "gamma", None, None
    )
    loop = [client.get(path, headers=admin) for path in [*paths.values(), profile_path]]
    with unit_of_work_path(client):
        unit = [client.get(path, headers=admin) for path in [*paths.values(), profile_path]]
    for a, b in zip(loop, unit, strict=True):
        assert (a.status_code, a.content) == (b.status_code, b.content)


def test_month_windows_follow_the_incidents_range_as_it_grows(
    client: Any, admin: dict[str, str]
) -> None:
    """The month windows are bound once per range of months and reused by every request: when a
    new incident widens the range — here half an hour into a Berlin month that is still the
    previous month in UTC — the next answers count it in its local month, city-wide, for its
    district and in the district profile, as the unit-of-work path does."""
    from tests.api.test_loop_reads import unit_of_work_path

    rows: list[dict[str, Any]] = []

    def add(at: datetime) -> None:
        row = {
            "district": "beta",
            "category": "hate_speech",
            "escalation_level": 2,
            "reported_at": at,
        }
        with session_scope() as session:
            n = len(rows)
            session.add(Incident(reference=f"KOK-1997-{n:05d}", title=f"Incident {n}", **row))
        rows.append(row)

    def by_month(path: str) -> list[tuple[str, int]]:
        response = client.get(path, headers=admin)
        assert response.status_code == 200, response.text
        body = response.json()
        items = body["incidents"]["by_month"]["items"] if "incidents" in body else body["items"]
        return [(item["key"], item["count"]) for item in items]

    paths = {
        None: "/api/v1/stats/incidents?group_by=month",
        "beta": "/api/v1/stats/incidents?group_by=month&district=beta",
        "profile": "/api/v1/districts/beta/profile",
    }
    for month in (3, 4, 5):
        add(datetime(2024, month, 1, tzinfo=BERLIN).astimezone(UTC) + timedelta(minutes=30))
    # each step widens the range by a month on one side, at a Berlin month start
    steps = [
        datetime(2024, 2, 1, 0, 30, tzinfo=BERLIN),  # 2024-01-31 23:30 UTC
        datetime(2024, 7, 1, 0, 30, tzinfo=BERLIN),  # 2024-06-30 22:30 UTC
        datetime(2023, 11, 1, 0, 15, tzinfo=BERLIN),  # 2023-10-31 23:15 UTC
    ]
    for step in [None, *steps]:
        if step is not None:
            add(step.astimezone(UTC))
        for district, path in paths.items():
            want = expected(rows, "month", None if district is None else "beta", None, None)
            assert by_month(path) == want, (step, path)
    assert ("2023-11", 1) in by_month(paths["profile"])
    loop = [client.get(path, headers=admin) for path in paths.values()]
    with unit_of_work_path(client):
        unit = [client.get(path, headers=admin) for path in paths.values()]
    for a, b in zip(loop, unit, strict=True):
        assert (a.status_code, a.content) == (b.status_code, b.content)


def _counts_in_the_key() -> bool:
    """Whether each tally's key holds ``n`` (migration 0012): SQLite ``WITHOUT ROWID``,
    PostgreSQL ``INCLUDE (n)`` on the key's index."""
    engine = get_engine()
    found = []
    with engine.connect() as conn:
        for table in ("incident_tally_category", "incident_tally_level"):
            if engine.dialect.name == "sqlite":
                sql = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).scalar_one()
                found.append("WITHOUT ROWID" in sql.upper())
            else:
                definition = conn.exec_driver_sql(
                    "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                    "WHERE indrelid = CAST(%(t)s AS regclass) AND indisprimary",
                    {"t": table},
                ).scalar_one()
                found.append(definition.endswith("INCLUDE (n)"))
    assert len(set(found)) == 1, found
    return found[0]


def test_the_counts_move_into_the_key_and_back_with_the_data_and_the_triggers(
    client: Any, admin: dict[str, str]
) -> None:
    for i in range(5):
        create(client, admin, district=["alpha", "beta"][i % 2], escalation_level=1 + i % 4)
    assert _counts_in_the_key()
    downgrade("0011")
    assert not _counts_in_the_key()
    assert_tally_is_recount()
    create(client, admin, district="beta", category="other")  # the triggers still count
    assert_tally_is_recount()
    upgrade("head")
    assert _counts_in_the_key()
    assert_tally_is_recount()
    edited = create(client, admin, district="alpha")
    response = client.patch(
        f"{INCIDENTS}/{edited['id']}",
        json={"district": "beta", "escalation_level": 7},
        headers={**admin, "If-Match": f'"{edited["version"]}"'},
    )
    assert response.status_code == 200, response.text
    assert_tally_is_recount()
